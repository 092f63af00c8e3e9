"""Forks: a channel that starts as a copy of another's prefix, without copying it.

A fork of ``source`` at seq ``f`` reads seqs ``1..f`` from the source's log and writes seqs
``f+1 …`` to its own log, so offsets continue seamlessly. Nothing is copied: the fork's
metadata lists the logs it inherits (its *ancestors*, oldest first), each with the seq up to
which the fork shares that log's history. For a chain ``l0 <- l1 <- l2`` (``l1`` forked from
``l0`` at ``f1``, ``l2`` from ``l1`` at ``f2``)::

    ancestors(l2) = [(l0, min(f1, f2)), (l1, f2)]

and seq ``s`` of ``l2`` lives in the first ancestor whose ``upto >= s``, else in ``l2``'s own
log. Reads therefore never touch the ancestors' metadata, only their logs (keyed by name and
epoch, so a deleted-and-recreated source never leaks into a fork).

Offsets: the fork has its own epoch, and its own offsets are ``<fork epoch>_<seq>``. An offset
of an ancestor is also accepted for the shared prefix (``<ancestor epoch>_<s>`` with
``s <= upto``), so a reader may move from the source to the fork with the offset it holds.

A sub-offset (``Stream-Fork-Sub-Offset``) moves the fork point into data after the fork
offset: ``n`` more messages for JSON streams (each JSON value is a message, so this is a
whole-message fork point), ``n`` more bytes for byte streams, where a partial entry is
copied into the fork's own log as its first message.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import InvalidOffsetError, InvalidRequestError
from .offsets import Position, decode

# The conventional start of every stream (Durable Streams clients send it for "seq 0").
ZERO_OFFSET = "0000000000000000_0000000000000000"
# A fork chain is stored in the fork's metadata item: keep it far below DynamoDB's 400 KB.
MAX_FORK_DEPTH = 64
_SUB_OFFSET = re.compile(r"0|[1-9][0-9]*")
_STREAM_PATH = "/v1/stream/"


@dataclass(frozen=True)
class Ancestor:
    """A log the fork inherits: seqs up to ``upto`` come from ``name``'s life ``epoch``."""

    name: str
    epoch: str
    upto: int


@dataclass(frozen=True)
class ForkOrigin:
    """Where a fork came from (kept for re-create checks and reference release)."""

    source: str  # the direct source
    source_epoch: str
    offset_seq: int  # Stream-Fork-Offset as a seq of the source
    sub_offset: int  # Stream-Fork-Sub-Offset (0: none)
    ancestors: tuple[Ancestor, ...]  # oldest first; the last one is the direct source

    @property
    def base(self) -> int:
        """The fork point: the last inherited seq (the fork's own log starts after it)."""
        return self.ancestors[-1].upto


def fork_member(name: str, epoch: str) -> str:
    """How a source records one of its forks (a fork's life is its name and epoch)."""
    return f"{name} {epoch}"


def parse_member(member: str) -> tuple[str, str]:
    name, _, epoch = member.rpartition(" ")
    return name, epoch


def inherit(
    source: str, source_epoch: str, source_ancestors: tuple[Ancestor, ...], fork_seq: int
) -> tuple[Ancestor, ...]:
    """The ancestors of a fork of ``source`` at ``fork_seq``."""
    chain = tuple(Ancestor(a.name, a.epoch, min(a.upto, fork_seq)) for a in source_ancestors)
    if len(chain) + 1 > MAX_FORK_DEPTH:
        raise InvalidRequestError(
            f"Forks may be nested at most {MAX_FORK_DEPTH} deep; fork an earlier stream of "
            "the chain instead.",
            {"max_depth": MAX_FORK_DEPTH},
        )
    return (*chain, Ancestor(source, source_epoch, fork_seq))


@dataclass(frozen=True)
class Segment:
    """Seqs ``lo < seq <= hi`` of a read live in log ``(name, epoch)``."""

    name: str
    epoch: str
    lo: int
    hi: int


def segments(
    name: str, epoch: str, ancestors: tuple[Ancestor, ...], after: int, end: int
) -> list[Segment]:
    """The logs that hold seqs ``after < seq <= end`` of a channel, in seq order."""
    out: list[Segment] = []
    lo = 0
    for ancestor in ancestors:
        if ancestor.upto > lo:
            start, stop = max(lo, after), min(ancestor.upto, end)
            if stop > start:
                out.append(Segment(ancestor.name, ancestor.epoch, start, stop))
            lo = ancestor.upto
    if end > max(lo, after):
        out.append(Segment(name, epoch, max(lo, after), end))
    return out


def alias_seq(ancestors: tuple[Ancestor, ...], position: Position) -> int | None:
    """The seq an ancestor's offset stands for in the fork, or None if it is not shared."""
    for ancestor in ancestors:
        if ancestor.epoch == position.epoch and position.seq <= ancestor.upto:
            return position.seq
    return None


def parse_source(value: str) -> str:
    """The channel named by ``Stream-Forked-From``: a stream path or URL, or a bare name."""
    path = urlsplit(value.strip()).path if "://" in value else value.strip()
    marker = path.find(_STREAM_PATH)
    name = path[marker + len(_STREAM_PATH) :] if marker >= 0 else path
    # A multi-segment stream path (``a/b``) is the channel ``a:b`` (docs/durable-streams.md).
    return unquote(name).strip("/").replace("/", ":")


def parse_fork_offset(value: str) -> Position:
    """``Stream-Fork-Offset``: an offset of the source, or the zero offset (its start)."""
    if value == ZERO_OFFSET:
        return Position(ZERO_OFFSET.split("_", 1)[0], 0)
    try:
        return decode(value)
    except InvalidOffsetError:
        raise InvalidOffsetError(
            f"Stream-Fork-Offset {value[:80]!r} is not an offset: send an offset of the "
            f"source stream, or {ZERO_OFFSET} for its start.",
            {"offset": value[:80]},
        ) from None


def parse_sub_offset(value: str) -> int:
    if not _SUB_OFFSET.fullmatch(value):
        raise InvalidRequestError(
            "Stream-Fork-Sub-Offset must be a non-negative integer without sign or leading "
            f"zeros (e.g. 3); got {value[:40]!r}."
        )
    return int(value)
