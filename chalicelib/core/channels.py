"""A channel's metadata and the pure rules that decide where a reader starts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .errors import EpochMismatchError, InvalidOffsetError, OffsetExpiredError
from .forks import Ancestor, ForkOrigin, alias_seq
from .messages import JSON_CONTENT_TYPE
from .offsets import BEGINNING, Position, StartRequest, encode


@dataclass(frozen=True)
class ChannelMeta:
    name: str
    epoch: str
    # The last message's seq in this epoch (0 when nothing was published). As stored, the
    # log's base (0, or a fork's inherited prefix); the services fill in the tail.
    head: int
    created_ms: int
    retention_s: int
    content_type: str = JSON_CONTENT_TYPE
    # Durable Streams stream lifetime (Stream-TTL / Stream-Expires-At), epoch seconds.
    expires_at: int | None = None
    ttl_s: int | None = None
    # Durable Streams: a closed stream takes no more appends; the last Stream-Seq accepted.
    closed: bool = False
    stream_seq: str | None = None
    # Forks (core/forks.py): where this channel was forked from, and whether it was deleted
    # while forks pinned it (soft-deleted: gone for clients, kept until the last pin is
    # gone). Which forks it has lives in its fork bookkeeping (MessageStore.fork_refs).
    fork: ForkOrigin | None = None
    deleted: bool = False
    # When the log was first written (epoch ms), and the epoch it replaced if its previous
    # log expired entirely (core/logs.py): offsets of that epoch are answered offset_expired.
    written_ms: int | None = None
    previous_epoch: str | None = None

    @property
    def ancestors(self) -> tuple[Ancestor, ...]:
        return self.fork.ancestors if self.fork is not None else ()

    @property
    def head_offset(self) -> str:
        """The offset of the last message: where a reader that has everything resumes."""
        return encode(self.epoch, self.head)

    def with_head(self, head: int) -> ChannelMeta:
        return replace(self, head=head)

    def is_expired(self, now_s: float) -> bool:
        return self.expires_at is not None and now_s >= self.expires_at

    def to_dict(self, message_count: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "epoch": self.epoch,
            "head": self.head_offset if self.head else BEGINNING,
            "head_seq": self.head,
            "retention": self.retention_s,
            "created": self.created_ms,
            "content_type": self.content_type,
        }
        if message_count is not None:
            out["message_count"] = message_count
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        return out


def resolve_start(start: StartRequest, meta: ChannelMeta, earliest_seq: int) -> int:
    """The seq a reader starts *after*, or the contract's error for an unusable position.

    ``earliest_seq`` is the first seq still retained (``head + 1`` when nothing is).
    """
    if start.kind == "now":
        return meta.head
    if start.kind == "beginning":
        return max(0, earliest_seq - 1)
    assert start.position is not None
    pos: Position = start.position
    if pos.epoch != meta.epoch and (alias := alias_seq(meta.ancestors, pos)) is not None:
        pos = Position(meta.epoch, alias)  # an ancestor's offset in the shared prefix
    if pos.epoch == meta.previous_epoch:
        # That log expired entirely and the channel moved to a new epoch (core/logs.py).
        raise OffsetExpiredError(
            f"Messages after {pos.offset} have passed the channel's retention of "
            f"{meta.retention_s} s. Resume from the earliest retained offset in 'detail'.",
            {"earliest": _earliest_offset(meta, earliest_seq), "offset": pos.offset},
        )
    if pos.epoch != meta.epoch:
        raise EpochMismatchError(
            f"Offset {pos.offset} belongs to an earlier life of channel {meta.name!r}, which "
            "was deleted and created again. Read from '-1' to get the new log.",
            {"epoch": meta.epoch, "earliest": _earliest_offset(meta, earliest_seq)},
        )
    if pos.seq > meta.head:
        raise InvalidOffsetError(
            f"Offset {pos.offset} is beyond the end of channel {meta.name!r} "
            f"(head is {meta.head_offset}).",
            {"offset": pos.offset, "head": meta.head_offset},
        )
    if pos.seq + 1 < earliest_seq:
        raise OffsetExpiredError(
            f"Messages after {pos.offset} have passed the channel's retention of "
            f"{meta.retention_s} s. Resume from the earliest retained offset in 'detail'.",
            {"earliest": _earliest_offset(meta, earliest_seq), "offset": pos.offset},
        )
    return pos.seq


def _earliest_offset(meta: ChannelMeta, earliest_seq: int) -> str:
    """The offset a reader passes to start at the first retained message."""
    return encode(meta.epoch, max(0, earliest_seq - 1))
