"""``/v1/stream/{channel}``: the Durable Streams protocol over the same channel logs.

JSON streams (``application/json``) keep message boundaries: a POSTed array appends each
element as one message, and a GET returns a JSON array. Every other content type is a byte
stream: each POST body is stored as one entry and a GET returns the entries' bytes
concatenated. Offsets are the same offsets as on the WebSocket.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chalice.app import Request, Response

from ..bootstrap import services
from ..core.channels import ChannelMeta
from ..core.errors import ConflictError, InvalidRequestError
from ..core.messages import JSON_CONTENT_TYPE, NewMessage, check_size
from ..core.offsets import BEGINNING, parse_start
from ..observability import service_metrics
from .http import NO_STORE, handles_errors

OCTET_STREAM = "application/octet-stream"
CACHEABLE = "private, max-age=60, stale-while-revalidate=300"
READ_LIMIT = 1000  # messages per catch-up response


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON_CONTENT_TYPE


@handles_errors
def dispatch(request: Request, channel: str) -> Response:
    method = request.method.upper()
    if method == "PUT":
        return create(request, channel)
    if method == "POST":
        return append(request, channel)
    if method in ("GET", "HEAD"):
        return read(request, channel, head_only=method == "HEAD")
    if method == "DELETE":
        services(service_metrics).channels.delete(channel)
        return Response(body="", status_code=204, headers=dict(NO_STORE))
    raise InvalidRequestError(f"Method {method} is not supported on streams.")


def create(request: Request, channel: str) -> Response:
    headers = request.headers
    content_type = media_type(headers.get("content-type")) or OCTET_STREAM
    ttl_s, expires_at = _lifetime(headers.get("stream-ttl"), headers.get("stream-expires-at"))
    channels = services(service_metrics).channels
    meta, created = channels.create(
        channel, content_type=content_type, expires_at=expires_at, ttl_s=ttl_s
    )
    if not created and (
        meta.content_type != content_type or meta.ttl_s != ttl_s
        or (ttl_s is None and meta.expires_at != expires_at)
    ):
        raise ConflictError(
            f"Stream {channel!r} already exists with another configuration "
            f"(content type {meta.content_type}).",
            {"content_type": meta.content_type},
        )
    if created and request.raw_body:
        bodies = _bodies(meta, request.raw_body, allow_empty_array=True)
        if bodies:
            channels.publish(channel, bodies, implicit_create=False)
            meta = channels.get(channel)
    response_headers = {
        "Content-Type": meta.content_type,
        "Stream-Next-Offset": meta.head_offset,
        **NO_STORE,
    }
    if created:
        response_headers["Location"] = str(
            (request.context or {}).get("path") or f"/v1/stream/{channel}"
        )
    return Response(body="", status_code=201 if created else 200, headers=response_headers)


def append(request: Request, channel: str) -> Response:
    channels = services(service_metrics).channels
    meta = channels.get(channel)
    content_type = media_type(request.headers.get("content-type"))
    if not content_type:
        raise InvalidRequestError("Content-Type is required on appends.")
    if content_type != meta.content_type:
        raise ConflictError(
            f"Stream {channel!r} holds {meta.content_type}; this append is {content_type}.",
            {"content_type": meta.content_type},
        )
    if not request.raw_body:
        raise InvalidRequestError("Empty appends are not allowed; send at least one byte.")
    bodies = _bodies(meta, request.raw_body, allow_empty_array=False)
    results = channels.publish(channel, bodies, implicit_create=False)
    return Response(
        body="",
        status_code=204,
        headers={"Stream-Next-Offset": results[-1].offset, **NO_STORE},
    )


def read(request: Request, channel: str, head_only: bool) -> Response:
    channels = services(service_metrics).channels
    meta = channels.get(channel)
    base = {"Content-Type": meta.content_type}
    if meta.expires_at is not None:
        base["Stream-Expires-At"] = _rfc3339(meta.expires_at)
    if head_only:
        return Response(
            body="", status_code=200,
            headers={**base, "Stream-Next-Offset": meta.head_offset, **NO_STORE},
        )
    params = request.query_params or {}
    raw_offset = params.get("offset", BEGINNING)
    if raw_offset == "":
        raise InvalidRequestError("'offset' must not be empty.")
    start = parse_start(raw_offset, default=BEGINNING)
    result = channels.read(channel, start, READ_LIMIT)
    start_offset = meta.head_offset if start.kind == "now" else (
        raw_offset if start.kind == "position" else BEGINNING
    )
    headers = {
        **base,
        "Stream-Next-Offset": result.next_offset,
        "Cache-Control": "no-store" if result.up_to_date else CACHEABLE,
    }
    if result.up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    if start.kind != "now":
        etag = f'"{meta.epoch}:{start_offset}:{result.next_offset}"'
        headers["ETag"] = etag
        if request.headers.get("if-none-match") == etag:
            return Response(body="", status_code=304, headers=headers)
    if is_json(meta.content_type):
        body: str | bytes = "[" + ",".join(m.body.decode("utf-8") for m in result.messages) + "]"
    else:
        body = b"".join(m.body for m in result.messages)
    return Response(body=body, status_code=200, headers=headers)


def _bodies(meta: ChannelMeta, raw: bytes, allow_empty_array: bool) -> list[NewMessage]:
    channels = services(service_metrics).channels
    if not is_json(meta.content_type):
        check_size(len(raw), channels.settings.max_message_bytes)
        return [NewMessage(raw)]
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("The body is not valid JSON.") from None
    if isinstance(value, list):
        if not value and not allow_empty_array:
            raise InvalidRequestError("An empty JSON array appends nothing; send messages.")
        return [NewMessage(channels.encode(item)) for item in value]
    return [NewMessage(channels.encode(value))]


def _lifetime(ttl: str | None, expires: str | None) -> tuple[int | None, int | None]:
    """(ttl seconds, absolute expiry in epoch seconds) from the create headers."""
    if ttl is not None and expires is not None:
        raise InvalidRequestError("Send Stream-TTL or Stream-Expires-At, not both.")
    now = services(service_metrics).channels.clock.now_ms() // 1000
    if ttl is not None:
        if not ttl.isdigit() or (len(ttl) > 1 and ttl.startswith("0")):
            raise InvalidRequestError("Stream-TTL must be a non-negative integer of seconds.")
        return int(ttl), now + int(ttl)
    if expires is not None:
        try:
            when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError("Stream-Expires-At must be an RFC 3339 timestamp.") from None
        if when.tzinfo is None:
            raise InvalidRequestError("Stream-Expires-At needs a time zone (e.g. 'Z').")
        return None, int(when.timestamp())
    return None, None


def _rfc3339(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

