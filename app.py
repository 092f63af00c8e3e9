"""Switchboard's Chalice app: routes and event sources, one line each.

Everything is built lazily on first use (chalicelib/bootstrap.py), so importing this module
costs a cold start nothing but Chalice itself. The handler bodies live in chalicelib/handlers.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from chalice.app import Chalice, CORSConfig, DynamoDBEvent, Request, Response, WebsocketEvent

from chalicelib import observability
from chalicelib.handlers import authn, durable_streams, fanout, rest, websocket


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


app = _Chalice(app_name="switchboard")
app.experimental_feature_flags.update(["WEBSOCKETS"])

STREAM_CONTENT_TYPES = ["*/*"]
# Browsers speak Durable Streams cross-origin: preflights allow its request headers and
# responses expose its response headers.
STREAM_CORS = CORSConfig(
    allow_origin="*",
    allow_headers=[
        "Content-Type", "Authorization", "If-None-Match", "Stream-Seq", "Stream-TTL",
        "Stream-Expires-At", "Stream-Closed", "Producer-Id", "Producer-Epoch", "Producer-Seq",
        "Stream-Forked-From", "Stream-Fork-Offset", "Stream-Fork-Sub-Offset",
    ],
    expose_headers=[
        "Stream-Next-Offset", "Stream-Cursor", "Stream-Up-To-Date", "Stream-Closed",
        "Stream-TTL", "Stream-Expires-At", "Stream-SSE-Data-Encoding", "ETag", "Location",
        "Producer-Epoch", "Producer-Seq", "Producer-Expected-Seq", "Producer-Received-Seq",
    ],
    max_age=86400,
)


@app.middleware("all")
def log_invocation(event: Any, get_response: Any) -> Any:
    """Tag every log line of this invocation with Lambda's request id and function name."""
    # REST requests carry the Lambda context as .lambda_context (.context is API Gateway's);
    # event-source events (WebSocket, DynamoDB stream) carry it as .context.
    is_rest = isinstance(event, Request)
    context = getattr(event, "lambda_context" if is_rest else "context", None)
    if context is not None:
        observability.logger.thread_safe_append_keys(
            request_id=getattr(context, "aws_request_id", None),
            function=getattr(context, "function_name", None),
        )
    return get_response(event)


@app.route("/v1/health", methods=["GET"])
def health() -> Response:
    return rest.health()


@app.route("/v1/openapi.json", methods=["GET"])
def openapi() -> Response:
    return rest.openapi()


@app.route("/v1/tokens", methods=["POST"], content_types=STREAM_CONTENT_TYPES)
def issue_token() -> Response:
    return rest.issue_token(app.current_request)


@app.route("/v1/channels/{channel}", methods=["GET"])
def get_channel(channel: str) -> Response:
    return rest.get_channel(app.current_request, channel)


@app.route("/v1/channels/{channel}", methods=["PUT"], content_types=STREAM_CONTENT_TYPES)
def put_channel(channel: str) -> Response:
    return rest.put_channel(app.current_request, channel)


@app.route("/v1/channels/{channel}", methods=["DELETE"])
def delete_channel(channel: str) -> Response:
    return rest.delete_channel(app.current_request, channel)


@app.route("/v1/channels/{channel}/messages", methods=["GET"])
def get_messages(channel: str) -> Response:
    return rest.get_messages(app.current_request, channel)


@app.route("/v1/channels/{channel}/messages", methods=["POST"], content_types=STREAM_CONTENT_TYPES)
def post_messages(channel: str) -> Response:
    return rest.post_messages(app.current_request, channel)


@app.route(
    "/v1/stream/{channel}",
    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
    content_types=STREAM_CONTENT_TYPES,
    cors=STREAM_CORS,
)
def stream(channel: str) -> Response:
    return durable_streams.dispatch(app.current_request, channel)


@app.lambda_function(name="ws_authorizer")
def ws_authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The WebSocket $connect authorizer (wired by infra/; the dev gateway calls it too)."""
    return authn.authorize_connect(event)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    return websocket.connect(event)


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    return websocket.message(event)


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
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
    return fanout.handle(event.to_dict(), event.context)
