"""Value types shared by the async and sync clients."""

from __future__ import annotations

import base64
import binascii
import builtins
from dataclasses import dataclass, field
from typing import Any

#: Start from the first retained message.
BEGINNING = "-1"
#: Start after the last stored message: only what is published from now on.
NOW = "now"


#: ``Message.encoding`` of a Durable Streams byte stream's entry: ``data`` is base64 text.
BASE64 = "base64"


@dataclass(frozen=True)
class Message:
    """One message as delivered: ``offset`` is where a reader that processed it resumes.

    ``data`` is the JSON value as published. An entry of a Durable Streams byte stream (any
    content type but ``application/json``) has ``encoding == "base64"`` and ``data`` the
    base64 text of its bytes; :attr:`bytes` decodes it.
    """

    channel: str
    seq: int
    offset: str
    epoch: str
    data: Any
    id: str | None = None
    ts: int | None = None
    publisher: str | None = None
    encoding: str | None = None

    @property
    def bytes(self) -> builtins.bytes | None:
        """The entry's bytes when ``encoding`` is ``"base64"`` (a byte stream), else None
        (JSON messages: use :attr:`data`)."""
        if self.encoding != BASE64 or not isinstance(self.data, str):
            return None
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            return None

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Message:
        encoding = obj.get("encoding")
        return cls(
            channel=str(obj["channel"]),
            seq=int(obj["seq"]),
            offset=str(obj["offset"]),
            epoch=str(obj["epoch"]),
            data=obj.get("data"),
            id=obj.get("id"),
            ts=obj.get("ts"),
            publisher=obj.get("publisher"),
            encoding=encoding if isinstance(encoding, str) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "channel": self.channel,
            "seq": self.seq,
            "offset": self.offset,
            "epoch": self.epoch,
            "id": self.id,
            "data": self.data,
            "ts": self.ts,
            "publisher": self.publisher,
        }
        if self.encoding is not None:
            out["encoding"] = self.encoding
        return out


@dataclass(frozen=True)
class Ack:
    """The server's receipt for a publish; ``duplicate`` means the id was already stored."""

    channel: str
    seq: int
    offset: str
    duplicate: bool = False

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Ack:
        return cls(
            channel=str(obj["channel"]),
            seq=int(obj["seq"]),
            offset=str(obj["offset"]),
            duplicate=bool(obj.get("duplicate", False)),
        )


@dataclass(frozen=True)
class HistoryPage:
    """One page of ``GET /v1/channels/{ch}/messages``: pass ``next`` as ``from_`` to go on."""

    messages: list[Message]
    next: str
    up_to_date: bool


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    epoch: str
    head: str
    head_seq: int
    retention: int
    created: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ChannelInfo:
        return cls(
            name=str(obj["name"]),
            epoch=str(obj["epoch"]),
            head=str(obj["head"]),
            head_seq=int(obj.get("head_seq", 0)),
            retention=int(obj["retention"]),
            created=int(obj["created"]),
            raw=dict(obj),
        )


def is_offset(value: str) -> bool:
    """Whether ``value`` has the form of a concrete offset (``<epoch>_<seq>``)."""
    epoch, sep, seq = value.partition("_")
    return bool(sep) and bool(epoch) and seq.isdigit() and "_" not in epoch


def seq_of(offset: str) -> tuple[str, int]:
    """(epoch, seq) of a concrete offset. Offsets are opaque to applications, not to the SDK."""
    epoch, sep, seq = offset.partition("_")
    if not sep or not seq.isdigit():
        raise ValueError(f"{offset!r} is not a concrete offset")
    return epoch, int(seq)
