"""Exactly-once, in-order delivery for one subscription: pure state, no I/O.

The connection layer feeds it what arrives (``subscribed`` frames, ``message`` frames, pages
of HTTP history) and asks it what to do: which message the application gets next, whether a
gap must be filled from history, and where to resubscribe after a reconnect. Duplicates
(replay/live overlap, fan-out retries, a resubscribe that replays what was buffered) are
dropped by seq; a seq that jumps past the next expected one is held back until the missing
range has been fetched, so the application never sees a hole or a reordering.

Positions follow the contract: the offset of seq N is where a reader that processed N
resumes. ``position`` is the offset of the last message handed to the application (or the
resolved start before the first one), so persisting it and subscribing from it later
continues exactly after that message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import EpochMismatchError
from ._types import NOW, Message, seq_of


@dataclass(frozen=True)
class Gap:
    """Messages after ``from_offset`` up to and including seq ``until_seq`` are missing."""

    from_offset: str
    after_seq: int
    until_seq: int


@dataclass
class RecoveryStats:
    delivered: int = 0
    duplicates: int = 0
    gaps: int = 0
    resubscribes: int = 0


class Recovery:
    """Tracks one subscription's position, buffers out-of-order arrivals, drops duplicates."""

    def __init__(self, channel: str, start: str = NOW) -> None:
        self.channel = channel
        self._start = start
        self.epoch: str | None = None
        self._last_seq: int | None = None
        self._head_seq = 0
        self._pending: dict[int, Message] = {}
        self._confirmed = False
        self.stats = RecoveryStats()
        if start not in ("-1", NOW):
            # A stored offset: the position is known before the server confirms it.
            self.epoch, self._last_seq = seq_of(start)

    # -- what the application and the connection layer read -------------------------------

    @property
    def position(self) -> str | None:
        """Offset of the last message handed over; ``None`` until the start is resolved."""
        if self.epoch is None or self._last_seq is None:
            return None
        return f"{self.epoch}_{self._last_seq:016d}"

    @property
    def last_seq(self) -> int | None:
        return self._last_seq

    def resume_from(self) -> str:
        """What to put in ``subscribe.from`` now (first subscribe or after a reconnect)."""
        return self.position or self._start

    @property
    def caught_up(self) -> bool:
        """True once everything stored when the subscription (re)started has been handed over."""
        return self._last_seq is not None and self._last_seq >= self._head_seq and not self._pending

    # -- events ---------------------------------------------------------------------------

    def subscribed(self, epoch: str, from_offset: str, head: str) -> None:
        """A ``subscribed`` frame. Messages buffered from an older connection are dropped:
        the server replays everything after our position anyway."""
        if self.epoch is not None and epoch != self.epoch:
            raise EpochMismatchError(
                f"Channel {self.channel!r} was deleted and created again (epoch {epoch}); "
                f"position {self.position} belongs to the old log. Subscribe from '-1' to "
                "follow the new one.",
                {"epoch": epoch},
            )
        if self._last_seq is None:
            self.epoch, self._last_seq = epoch, seq_of(from_offset)[1]
        if self._confirmed:
            self.stats.resubscribes += 1
        self._confirmed = True
        self._head_seq = seq_of(head)[1] if head not in ("-1", NOW) else 0
        self._pending.clear()

    def receive(self, message: Message) -> None:
        """A message from the socket or from history: buffer it unless already seen."""
        if self.epoch is not None and message.epoch != self.epoch:
            raise EpochMismatchError(
                f"Channel {self.channel!r} delivered a message of epoch {message.epoch} while "
                f"following epoch {self.epoch}: the channel was deleted and created again. "
                "Subscribe from '-1' to follow the new log.",
                {"epoch": message.epoch},
            )
        if self._last_seq is None:
            # Before `subscribed` (cannot happen on a well-behaved server): adopt the first.
            self.epoch, self._last_seq = message.epoch, message.seq - 1
        if message.seq <= self._last_seq or message.seq in self._pending:
            self.stats.duplicates += 1
            return
        self._pending[message.seq] = message
        self._head_seq = max(self._head_seq, message.seq)

    def next_ready(self) -> Message | None:
        """The next message in order, or ``None``; taking it advances :attr:`position`."""
        if self._last_seq is None:
            return None
        message = self._pending.pop(self._last_seq + 1, None)
        if message is not None:
            self._last_seq = message.seq
            self.stats.delivered += 1
        return message

    def gap(self) -> Gap | None:
        """The missing range, when messages are buffered beyond a hole."""
        if not self._pending or self._last_seq is None or self._last_seq + 1 in self._pending:
            return None
        position = self.position
        assert position is not None
        return Gap(position, self._last_seq, min(self._pending) - 1)

    def note_gap_filled(self) -> None:
        self.stats.gaps += 1
