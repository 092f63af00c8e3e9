"""Switchboard's Chalice app: routes and event sources, each a call into chalicelib/handlers.

Everything is imported and built on first use (each route imports its handler module, the
services come from chalicelib/bootstrap.py), so importing this module — what every Lambda
function's init phase does — costs little more than Chalice itself (bench/cold_start.py).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from chalice.app import (
    Chalice,
    CloudWatchEvent,
    CORSConfig,
    DynamoDBEvent,
    Rate,
    Request,
    Response,
    RestAPIEventHandler,
    SQSEvent,
    WebsocketEvent,
)

from chalicelib.core import stream_headers
from chalicelib.handlers.invocation import observed


class _Chalice(Chalice):
    """Chalice with a per-thread ``current_request``.

    Lambda serves one request per process at a time, but `switchboard dev` runs these same
    handlers in threads, where one shared attribute would mix requests up.
    """

    _local = threading.local()

    @property  # type: ignore[override]
    def current_request(self) -> Any:
        return getattr(self._local, "request", None)

    @current_request.setter
    def current_request(self, value: Any) -> None:
        self._local.request = value

def _binary_as_api_gateway_does(*_: Any) -> bool:
    # Chalice answers 400 to a request whose Accept matches no binary type when the
    # response is binary (a byte stream's PUT, HEAD or read without an Accept header); API
    # Gateway does not: it delivers the base64 text, and with the binary media types infra/
    # deploys (infra/api.py: "*/*" among them) every request that sends an Accept gets bytes.
    return True


RestAPIEventHandler._validate_binary_response = _binary_as_api_gateway_does  # type: ignore[method-assign,assignment]

# configure_logs=False: Chalice would add its own stdout handler to the logger named after the
# app, which is also the Powertools logger's name: every line would print twice on Lambda.
app = _Chalice(app_name="switchboard", configure_logs=False)
app.experimental_feature_flags.update(["WEBSOCKETS"])

STREAM_CONTENT_TYPES = ["*/*"]
# Browsers speak Durable Streams cross-origin: preflights allow its request headers and
# responses expose its response headers.
STREAM_CORS = CORSConfig(
    allow_origin="*",
    allow_headers=list(stream_headers.REQUEST_HEADERS),
    expose_headers=list(stream_headers.RESPONSE_HEADERS),
    max_age=86400,
)


# Browsers call the JSON API cross-origin too (history, channel info, gap fills, publishes).
# Bearer tokens travel in a header, never in cookies, so any origin may read the answers.
API_CORS = CORSConfig(
    allow_origin="*",
    allow_headers=["Content-Type", "Authorization", "X-Switchboard-Retry"],
    max_age=86400,
)


@app.middleware("all")
def invocation(event: Any, get_response: Any) -> Any:
    """Around every invocation: tag its log lines, flush its metrics."""
    # REST requests carry the Lambda context as .lambda_context (.context is API Gateway's);
    # event-source events (WebSocket, DynamoDB stream) carry it as .context.
    is_rest = isinstance(event, Request)
    context = getattr(event, "lambda_context" if is_rest else "context", None)
    return observed(get_response, event, context, rest=is_rest)


@app.route("/v1/health", methods=["GET"], cors=API_CORS)
def health() -> Response:
    from chalicelib.handlers import rest
    return rest.health()


@app.route("/v1/openapi.json", methods=["GET"], cors=API_CORS)
def openapi() -> Response:
    from chalicelib.handlers import rest
    return rest.openapi()


@app.route(
    "/v1/tokens", methods=["POST"], content_types=STREAM_CONTENT_TYPES,
    cors=API_CORS,
)
def issue_token() -> Response:
    from chalicelib.handlers import rest
    return rest.issue_token(app.current_request)


@app.route("/v1/channels/{channel}", methods=["GET"], cors=API_CORS)
def get_channel(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.get_channel(app.current_request, channel)


@app.route(
    "/v1/channels/{channel}", methods=["PUT"], content_types=STREAM_CONTENT_TYPES,
    cors=API_CORS,
)
def put_channel(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.put_channel(app.current_request, channel)


@app.route("/v1/channels/{channel}", methods=["DELETE"], cors=API_CORS)
def delete_channel(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.delete_channel(app.current_request, channel)


@app.route("/v1/channels/{channel}/messages", methods=["GET"], cors=API_CORS)
def get_messages(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.get_messages(app.current_request, channel)


@app.route(
    "/v1/channels/{channel}/messages", methods=["POST"], content_types=STREAM_CONTENT_TYPES,
    cors=API_CORS,
)
def post_messages(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.post_messages(app.current_request, channel)


@app.route("/v1/channels/{channel}/presence", methods=["GET"], cors=API_CORS)
def get_presence(channel: str) -> Response:
    from chalicelib.handlers import rest
    return rest.get_presence(app.current_request, channel)


@app.route(
    "/v1/channels/{channel}/presence/{instance}", methods=["PUT"],
    content_types=STREAM_CONTENT_TYPES, cors=API_CORS,
)
def put_presence(channel: str, instance: str) -> Response:
    from chalicelib.handlers import rest
    return rest.put_presence(app.current_request, channel, instance)


@app.route("/v1/channels/{channel}/presence/{instance}", methods=["DELETE"], cors=API_CORS)
def delete_presence(channel: str, instance: str) -> Response:
    from chalicelib.handlers import rest
    return rest.delete_presence(app.current_request, channel, instance)


@app.route(
    "/v1/stream/{channel}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
    content_types=STREAM_CONTENT_TYPES,
    cors=STREAM_CORS,
)
def stream(channel: str) -> Response:
    from chalicelib.handlers import durable_streams
    return durable_streams.dispatch(app.current_request, channel)


# A stream path of several segments is one channel: /v1/stream/events/a is events:a
# (docs/durable-streams.md, "Stream paths"). Chalice passes no greedy value to the view; the
# handler reads it from the event (API Gateway and the dev gateway put it there).
@app.route(
    "/v1/stream/{channel}/{path+}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
    content_types=STREAM_CONTENT_TYPES,
    cors=STREAM_CORS,
)
def stream_path(channel: str) -> Response:
    from chalicelib.handlers import durable_streams, wakes
    if channel == "__ds":
        return wakes.no_such_api(app.current_request)
    rest = wakes.greedy_param(app.current_request, "path", f"/v1/stream/{channel}/")
    return durable_streams.dispatch(app.current_request, f"{channel}/{rest}")


# Durable Streams subscriptions: the reserved /v1/stream/__ds/ APIs (literal segments win
# over {channel}, on API Gateway as in the dev gateway).
@app.route("/v1/stream/__ds/jwks.json", methods=["GET"], cors=STREAM_CORS)
def ds_jwks() -> Response:
    from chalicelib.handlers import wakes
    return wakes.jwks(app.current_request)


@app.route("/v1/stream/__ds/subscriptions", methods=["GET"], cors=STREAM_CORS)
def ds_subscriptions() -> Response:
    from chalicelib.handlers import wakes
    return wakes.list_subscriptions(app.current_request)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}",
    methods=["GET", "PUT", "DELETE"],
    content_types=STREAM_CONTENT_TYPES,
    cors=STREAM_CORS,
)
def ds_subscription(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.subscription(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/streams",
    methods=["POST"], content_types=STREAM_CONTENT_TYPES, cors=STREAM_CORS,
)
def ds_subscription_streams(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.add_streams(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/streams/{stream+}",
    methods=["DELETE"], cors=STREAM_CORS,
)
def ds_subscription_stream(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.remove_stream(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/callback",
    methods=["POST"], content_types=STREAM_CONTENT_TYPES, cors=STREAM_CORS,
)
def ds_callback(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.callback(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/claim",
    methods=["POST"], content_types=STREAM_CONTENT_TYPES, cors=STREAM_CORS,
)
def ds_claim(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.claim(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/ack",
    methods=["POST"], content_types=STREAM_CONTENT_TYPES, cors=STREAM_CORS,
)
def ds_ack(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.ack(app.current_request, subscription)


@app.route(
    "/v1/stream/__ds/subscriptions/{subscription}/release",
    methods=["POST"], content_types=STREAM_CONTENT_TYPES, cors=STREAM_CORS,
)
def ds_release(subscription: str) -> Response:
    from chalicelib.handlers import wakes
    return wakes.release(app.current_request, subscription)


# Every other path: the contract's JSON 404, not API Gateway's own 403 "Missing
# Authentication Token" (which, given an Authorization header, repeats it in its body).
@app.route(
    "/{proxy+}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"],
    content_types=STREAM_CONTENT_TYPES,
)
def no_such_route() -> Response:
    from chalicelib.handlers import rest
    return rest.no_such_route(app.current_request)


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The WebSocket $connect authorizer (wired by infra/; the dev gateway calls it too)."""
    from chalicelib.handlers import principals
    return principals.authorize_connect(event)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    from chalicelib.handlers import websocket
    return websocket.connect(event)


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    from chalicelib.handlers import websocket
    return websocket.message(event)


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    from chalicelib.handlers import websocket
    return websocket.disconnect(event)


