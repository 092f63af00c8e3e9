"""Positions in a channel's log: epochs, seqs and the opaque offsets that encode them.

An offset names the position *after* a message: the offset of seq 43 is where a reader that
has processed seq 43 resumes, and the tail of an empty log is the offset of seq 0. Offsets of
one epoch sort lexicographically in log order (the seq is zero-padded), and an epoch made
later sorts after an earlier one (it starts with the creation time), so Durable Streams
clients may compare them as strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidOffsetError

BEGINNING = "-1"
NOW = "now"
_SEQ_DIGITS = 16
_EPOCH_LEN = 16


def new_epoch(now_ms: int, entropy: int) -> str:
    """An epoch for a log created at ``now_ms``: 12 hex digits of time, 4 of ``entropy``."""
    return f"{now_ms & 0xFFFF_FFFF_FFFF:012x}{entropy & 0xFFFF:04x}"


def encode(epoch: str, seq: int) -> str:
    return f"{epoch}_{seq:0{_SEQ_DIGITS}d}"


@dataclass(frozen=True)
class Position:
    """A parsed offset: ``seq`` is the last seq the holder has seen (0 = none)."""

    epoch: str
    seq: int

    @property
    def offset(self) -> str:
        return encode(self.epoch, self.seq)


def decode(offset: str) -> Position:
    """Parse a concrete offset (not ``-1``/``now``); raise :class:`InvalidOffsetError`."""
    epoch, sep, seq = offset.partition("_")
    if (
        not sep
        or len(epoch) != _EPOCH_LEN
        or any(c not in "0123456789abcdef" for c in epoch)
        or len(seq) != _SEQ_DIGITS
        or not seq.isdigit()
    ):
        raise InvalidOffsetError(
            f"{offset!r} is not an offset: use '-1' (from the beginning), 'now' (from the end) "
            "or an offset this server returned.",
            {"offset": offset[:80]},
        )
    return Position(epoch, int(seq))


@dataclass(frozen=True)
class StartRequest:
    """Where a reader asked to start: the beginning, the end, or after a position."""

    kind: str  # "beginning" | "now" | "position"
    position: Position | None = None


def parse_start(value: object, default: str = NOW) -> StartRequest:
    if value is None:
        value = default
    if not isinstance(value, str):
        raise InvalidOffsetError(
            "'from' must be a string: '-1', 'now' or an offset.", {"from": repr(value)[:80]}
        )
    if value == BEGINNING:
        return StartRequest("beginning")
    if value == NOW:
        return StartRequest("now")
    return StartRequest("position", decode(value))
