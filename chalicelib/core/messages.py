"""Messages as stored and as delivered, and the size rules they obey."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidFrameError, TooLargeError
from .offsets import encode

MAX_ID_LENGTH = 128
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class NewMessage:
    """A message accepted for publishing, before it has a seq.

    ``body`` is the exact bytes to store: the JSON encoding of ``data`` on JSON channels, raw
    bytes on Durable Streams byte streams.
    """

    body: bytes
    id: str | None = None
    publisher: str | None = None
    # A publish's request token (no id): lets a retry after a lost answer find it.
    token: str | None = None
    raw: bool = False  # bytes of a byte stream, not JSON


@dataclass(frozen=True)
class StoredMessage:
    channel: str
    epoch: str
    seq: int
    body: bytes
    ts: int  # acceptance time, epoch milliseconds
    expires_at: int  # epoch seconds (the DynamoDB TTL attribute)
    id: str | None = None
    publisher: str | None = None
    token: str | None = None  # stored, never delivered
    raw: bool = False  # an entry of a byte stream: delivered base64-encoded

    @property
    def offset(self) -> str:
        return encode(self.epoch, self.seq)

    def data(self) -> Any:
        """The JSON value; a byte stream's entry as base64 text (``encoding``)."""
        if self.raw:
            return base64.b64encode(self.body).decode("ascii")
        try:
            return json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "channel": self.channel,
            "seq": self.seq,
            "offset": self.offset,
            "epoch": self.epoch,
            "id": self.id,
            "data": self.data(),
            "ts": self.ts,
            "publisher": self.publisher,
        }
        if self.raw:
            out["encoding"] = "base64"
        return out


@dataclass(frozen=True)
class PublishResult:
    """The outcome of one publish: its place in the log, and whether it was already there."""

    channel: str
    epoch: str
    seq: int
    duplicate: bool = False

    @property
    def offset(self) -> str:
        return encode(self.epoch, self.seq)


def encode_data(data: Any, max_bytes: int) -> bytes:
    """JSON-encode ``data`` compactly, enforcing the message size limit."""
    try:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidFrameError(
            "'data' must be a JSON value (object, array, string, number, true, false or null).",
            {"reason": str(exc)[:200]},
        ) from None
    encoded = body.encode("utf-8")
    check_size(len(encoded), max_bytes)
    return encoded


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise TooLargeError(
            f"The message is {size} bytes encoded; the limit is {max_bytes}. "
            "Split it into smaller messages or store large payloads elsewhere and send a link.",
            {"size": size, "max_bytes": max_bytes},
        )


def validate_id(value: object, field: str = "id") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidFrameError(
            f"'{field}' must be a non-empty string of at most {MAX_ID_LENGTH} characters.",
            {"field": field},
        )
    return value