# Members whose connection vanished without a $disconnect stop heartbeating: the sweeper
# removes them and logs their leave (infra/ also runs it between these minutes; the dev server
# every few seconds).
@app.schedule(Rate(1, unit=Rate.MINUTES), name="presence_sweeper")
def presence_sweeper(event: CloudWatchEvent) -> dict[str, Any]:
    from chalicelib.handlers import presence
    return presence.sweep(event.context)


# Chalice reads the stream ARN when it packages the app: infra/ (or .chalice/config.json)
# provides it; the placeholder keeps imports working where no stream exists (tests, dev).
@app.on_dynamodb_record(
    stream_arn=os.environ.get(
        "SWITCHBOARD_MESSAGES_STREAM_ARN",
        "arn:aws:dynamodb:us-east-1:000000000000:table/switchboard-messages/stream/local",
    ),
    batch_size=100,
    starting_position="LATEST",
)
def fanout_records(event: DynamoDBEvent) -> dict[str, Any]:
    from chalicelib.handlers import fanout
    return fanout.handle(event.to_dict(), event.context)


# Durable Streams subscriptions: the second consumer of the messages stream (its own event
# source mapping; infra/trigger.py) raises links and starts wakes...
@app.on_dynamodb_record(
    stream_arn=os.environ.get(
        "SWITCHBOARD_MESSAGES_STREAM_ARN",
        "arn:aws:dynamodb:us-east-1:000000000000:table/switchboard-messages/stream/local",
    ),
    batch_size=100,
    starting_position="LATEST",
    name="wake_records",
)
def wake_records(event: DynamoDBEvent) -> dict[str, Any]:
    from chalicelib.handlers import wakes
    return wakes.handle_records(event.to_dict(), event.context)


# ...and the wake queue's consumer delivers them (webhooks, wake events, retries, leases).
# infra/ points it at the queue it declares; the placeholder keeps imports working.
@app.on_sqs_message(
    queue_arn=os.environ.get(
        "SWITCHBOARD_WAKE_QUEUE_ARN", "arn:aws:sqs:us-east-1:000000000000:switchboard-wake-jobs"
    ),
    batch_size=10,
    name="wake_jobs",
)
def wake_jobs(event: SQSEvent) -> dict[str, Any]:
    from chalicelib.handlers import wakes
    return wakes.handle_jobs(event.to_dict(), event.context)
