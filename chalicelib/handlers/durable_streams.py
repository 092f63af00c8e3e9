"""``/v1/stream/{channel}``: Durable Streams requests in, HTTP responses out.

Parsing headers and building responses only; the protocol's rules are in core/streams.py and
the use cases in services/streams.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from functools import wraps
from typing import ParamSpec

from chalice.app import APIGateway, Request, Response, _matches_content_type

from ..bootstrap import services
from ..core import stream_headers as headers_
from ..core import streams as protocol
from ..core.capabilities import ADMIN, HISTORY, PUBLISH, Principal
from ..core.channels import ChannelMeta
from ..core.errors import InternalError, InvalidRequestError, SwitchboardError
from ..core.offsets import BEGINNING, parse_start
from ..core.producers import ProducerRequest, parse_producer
from ..observability import logger
from ..services.appends import AppendOutcome, StreamClosedError
from ..services.streams import AppendStream, CreateStream, StreamService
from . import invocation
from .http import error_response, request_body, stream_path_channel
from .principals import http_principal

P = ParamSpec("P")

# The media types API Gateway passes as binary: Chalice's defaults (app.py keeps them).
BINARY_TYPES = APIGateway().binary_types
# What each method needs (docs/auth.md): reads are `history`, appends `publish`, the rest
# `admin` (a PUT with an initial body also `publish`; a fork also `history` on every stream
# it inherits: services/forks.py).
_OPERATIONS = {"GET": HISTORY, "HEAD": HISTORY, "POST": PUBLISH, "PUT": ADMIN, "DELETE": ADMIN}


def stream_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Contract errors with the protocol's extra headers; never a stack trace."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except StreamClosedError as error:
            return error_response(
                error,
                {
                    **protocol.SECURITY_HEADERS,
                    headers_.STREAM_CLOSED: "true",
                    headers_.STREAM_NEXT_OFFSET: error.meta.head_offset,
                },
            )
        except SwitchboardError as error:
            logger.info("stream request rejected", extra={"code": error.code})
            extra = getattr(error, "headers", None) or {}
            return error_response(error, {**protocol.SECURITY_HEADERS, **extra})
        except Exception:
            logger.exception("stream request failed")
            return error_response(
                InternalError("The server failed; retry the request."),
                dict(protocol.SECURITY_HEADERS),
            )

    return wrapper


def _streams() -> StreamService:
    return services().streams


def _respond(body: str | bytes, status: int, headers: dict[str, str]) -> Response:
    # Chalice base64-encodes the bodies of binary media types (they must be bytes) and
    # passes others through as text (bytes would not survive Lambda's JSON encoding).
    if _matches_content_type(headers.get("Content-Type", ""), BINARY_TYPES):
        body = body.encode("utf-8") if isinstance(body, str) else body
    elif isinstance(body, bytes):
        # Not UTF-8: only a binary media type survives API Gateway (docs/durable-streams.md).
        with contextlib.suppress(UnicodeDecodeError):
            body = body.decode("utf-8")
    return Response(
        body=body, status_code=status, headers={**headers, **protocol.SECURITY_HEADERS}
    )


@stream_errors
def dispatch(request: Request, channel: str) -> Response:
    """``channel``: the path after /v1/stream/ as API Gateway passes it (one segment, or
    several joined by ``/`` for the greedy route)."""
    channel = stream_path_channel(channel)
    method = request.method.upper()
    principal = http_principal(request, channel, _OPERATIONS.get(method, ADMIN))
    # Appends are stamped with who authenticated; nothing in the request can say otherwise.
    publisher = principal.publisher
    if method == "PUT":
        return create(request, channel, publisher, principal)
    if method == "POST":
        return append(request, channel, publisher)
    if method in ("GET", "HEAD"):
        return read(request, channel, head_only=method == "HEAD", principal=principal)
    if method == "DELETE":
        _streams().channels.delete(channel)
        return _respond("", 204, {"Cache-Control": protocol.NO_STORE})
    raise InvalidRequestError(f"Method {method} is not supported on streams.")


def _raw_body(request: Request) -> bytes:
    # At most SWITCHBOARD_MAX_REQUEST_BYTES, like every append path (a JSON array is also
    # at most SWITCHBOARD_MAX_BATCH messages: services/appends.py).
    return request_body(request, services().settings.max_request_bytes)


# -- create ---------------------------------------------------------------------------------


def create(
    request: Request, channel: str, publisher: str | None = None,
    principal: Principal | None = None,
) -> Response:
    headers = request.headers
    streams = _streams()
    body = _raw_body(request)
    if body and principal is not None:
        # An initial body is appended: creating needs `admin`, writing it `publish` too.
        principal.require(channel, PUBLISH, streams.clock.now_ms() / 1000)
    ttl_s, expires_at = protocol.parse_lifetime(
        headers.get("stream-ttl"), headers.get("stream-expires-at"), streams.clock.now_ms()
    )
    meta, created = streams.create(
        CreateStream(
            name=channel,
            content_type=protocol.media_type(headers.get("content-type")) or None,
            ttl_s=ttl_s,
            expires_at=expires_at,
            close=protocol.parse_flag(headers.get("stream-closed"), headers_.STREAM_CLOSED),
            body=body,
            forked_from=headers.get("stream-forked-from"),
            fork_offset=headers.get("stream-fork-offset"),
            fork_sub_offset=headers.get("stream-fork-sub-offset"),
            publisher=publisher,
            principal=principal,
        ),
        invocation.deadline_ms(streams.clock),
    )
    response_headers = {
        "Content-Type": meta.content_type,
        headers_.STREAM_NEXT_OFFSET: meta.head_offset,
        "Cache-Control": protocol.NO_STORE,
    }
    if meta.closed:
        response_headers[headers_.STREAM_CLOSED] = "true"
    if created:
        response_headers["Location"] = _absolute_url(request, channel)
    return _respond("", 201 if created else 200, response_headers)


def _absolute_url(request: Request, channel: str) -> str:
    headers = request.headers
    host = headers.get("host", "localhost")
    scheme = headers.get("x-forwarded-proto") or (
        "http" if host.startswith(("127.0.0.1", "localhost")) else "https"
    )
    context = request.context or {}
    path = str(context.get("path") or f"/v1/stream/{channel}")
    stage = context.get("stage")
    # On API Gateway's default domain the stage is part of the URL; the context path has it.
    if stage and host.endswith(".amazonaws.com") and not path.startswith(f"/{stage}/"):
        path = f"/{stage}{path}"
    return f"{scheme}://{host}{path}"


# -- append ---------------------------------------------------------------------------------


def append(request: Request, channel: str, publisher: str | None = None) -> Response:
    headers = request.headers
    stream_seq = headers.get("stream-seq")
    if stream_seq is not None and not stream_seq:
        raise InvalidRequestError("Stream-Seq must not be empty.")
    producer = parse_producer(
        headers.get("producer-id"), headers.get("producer-epoch"), headers.get("producer-seq")
    )
    streams = _streams()
    outcome = streams.append(
        AppendStream(
            name=channel,
            body=_raw_body(request),
            content_type=protocol.media_type(headers.get("content-type")),
            close=protocol.parse_flag(headers.get("stream-closed"), headers_.STREAM_CLOSED),
            producer=producer,
            stream_seq=stream_seq,
            publisher=publisher,
        ),
        invocation.deadline_ms(streams.clock),
    )
    return _append_response(outcome, producer)


def _append_response(outcome: AppendOutcome, producer: ProducerRequest | None) -> Response:
    headers = {
        headers_.STREAM_NEXT_OFFSET: outcome.meta.head_offset,
        "Cache-Control": protocol.NO_STORE,
    }
    if outcome.meta.closed:
        headers[headers_.STREAM_CLOSED] = "true"
    status = 204
    if producer is not None:
        state = outcome.producer
        headers[headers_.PRODUCER_EPOCH] = str(state.epoch if state else producer.epoch)
        headers[headers_.PRODUCER_SEQ] = str(state.last_seq if state else producer.seq)
        # 200: new data stored; 204: a duplicate, or a close that carried no data.
        status = 204 if outcome.duplicate or outcome.stored == 0 else 200
    return _respond("", status, headers)


# -- read -----------------------------------------------------------------------------------


def read(
    request: Request, channel: str, head_only: bool, principal: Principal | None = None
) -> Response:
    streams = _streams()
    meta = streams.channels.get(channel)
    if head_only:
        headers = {
            **protocol.meta_headers(meta),
            headers_.STREAM_NEXT_OFFSET: meta.head_offset,
            "Cache-Control": protocol.NO_STORE,
        }
        if meta.closed:
            headers[headers_.STREAM_CLOSED] = "true"
        return _respond("", 200, headers)
    params: Mapping[str, str] = request.query_params or {}
    live = params.get("live")
    if live not in (None, "long-poll", "sse"):
        raise InvalidRequestError("'live' must be 'long-poll' or 'sse'.", {"live": live})
    raw_offset = params.get("offset")
    if raw_offset is None and live is not None:
        raise InvalidRequestError(f"live={live} needs an 'offset' ('-1', 'now' or an offset).")
    if raw_offset == "":
        raise InvalidRequestError("'offset' must not be empty.")
    start = parse_start(raw_offset, default=BEGINNING)
    after = streams.start_read(meta, start)
    cursor = streams.cursor(params.get("cursor"))
    if live is not None:
        # A live read holds this invocation until data comes or time runs out: bounded per
        # principal (services/limits.py).
        limiter = services().limiter
        deadline = invocation.deadline_ms(streams.clock)
        limits = limiter.live_read(principal or Principal.anonymous(), _source_ip(request))
        with limiter.holding(limits, deadline or streams.live_read_ends_ms(live)):
            return _live_read(request, meta, after, cursor, live, raw_offset, start.kind,
                              deadline)
    batch = streams.read_batch(meta, after)
    return _catch_up_response(request, meta, batch, cursor, None, raw_offset, start.kind)


def _source_ip(request: Request) -> str | None:
    identity = (request.context or {}).get("identity") or {}
    ip = identity.get("sourceIp")
    return ip if isinstance(ip, str) and ip else None


def _live_read(
    request: Request, meta: ChannelMeta, after: int, cursor: str, live: str,
    raw_offset: str | None, start_kind: str, deadline: int | None,
) -> Response:
    streams = _streams()
    if live == "sse":
        return _respond(
            streams.sse(meta, after, cursor, deadline), 200, protocol.sse_headers(meta)
        )
    batch = streams.long_poll(meta, after, deadline)
    if batch.count == 0:
        headers = {
            **protocol.meta_headers(batch.meta),
            headers_.STREAM_NEXT_OFFSET: batch.next_offset,
            headers_.STREAM_UP_TO_DATE: "true",
            headers_.STREAM_CURSOR: cursor,
            "Cache-Control": protocol.NO_STORE,
        }
        if batch.meta.closed:
            headers[headers_.STREAM_CLOSED] = "true"
        return _respond("", 204, headers)
    return _catch_up_response(request, meta, batch, cursor, live, raw_offset, start_kind)


def _catch_up_response(
    request: Request, meta: ChannelMeta, batch: protocol.Batch, cursor: str,
    live: str | None, raw_offset: str | None, start_kind: str,
) -> Response:
    headers = {
        **protocol.meta_headers(batch.meta),
        headers_.STREAM_NEXT_OFFSET: batch.next_offset,
        "Cache-Control": protocol.NO_STORE if batch.up_to_date else protocol.CACHEABLE,
    }
    if batch.up_to_date:
        headers[headers_.STREAM_UP_TO_DATE] = "true"
        if batch.meta.closed:
            headers[headers_.STREAM_CLOSED] = "true"
    if live == "long-poll":
        headers[headers_.STREAM_CURSOR] = cursor
    if start_kind != "now":
        start_offset = raw_offset if start_kind == "position" and raw_offset else BEGINNING
        tag = protocol.etag(
            meta.epoch, start_offset, batch.next_offset, headers_.STREAM_CLOSED in headers
        )
        headers["ETag"] = tag
        if request.headers.get("if-none-match") == tag:
            return _respond("", 304, headers)
    return _respond(protocol.render(batch), 200, headers)
