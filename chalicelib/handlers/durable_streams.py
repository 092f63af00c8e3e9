"""``/v1/stream/{channel}``: the Durable Streams protocol over the same channel logs.

JSON streams (``application/json``) keep message boundaries: a POSTed array appends each
element as one message, and a GET returns a JSON array. Every other content type is a byte
stream: a POST body is stored as one or more consecutive entries (split at the message size
limit) and a GET returns the entries' bytes concatenated. Offsets are the same offsets as on
the WebSocket.

API Gateway REST and Lambda cannot stream a response, so the live modes are bounded (see
docs/durable-streams.md): long-poll holds up to ``long_poll_timeout_s`` polling the channel's
head; SSE returns what is available (holding up to ``sse_hold_s`` when caught up) as complete
events and closes, and the client reconnects from the last control event's offset.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec

from chalice.app import APIGateway, Request, Response, _matches_content_type

from ..bootstrap import services
from ..core.auth import ADMIN, HISTORY, PUBLISH
from ..core.channels import ChannelMeta
from ..core.errors import (
    ConflictError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    SwitchboardError,
)
from ..core.forks import parse_fork_offset, parse_source, parse_sub_offset
from ..core.messages import JSON_CONTENT_TYPE, NewMessage
from ..core.names import validate_channel
from ..core.offsets import BEGINNING, parse_start
from ..core.producers import ProducerRequest, parse_producer
from ..observability import flush_metrics, logger, service_metrics
from ..services import ChannelService, StreamAppend, StreamClosedError
from ..stream_forks import ForkRequest, fork
from .authn import http_principal
from .http import error_response

P = ParamSpec("P")

OCTET_STREAM = "application/octet-stream"
CACHEABLE = "private, max-age=60, stale-while-revalidate=300"
NO_STORE = "no-store"
READ_LIMIT = 1000  # messages per catch-up response
# Lambda responses are at most 6 MB and binary bodies travel base64-encoded (4/3).
READ_MAX_BYTES = 3 * 1024 * 1024
POLL_INTERVAL_S = 0.1  # how often a waiting read re-reads the channel's head (one GetItem)
# Protocol 8.1: cursors count 20 s intervals since 2024-10-09T00:00:00Z.
CURSOR_EPOCH_S = 1728432000
CURSOR_INTERVAL_S = 20
# Browsers: no MIME sniffing, readable cross-origin with fetch() (protocol 10.7).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
# The media types API Gateway passes as binary: Chalice's defaults (app.py keeps them).
BINARY_TYPES = APIGateway().binary_types
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TTL = re.compile(r"0|[1-9][0-9]*")


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON_CONTENT_TYPE


def is_text(content_type: str) -> bool:
    """SSE carries these as text; anything else is base64-encoded in data events."""
    return is_json(content_type) or media_type(content_type).startswith("text/")


class _HeaderedError(SwitchboardError):
    headers: dict[str, str]


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
                    **SECURITY_HEADERS,
                    "Stream-Closed": "true",
                    "Stream-Next-Offset": error.meta.head_offset,
                },
            )
        except SwitchboardError as error:
            logger.info("stream request rejected", extra={"code": error.code})
            extra = getattr(error, "headers", None) or {}
            return error_response(error, {**SECURITY_HEADERS, **extra})
        except Exception:
            logger.exception("stream request failed")
            return error_response(
                InternalError("The server failed; retry the request."), dict(SECURITY_HEADERS)
            )
        finally:
            flush_metrics()

    return wrapper


def _channels() -> ChannelService:
    return services(service_metrics).channels


def _respond(body: str | bytes, status: int, headers: dict[str, str]) -> Response:
    # Chalice base64-encodes the bodies of binary media types (they must be bytes) and
    # passes others through as text (bytes would not survive Lambda's JSON encoding).
    if _matches_content_type(headers.get("Content-Type", ""), BINARY_TYPES):
        body = body.encode("utf-8") if isinstance(body, str) else body
    elif isinstance(body, bytes):
        # Not UTF-8: only a binary media type survives API Gateway (docs/durable-streams.md).
        with contextlib.suppress(UnicodeDecodeError):
            body = body.decode("utf-8")
    return Response(body=body, status_code=status, headers={**headers, **SECURITY_HEADERS})


@stream_errors
def dispatch(request: Request, channel: str) -> Response:
    method = request.method.upper()
    # Appends are stamped with who authenticated; nothing in the request can say otherwise.
    publisher = http_principal(
        request, validate_channel(channel), _OPERATIONS.get(method, ADMIN)
    ).publisher
    if method == "PUT":
        return create(request, channel, publisher)
    if method == "POST":
        return append(request, channel, publisher)
    if method in ("GET", "HEAD"):
        return read(request, channel, head_only=method == "HEAD")
    if method == "DELETE":
        _channels().delete(channel)
        return _respond("", 204, {"Cache-Control": NO_STORE})
    raise InvalidRequestError(f"Method {method} is not supported on streams.")


# What each method needs (docs/auth.md): reads are `history`, appends `publish`, the rest
# `admin`.
_OPERATIONS = {"GET": HISTORY, "HEAD": HISTORY, "POST": PUBLISH, "PUT": ADMIN, "DELETE": ADMIN}


# -- create ---------------------------------------------------------------------------------


def create(request: Request, channel: str, publisher: str | None = None) -> Response:
    headers = request.headers
    close = _flag(headers.get("stream-closed"), "Stream-Closed")
    channels = _channels()
    ttl_s, expires_at = _lifetime(
        channels, headers.get("stream-ttl"), headers.get("stream-expires-at")
    )
    forked_from = headers.get("stream-forked-from")
    sub_offset = headers.get("stream-fork-sub-offset")
    if forked_from is None and (
        sub_offset is not None or headers.get("stream-fork-offset") is not None
    ):
        raise InvalidRequestError(
            "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From."
        )
    if forked_from is not None:
        meta, created = _fork(request, channel, forked_from, ttl_s, expires_at)
        if not created and close and not meta.closed:
            raise ConflictError(f"Stream {channel!r} exists and is open.", {"channel": channel})
        return _created(request, channels, channel, meta, created, close, publisher)
    content_type = media_type(headers.get("content-type")) or OCTET_STREAM
    meta, created = channels.create(
        channel, content_type=content_type, expires_at=expires_at, ttl_s=ttl_s
    )
    if not created and (
        meta.fork is not None  # a fork is re-created only with its fork headers
        or meta.content_type != content_type
        or meta.ttl_s != ttl_s
        or (ttl_s is None and meta.expires_at != expires_at)
        or (close and not meta.closed)
    ):
        raise ConflictError(
            f"Stream {channel!r} already exists with another configuration "
            f"(content type {meta.content_type}, TTL {meta.ttl_s}, "
            f"expires at {meta.expires_at}).",
            {"content_type": meta.content_type},
        )
    return _created(request, channels, channel, meta, created, close, publisher)


def _fork(
    request: Request, channel: str, forked_from: str, ttl_s: int | None, expires_at: int | None
) -> tuple[ChannelMeta, bool]:
    headers = request.headers
    offset = headers.get("stream-fork-offset")
    sub_offset = headers.get("stream-fork-sub-offset")
    return fork(
        _channels(),
        ForkRequest(
            name=channel,
            source=parse_source(forked_from),
            offset=parse_fork_offset(offset) if offset is not None else None,
            sub_offset=parse_sub_offset(sub_offset) if sub_offset is not None else 0,
            content_type=media_type(headers.get("content-type")) or None,
            ttl_s=ttl_s,
            expires_at=expires_at,
            ttl_given=ttl_s is not None or expires_at is not None,
        ),
    )


def _created(
    request: Request,
    channels: ChannelService,
    channel: str,
    meta: ChannelMeta,
    created: bool,
    close: bool,
    publisher: str | None = None,
) -> Response:
    raw = _raw_body(request)
    if created and (raw or close):
        bodies = _bodies(channels, meta, raw, allow_empty_array=True)
        if bodies or close:
            meta = channels.append_stream(
                channel, bodies, meta.content_type, close=close, publisher=publisher
            ).meta
    response_headers = {
        "Content-Type": meta.content_type,
        "Stream-Next-Offset": meta.head_offset,
        "Cache-Control": NO_STORE,
    }
    if meta.closed:
        response_headers["Stream-Closed"] = "true"
    if created:
        response_headers["Location"] = _absolute_url(request, channel)
    return _respond("", 201 if created else 200, response_headers)


def _raw_body(request: Request) -> bytes:
    raw = request.raw_body or b""
    # Chalice types it loosely; API Gateway events always decode to bytes.
    return raw.encode("utf-8") if isinstance(raw, str) else raw


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
    close = _flag(headers.get("stream-closed"), "Stream-Closed")
    producer = parse_producer(
        headers.get("producer-id"), headers.get("producer-epoch"), headers.get("producer-seq")
    )
    stream_seq = headers.get("stream-seq")
    if stream_seq is not None and not stream_seq:
        raise InvalidRequestError("Stream-Seq must not be empty.")
    raw = _raw_body(request)
    content_type = media_type(headers.get("content-type"))
    channels = _channels()
    if not raw and not close:
        raise InvalidRequestError(
            "Empty appends are not allowed: send at least one byte, or Stream-Closed: true "
            "to close the stream."
        )
    if raw and not content_type:
        raise InvalidRequestError("Content-Type is required on appends.")
    bodies: list[NewMessage] = []
    if raw:
        meta = channels.get(channel)
        # A mismatched content type is refused by the service, after the producer checks
        # (a producer's retry is a duplicate whatever it carries).
        bodies = (
            _bodies(channels, meta, raw, allow_empty_array=False)
            if content_type == meta.content_type
            else [NewMessage(raw)]
        )
    outcome = channels.append_stream(
        channel,
        bodies if raw else [],
        content_type if raw else None,
        producer=producer,
        stream_seq=stream_seq,
        close=close,
        publisher=publisher,
    )
    return _append_response(outcome, producer)


def _append_response(outcome: StreamAppend, producer: ProducerRequest | None) -> Response:
    headers = {"Stream-Next-Offset": outcome.meta.head_offset, "Cache-Control": NO_STORE}
    if outcome.meta.closed:
        headers["Stream-Closed"] = "true"
    status = 204
    if producer is not None:
        state = outcome.producer
        headers["Producer-Epoch"] = str(state.epoch if state else producer.epoch)
        headers["Producer-Seq"] = str(state.last_seq if state else producer.seq)
        # 200: new data stored; 204: a duplicate, or a close that carried no data.
        status = 204 if outcome.duplicate or outcome.stored == 0 else 200
    return _respond("", status, headers)


def _bodies(
    channels: ChannelService, meta: ChannelMeta, raw: bytes, allow_empty_array: bool
) -> list[NewMessage]:
    if not is_json(meta.content_type):
        # A byte stream's append may exceed one message: store consecutive slices (one
        # transaction), which read back as the same bytes.
        size = channels.settings.max_message_bytes
        return [NewMessage(raw[i : i + size]) for i in range(0, len(raw), size)]
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("The body is not valid JSON.") from None
    if isinstance(value, list):
        if not value and not allow_empty_array:
            raise InvalidRequestError("An empty JSON array appends nothing; send messages.")
        return [NewMessage(channels.encode(item)) for item in value]
    return [NewMessage(channels.encode(value))]


# -- read -----------------------------------------------------------------------------------


@dataclass
class _Batch:
    meta: ChannelMeta
    body: bytes
    next_offset: str
    up_to_date: bool
    count: int


def read(request: Request, channel: str, head_only: bool) -> Response:
    channels = _channels()
    meta = channels.get(channel)
    if head_only:
        headers = {**_meta_headers(meta), "Stream-Next-Offset": meta.head_offset}
        headers["Cache-Control"] = NO_STORE
        if meta.closed:
            headers["Stream-Closed"] = "true"
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
    after = channels.resolve(meta, start)
    channels.touch(meta)
    cursor = _cursor(params.get("cursor"))
    if live == "sse":
        return _sse(channels, meta, after, cursor)
    batch = _read_batch(channels, meta, after)
    if live == "long-poll" and batch.count == 0:
        if not meta.closed:
            batch = _wait(channels, meta, after, channels.settings.long_poll_timeout_s)
        if batch.count == 0:
            headers = {
                **_meta_headers(batch.meta),
                "Stream-Next-Offset": batch.next_offset,
                "Stream-Up-To-Date": "true",
                "Stream-Cursor": cursor,
                "Cache-Control": NO_STORE,
            }
            if batch.meta.closed:
                headers["Stream-Closed"] = "true"
            return _respond("", 204, headers)
    headers = {
        **_meta_headers(batch.meta),
        "Stream-Next-Offset": batch.next_offset,
        "Cache-Control": NO_STORE if batch.up_to_date else CACHEABLE,
    }
    if batch.up_to_date:
        headers["Stream-Up-To-Date"] = "true"
        if batch.meta.closed:
            headers["Stream-Closed"] = "true"
    if live == "long-poll":
        headers["Stream-Cursor"] = cursor
    if start.kind != "now":
        start_offset = raw_offset if start.kind == "position" else BEGINNING
        closed = ":closed" if "Stream-Closed" in headers else ""
        etag = f'"{meta.epoch}:{start_offset}:{batch.next_offset}{closed}"'
        headers["ETag"] = etag
        if request.headers.get("if-none-match") == etag:
            return _respond("", 304, headers)
    return _respond(_render(batch.meta, batch.body, batch.count), 200, headers)


def _meta_headers(meta: ChannelMeta) -> dict[str, str]:
    headers = {"Content-Type": meta.content_type}
    if meta.ttl_s is not None:
        headers["Stream-TTL"] = str(meta.ttl_s)
    if meta.expires_at is not None:
        headers["Stream-Expires-At"] = _rfc3339(meta.expires_at)
    return headers


def _read_batch(channels: ChannelService, meta: ChannelMeta, after: int) -> _Batch:
    """Messages after ``after``, bounded by count and bytes; their bytes joined."""
    messages = channels.read_after(meta, after, READ_LIMIT)
    parts: list[bytes] = []
    size, last = 0, after
    separator = 1 if is_json(meta.content_type) else 0
    for message in messages:
        if parts and size + len(message.body) > READ_MAX_BYTES:
            break
        parts.append(message.body)
        size += len(message.body) + separator
        last = message.seq
    if not parts and messages:
        last = messages[-1].seq  # only expired gaps: move past them
    joiner = b"," if separator else b""
    return _Batch(
        meta=meta,
        body=joiner.join(parts),
        next_offset=meta.with_head(last).head_offset,
        up_to_date=last >= meta.head,
        count=len(parts),
    )


def _render(meta: ChannelMeta, body: bytes, count: int) -> str | bytes:
    if is_json(meta.content_type):
        return b"[" + body + b"]" if count else b"[]"
    return body


def _wait(
    channels: ChannelService, meta: ChannelMeta, after: int, timeout_s: float
) -> _Batch:
    """Poll the channel's head until it passes ``after``, it closes, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        latest = channels.store.get_channel(meta.name)
        if latest is None or latest.epoch != meta.epoch or latest.deleted:
            raise NotFoundError(f"Stream {meta.name!r} was deleted.", {"channel": meta.name})
        if latest.head > after or latest.closed:
            return _read_batch(channels, latest, after)
        if time.monotonic() + POLL_INTERVAL_S > deadline:
            return _read_batch(channels, latest, after)
        channels.clock.sleep(POLL_INTERVAL_S)


