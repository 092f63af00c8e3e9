"""A channel's log as stored: entries at consecutive seqs, and where the log ends.

Every seq of a log is taken by exactly one entry, written by a conditional put that fails if
the seq is taken: a publisher writes at the tail + 1, so seqs are unique and gapless without a
counter that every writer would contend on. Besides messages, two markers can end a log:

- ``close``: the stream was closed (Durable Streams); nothing may follow it;
- ``end``: the log was deleted (the channel deleted, or its epoch replaced); nothing may
  follow it, so a publisher holding a stale view of the channel fails instead of writing into
  a log nobody reads.

Markers are never delivered: readers skip them, and ``head`` (the last message) is the marker's
seq minus one.

The tail of a log whose every entry expired and was deleted is unknown (DynamoDB's TTL
removes items). The channel records when its log was first written (``written_ms``); a log
found empty once that is older than the retention may have held messages, so the channel
moves to a new epoch rather than reuse their seqs. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .channels import ChannelMeta


class EntryKind(StrEnum):
    MESSAGE = "message"
    CLOSE = "close"
    END = "end"


@dataclass(frozen=True)
class LogEntry:
    """What occupies one seq: a message (with its idempotency id, if any) or a marker."""

    seq: int
    kind: EntryKind = EntryKind.MESSAGE
    id: str | None = None


@dataclass(frozen=True)
class Tail:
    """Where a log ends, as its last entry tells."""

    head: int  # the last message's seq (the channel's base if the log holds none)
    marker: EntryKind | None = None  # CLOSE or END when the log ends with one
    empty: bool = False  # the own log holds no entry
    lost: bool = False  # empty, and possibly because everything expired

    @property
    def next_seq(self) -> int:
        return self.head + 1 if self.marker is None else self.head + 2


def locate_tail(meta: ChannelMeta, last: LogEntry | None, now_ms: int) -> Tail:
    """The tail of ``meta``'s own log given its last entry (None: the log is empty).

    ``meta.head`` as stored is the log's base: 0, or a fork's inherited prefix.
    """
    if last is None:
        lost = meta.written_ms is not None and now_ms >= (
            meta.written_ms + meta.retention_s * 1000
        )
        return Tail(meta.head, empty=True, lost=lost)
    if last.kind is EntryKind.MESSAGE:
        return Tail(max(last.seq, meta.head))
    return Tail(last.seq - 1, marker=last.kind)
