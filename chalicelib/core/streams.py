"""The Durable Streams protocol's rules, as pure functions (PROTOCOL.md in the public
repository durable-streams/durable-streams): media types, how a body splits into messages and
how messages join into a body, SSE events, cursors, lifetimes and ETags. Header names are in
stream_headers.py.

No I/O and no clock: callers pass the time. services/streams.py applies these rules to the
channel logs; handlers/durable_streams.py turns requests and results into HTTP.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .channels import ChannelMeta
from .errors import InvalidRequestError, TooLargeError
from .messages import JSON_CONTENT_TYPE, encode_data
from .stream_headers import STREAM_EXPIRES_AT, STREAM_SSE_DATA_ENCODING, STREAM_TTL

OCTET_STREAM = "application/octet-stream"
EVENT_STREAM = "text/event-stream"
CACHEABLE = "private, max-age=60, stale-while-revalidate=300"
NO_STORE = "no-store"
# Browsers: no MIME sniffing, readable cross-origin with fetch() (protocol 10.7).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
# Protocol 8.1: cursors count 20 s intervals since 2024-10-09T00:00:00Z.
CURSOR_EPOCH_S = 1728432000
CURSOR_INTERVAL_S = 20

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TTL = re.compile(r"0|[1-9][0-9]*")


# -- media types ----------------------------------------------------------------------------


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON_CONTENT_TYPE


def is_text(content_type: str) -> bool:
    """SSE carries these as text; anything else is base64-encoded in data events."""
    return is_json(content_type) or media_type(content_type).startswith("text/")


# -- bodies ---------------------------------------------------------------------------------


def split_body(
    content_type: str, raw: bytes, max_message_bytes: int, allow_empty_array: bool,
    max_messages: int | None = None,
) -> list[bytes]:
    """The messages an append body stores.

    JSON streams keep message boundaries: an array appends each element as one message, any
    other value is one message. Byte streams store consecutive slices of at most
    ``max_message_bytes``, which read back as the same bytes. More than ``max_messages``
    is refused (``too_large``) before any of them is encoded.
    """
    if not is_json(content_type):
        bodies = [raw[i : i + max_message_bytes] for i in range(0, len(raw), max_message_bytes)]
        _check_count(len(bodies), max_messages)
        return bodies
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestError("The body is not valid JSON.") from None
    if isinstance(value, list):
        if not value and not allow_empty_array:
            raise InvalidRequestError("An empty JSON array appends nothing; send messages.")
        _check_count(len(value), max_messages)
        return [encode_data(item, max_message_bytes) for item in value]
    return [encode_data(value, max_message_bytes)]


def _check_count(count: int, max_messages: int | None) -> None:
    if max_messages is not None and count > max_messages:
        raise TooLargeError(
            f"At most {max_messages} messages per request; got {count}. Send them in "
            "several requests.",
            {"max_batch": max_messages, "count": count},
        )


@dataclass(frozen=True)
class Batch:
    """Messages of one read, joined: what a catch-up response or an SSE data event carries."""

    meta: ChannelMeta
    body: bytes  # the messages' bytes, joined (JSON: comma-separated values)
    next_offset: str
    up_to_date: bool
    count: int

    @property
    def next_seq(self) -> int:
        return int(self.next_offset.rsplit("_", 1)[1])


def join(meta: ChannelMeta, after: int, bodies: list[tuple[int, bytes]], max_bytes: int) -> Batch:
    """Join ``(seq, body)`` pairs read after ``after`` into a batch of at most ``max_bytes``
    (always at least one message)."""
    parts: list[bytes] = []
    size, last = 0, after
    separator = 1 if is_json(meta.content_type) else 0
    for seq, body in bodies:
        if parts and size + len(body) > max_bytes:
            break
        parts.append(body)
        size += len(body) + separator
        last = seq
    if not parts and bodies:
        last = bodies[-1][0]  # only expired gaps: move past them
    joiner = b"," if separator else b""
    return Batch(
        meta=meta,
        body=joiner.join(parts),
        next_offset=meta.with_head(last).head_offset,
        up_to_date=last >= meta.head,
        count=len(parts),
    )


def render(batch: Batch) -> bytes:
    """A catch-up response body: a JSON array for JSON streams, the bytes otherwise."""
    if is_json(batch.meta.content_type):
        return b"[" + batch.body + b"]" if batch.count else b"[]"
    return batch.body


# -- SSE ------------------------------------------------------------------------------------


def data_event(batch: Batch) -> str:
    if not is_text(batch.meta.content_type):
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


def control_event(batch: Batch, cursor: str) -> str:
    control: dict[str, Any] = {"streamNextOffset": batch.next_offset}
    if batch.up_to_date and batch.meta.closed:
        control["streamClosed"] = True
    else:
        control["streamCursor"] = cursor
        if batch.up_to_date:
            control["upToDate"] = True
    return "event: control\ndata:" + json.dumps(control, separators=(",", ":")) + "\n\n"


def sse_headers(meta: ChannelMeta) -> dict[str, str]:
    # As the protocol's SSE responses: never served from a cache without revalidation.
    headers = {"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"}
    if not is_text(meta.content_type):
        headers[STREAM_SSE_DATA_ENCODING] = "base64"
    return headers


# -- cursors, ETags, lifetimes, flags -------------------------------------------------------


def cursor(now_ms: int, client_cursor: str | None, rng: random.Random) -> str:
    """Protocol 8.1: the current interval, or past the client's cursor (never backwards)."""
    current = int((now_ms / 1000 - CURSOR_EPOCH_S) // CURSOR_INTERVAL_S)
    if client_cursor is not None and client_cursor.isdigit() and int(client_cursor) >= current:
        jitter_s = rng.randint(1, 3600)
        return str(int(client_cursor) + max(1, jitter_s // CURSOR_INTERVAL_S))
    return str(current)


def etag(epoch: str, start_offset: str, next_offset: str, closed: bool) -> str:
    return f'"{epoch}:{start_offset}:{next_offset}{":closed" if closed else ""}"'


def parse_flag(value: str | None, header: str) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise InvalidRequestError(f"{header} must be 'true' or 'false'.")


def parse_lifetime(
    ttl: str | None, expires: str | None, now_ms: int
) -> tuple[int | None, int | None]:
    """(TTL seconds, expiry in epoch seconds) from ``Stream-TTL`` / ``Stream-Expires-At``."""
    if ttl is not None and expires is not None:
        raise InvalidRequestError("Send Stream-TTL or Stream-Expires-At, not both.")
    if ttl is not None:
        if not _TTL.fullmatch(ttl):
            raise InvalidRequestError(
                "Stream-TTL must be a non-negative integer of seconds without sign, leading "
                "zeros, decimals or exponent (e.g. 3600)."
            )
        seconds = int(ttl)
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


def rfc3339(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta_headers(meta: ChannelMeta) -> dict[str, str]:
    """Content type and lifetime: on every read and HEAD."""
    headers = {"Content-Type": meta.content_type}
    if meta.ttl_s is not None:
        headers[STREAM_TTL] = str(meta.ttl_s)
    if meta.expires_at is not None:
        headers[STREAM_EXPIRES_AT] = rfc3339(meta.expires_at)
    return headers
