"""WebSocket frames: parsing what clients send, building what the server answers.

Parsing never raises anything but :class:`SwitchboardError` subclasses, so every bad frame
becomes an error frame and the connection stays usable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from .errors import InvalidFrameError, SwitchboardError, TooLargeError
from .messages import PublishResult, StoredMessage, validate_id
from .names import validate_channel
from .offsets import StartRequest, parse_start

ACTIONS = ("subscribe", "unsubscribe", "publish", "ping", "presence")
PRESENCE_OPS = ("enter", "update", "heartbeat", "leave")
MAX_REF_LENGTH = 128


@dataclass(frozen=True)
class Subscribe:
    ref: str | None
    channel: str
    start: StartRequest
    # Several messages per frame ({"type": "messages", ...}): fewer, fuller frames for a
    # backlog or a busy channel. Off unless asked for, so v0 clients see one per frame.
    batch: bool = False
    # Also follow the channel's presence: a `members` snapshot, then its presence log.
    presence: bool = False


@dataclass(frozen=True)
class Unsubscribe:
    ref: str | None
    channel: str


@dataclass(frozen=True)
class Publish:
    ref: str | None
    channel: str
    data: Any
    id: str | None
    # Without an id: a token chosen by the client for this publish, and whether this frame
    # is a retry of it (then the server looks for the token before storing: an answer lost
    # in transit does not store the message twice).
    token: str | None = None
    retry: bool = False


@dataclass(frozen=True)
class Ping:
    ref: str | None
    # Channels whose head offsets the pong should carry: a client that has heard nothing for
    # a while learns whether it missed the last message of a channel it follows.
    channels: tuple[str, ...] = ()


MAX_PING_CHANNELS = 20


@dataclass(frozen=True)
class Presence:
    """Enter, update, heartbeat or leave presence on a channel, as this connection."""

    ref: str | None
    channel: str
    op: str
    data: Any


ClientFrame = Subscribe | Unsubscribe | Publish | Ping | Presence


def ref_of(body: str | bytes | None) -> str | None:
    """Best-effort ``ref`` of a frame that failed to parse, so the error can still echo it."""
    try:
        obj = json.loads(body or "")
    except (ValueError, RecursionError):
        return None
    ref = obj.get("ref") if isinstance(obj, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH else None


def parse_client_frame(body: str | bytes | None, max_bytes: int) -> ClientFrame:
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if len(raw) > max_bytes:
        raise TooLargeError(
            f"The frame is {len(raw)} bytes; frames are limited to {max_bytes}.",
            {"size": len(raw), "max_bytes": max_bytes},
        )
    try:
        obj = json.loads(raw)
    except ValueError:
        raise InvalidFrameError(
            'Frames must be one JSON object, for example {"action":"ping"}.'
        ) from None
    except RecursionError:
        raise InvalidFrameError(
            "The frame's JSON is nested too deeply; keep data under a few hundred levels."
        ) from None
    if not isinstance(obj, dict):
        raise InvalidFrameError('Frames must be a JSON object, for example {"action":"ping"}.')
    ref = obj.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH):
        raise InvalidFrameError(
            f"'ref' must be a string of at most {MAX_REF_LENGTH} characters.", {"field": "ref"}
        )
    action = obj.get("action")
    if action not in ACTIONS:
        raise InvalidFrameError(
            f"Unknown action {action!r}: use one of {', '.join(ACTIONS)}.",
            {"field": "action", "allowed": list(ACTIONS)},
        )
    if action == "ping":
        listed = obj.get("channels", [])
        if not isinstance(listed, list) or len(listed) > MAX_PING_CHANNELS:
            raise InvalidFrameError(
                f"'channels' must be a list of at most {MAX_PING_CHANNELS} channel names.",
                {"field": "channels", "max": MAX_PING_CHANNELS},
            )
        return Ping(ref, tuple(dict.fromkeys(validate_channel(c) for c in listed)))
    channel = validate_channel(obj.get("channel"))
    if action == "subscribe":
        batch, presence = obj.get("batch", False), obj.get("presence", False)
        if not isinstance(batch, bool) or not isinstance(presence, bool):
            field = "batch" if not isinstance(batch, bool) else "presence"
            raise InvalidFrameError(f"'{field}' must be true or false.", {"field": field})
        return Subscribe(ref, channel, parse_start(obj.get("from", "now")), batch, presence)
    if action == "presence":
        op = obj.get("op")
        if op not in PRESENCE_OPS:
            raise InvalidFrameError(
                f"'op' must be one of {', '.join(PRESENCE_OPS)}.",
                {"field": "op", "allowed": list(PRESENCE_OPS)},
            )
        return Presence(ref, channel, op, obj.get("data"))
    if action == "unsubscribe":
        return Unsubscribe(ref, channel)
    if "data" not in obj:
        raise InvalidFrameError(
            "A publish frame needs 'data' (any JSON value).", {"field": "data"}
        )
    retry = obj.get("retry", False)
    if not isinstance(retry, bool):
        raise InvalidFrameError("'retry' must be true or false.", {"field": "retry"})
    return Publish(
        ref, channel, obj["data"], validate_id(obj.get("id")),
        validate_id(obj.get("token"), "token"), retry,
    )


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _with_ref(frame: dict[str, Any], ref: str | None) -> dict[str, Any]:
    if ref is not None:
        frame["ref"] = ref
    return frame


# API Gateway delivers a WebSocket message over 32 KB as several frames; batches stay under.
MAX_BATCH_FRAME_BYTES = 32 * 1024 - 512
# A byte stream's entry travels base64-encoded, in slices whose frames stay under 32 KB.
RAW_SLICE_BYTES = 22 * 1024


def message_frame(message: StoredMessage) -> str:
    return dumps({"type": "message", **message.to_dict()})


def _raw_slices(message: StoredMessage) -> list[str]:
    """A byte stream's entry over ``RAW_SLICE_BYTES`` as ``message`` frames of consecutive
    slices: the same seq and offset, ``"slice": [index, count]``; the client joins them."""
    body = message.body
    count = -(-len(body) // RAW_SLICE_BYTES)
    out = []
    for index in range(count):
        part = replace(message, body=body[index * RAW_SLICE_BYTES : (index + 1) * RAW_SLICE_BYTES])
        out.append(dumps({"type": "message", **part.to_dict(), "slice": [index, count]}))
    return out


def message_frames(messages: list[StoredMessage], batch: bool) -> list[tuple[int, str]]:
    """The frames that carry ``messages`` in order, each with how many messages it completes:
    one each, or (``batch``) as few ``{"type": "messages", "channel": …, "messages": […]}``
    frames as fit under 32 KB (a message too big for that travels alone, as a ``message``
    frame). A byte stream's entry over ``RAW_SLICE_BYTES`` travels as slices (the last one
    completes it). The messages are of one channel."""
    out: list[tuple[int, str]] = []
    if not batch:
        for message in messages:
            if message.raw and len(message.body) > RAW_SLICE_BYTES:
                slices = _raw_slices(message)
                out += [(1 if i == len(slices) - 1 else 0, f) for i, f in enumerate(slices)]
            else:
                out.append((1, message_frame(message)))
        return out
    pending: list[str] = []
    size = 0
    channel = messages[0].channel if messages else ""

    def flush() -> None:
        nonlocal size
        if len(pending) == 1:
            out.append((1, '{"type":"message",' + pending[0][1:]))
        elif pending:
            head = dumps({"type": "messages", "channel": channel})[:-1]
            out.append((len(pending), head + ',"messages":[' + ",".join(pending) + "]}"))
        pending.clear()
        size = 0

    for message in messages:
        if message.raw and len(message.body) > RAW_SLICE_BYTES:
            flush()
            slices = _raw_slices(message)
            out += [(1 if i == len(slices) - 1 else 0, f) for i, f in enumerate(slices)]
            continue
        encoded = dumps(message.to_dict())
        length = len(encoded.encode("utf-8")) + 1
        if pending and size + length > MAX_BATCH_FRAME_BYTES:
            flush()
        pending.append(encoded)
        size += length
    flush()
    return out


def subscribed_frame(
    ref: str | None, channel: str, epoch: str, from_offset: str, head: str
) -> str:
    return dumps(
        _with_ref(
            {"type": "subscribed", "channel": channel, "epoch": epoch, "from": from_offset,
             "head": head},
            ref,
        )
    )


def unsubscribed_frame(ref: str | None, channel: str) -> str:
    return dumps(_with_ref({"type": "unsubscribed", "channel": channel}, ref))


def ack_frame(ref: str | None, result: PublishResult) -> str:
    return dumps(
        _with_ref(
            {"type": "ack", "channel": result.channel, "seq": result.seq,
             "offset": result.offset, "duplicate": result.duplicate},
            ref,
        )
    )


def presence_frame(
    ref: str | None, channel: str, op: str, member: str, heartbeat_s: int | None
) -> str:
    frame: dict[str, Any] = {"type": "presence", "channel": channel, "op": op,
                             "member": member}
    if heartbeat_s is not None:
        frame["heartbeat_s"] = heartbeat_s
    return dumps(_with_ref(frame, ref))


def members_frame(channel: str, members: list[dict[str, Any]], offset: str, seq: int) -> str:
    """The presence snapshot: it reflects the presence log up to ``seq``/``offset``."""
    return dumps({"type": "members", "channel": channel, "members": members,
                  "offset": offset, "seq": seq})


def pong_frame(ref: str | None, heads: dict[str, str] | None = None) -> str:
    frame: dict[str, Any] = {"type": "pong"}
    if heads:
        frame["heads"] = heads
    return dumps(_with_ref(frame, ref))


def error_frame(error: SwitchboardError, ref: str | None, channel: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", **error.to_dict()}
    if channel is not None:
        frame["channel"] = channel
    return dumps(_with_ref(frame, ref))