def _cursor(client_cursor: str | None) -> str:
    """Protocol 8.1: the current interval, or past the client's cursor (never backwards)."""
    current = int((time.time() - CURSOR_EPOCH_S) // CURSOR_INTERVAL_S)
    if client_cursor is not None and client_cursor.isdigit() and int(client_cursor) >= current:
        jitter_s = random.randint(1, 3600)
        return str(int(client_cursor) + max(1, jitter_s // CURSOR_INTERVAL_S))
    return str(current)


# -- SSE ------------------------------------------------------------------------------------


def _sse(
    channels: ChannelService, meta: ChannelMeta, after: int, cursor: str
) -> Response:
    """One bounded SSE response: catch-up events, or (when caught up) what arrives within
    ``sse_hold_s``, then the connection closes and the client resumes from the last
    control event."""
    text = is_text(meta.content_type)
    events: list[str] = []
    batch = _read_batch(channels, meta, after)
    while batch.count:
        events.append(_data_event(batch, text))
        events.append(_control_event(batch, cursor))
        after = int(batch.next_offset.rsplit("_", 1)[1])
        if batch.up_to_date:
            break
        batch = _read_batch(channels, batch.meta, after)
    if not events:
        if not batch.meta.closed:
            batch = _wait(channels, batch.meta, after, channels.settings.sse_hold_s)
        if batch.count:
            events.append(_data_event(batch, text))
        events.append(_control_event(batch, cursor))
    headers = {
        "Content-Type": "text/event-stream",
        # As the protocol's SSE responses: never served from a cache without revalidation.
        "Cache-Control": "no-cache",
    }
    if not text:
        headers["Stream-SSE-Data-Encoding"] = "base64"
    return _respond("".join(events), 200, headers)


def _data_event(batch: _Batch, text: bool) -> str:
    if not text:
        payload = base64.b64encode(batch.body).decode("ascii")
    elif is_json(batch.meta.content_type):
        payload = "[" + batch.body.decode("utf-8") + "]"
    else:
        payload = batch.body.decode("utf-8", errors="replace")
    # Every line of the payload becomes its own data: line, so a payload can never end
    # the event or inject one.
    lines = _LINE_BREAK.split(payload)
    # SSE parsers drop one space after "data:": keep a leading space by adding one.
    return "event: data\n" + "".join(
        f"data: {line}\n" if line.startswith(" ") else f"data:{line}\n" for line in lines
    ) + "\n"


def _control_event(batch: _Batch, cursor: str) -> str:
    control: dict[str, Any] = {"streamNextOffset": batch.next_offset}
    if batch.up_to_date and batch.meta.closed:
        control["streamClosed"] = True
    else:
        control["streamCursor"] = cursor
        if batch.up_to_date:
            control["upToDate"] = True
    return "event: control\ndata:" + json.dumps(control, separators=(",", ":")) + "\n\n"


# -- header parsing -------------------------------------------------------------------------


def _flag(value: str | None, header: str) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise InvalidRequestError(f"{header} must be 'true' or 'false'.")


def _lifetime(
    channels: ChannelService, ttl: str | None, expires: str | None
) -> tuple[int | None, int | None]:
    """(TTL seconds, expiry in epoch seconds) from the create headers."""
    if ttl is not None and expires is not None:
        raise InvalidRequestError("Send Stream-TTL or Stream-Expires-At, not both.")
    if ttl is not None:
        if not _TTL.fullmatch(ttl):
            raise InvalidRequestError(
                "Stream-TTL must be a non-negative integer of seconds without sign, leading "
                "zeros, decimals or exponent (e.g. 3600)."
            )
        seconds = int(ttl)
        now_ms = channels.clock.now_ms()
        return seconds, -(-(now_ms + seconds * 1000) // 1000)
    if expires is not None:
        try:
            when = datetime.fromisoformat(expires.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(
                "Stream-Expires-At must be an RFC 3339 timestamp, e.g. 2030-01-01T00:00:00Z."
            ) from None
        if when.tzinfo is None:
            raise InvalidRequestError("Stream-Expires-At needs a time zone (e.g. 'Z').")
        # Truncated to the second (DynamoDB's TTL granularity): the stream is gone no later
        # than asked (a TTL rounds up instead: it lives at least that long).
        return None, math.floor(when.timestamp())
    return None, None


def _rfc3339(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

