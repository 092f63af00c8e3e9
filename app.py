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
    CORSConfig,
    DynamoDBEvent,
    Request,
    Response,
    RestAPIEventHandler,
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


@app.route(
    "/v1/stream/{channel}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
    content_types=STREAM_CONTENT_TYPES,
    cors=STREAM_CORS,
)
def stream(channel: str) -> Response:
    from chalicelib.handlers import durable_streams
    return durable_streams.dispatch(app.current_request, channel)


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
