"""Exactly-once, in-order delivery for one subscription: pure state, no I/O.

The connection layer feeds it what arrives (``subscribed`` frames, ``message`` frames, pages
of HTTP history) and asks it what to do: which message the application gets next, whether a
gap must be filled from history, and where to resubscribe after a reconnect. Duplicates
(replay/live overlap, fan-out retries, a resubscribe that replays what was buffered) are
dropped by seq; a seq that jumps past the next expected one is held back until the missing
range has been fetched, so the application never sees a hole or a reordering.

A message lost for good by the fan-out leaves a hole that the next message reveals; a lost
*last* message has no next one, so the connection layer asks the server for the channel's
head when the subscription has been quiet for a while (``ping`` with ``channels``) and
reports it here: a head past what we have is a gap like any other, filled from history.

A replay that paused (``unavailable`` with ``resume``) continues from the offset the server
reached, so what is buffered up to there is kept; a resubscribe after a reconnect starts from
:attr:`position`, so nothing past it needs keeping.

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
    """Messages after ``from_offset`` up to and including seq ``until_seq`` are missing.

    ``reported``: known only from a head the server reported (nothing after it is buffered).
    """

    from_offset: str
    after_seq: int
    until_seq: int
    reported: bool = False


@dataclass
class RecoveryStats:
    delivered: int = 0
    duplicates: int = 0
    gaps: int = 0
    resubscribes: int = 0
    #: Gaps found by a head check (a last message the fan-out lost), filled from history.
    tail_gaps: int = 0


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
        # The last seq the server reported as stored (a pong's head) beyond what we have.
        self._reported: int | None = None
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
        """A ``subscribed`` frame. Buffered messages past ``from_offset`` are dropped: the
        server replays everything after it anyway (after a reconnect that is our position;
        after a paused replay, the offset it reached, so what came before is kept)."""
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
        start = seq_of(from_offset)[1]
        self._pending = {seq: m for seq, m in self._pending.items() if seq <= start}
        self._reported = None

    def head_reported(self, head: str) -> None:
        """The channel's head as the server reported it (a pong's ``heads``). A head past
        the last message we have means messages we will not receive live: :meth:`gap`
        reports them. A head of another epoch means the log was replaced; the history read
        that follows raises the server's answer (``epoch_mismatch`` or ``offset_expired``).
        """
        if not self._confirmed or self._last_seq is None or head in ("-1", NOW):
            return  # nothing stored (or the channel is gone): nothing to fetch
        try:
            epoch, seq = seq_of(head)
        except ValueError:
            return
        if epoch != self.epoch:
            seq = self._last_seq + 1
        have = max([self._last_seq, *self._pending])
        if seq > have:
            self._reported = max(seq, self._reported or 0)

    def drop_reported_head(self) -> None:
        """Forget a reported head that history could not confirm (nothing is missing)."""
        self._reported = None

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
            if self._reported is not None and self._last_seq >= self._reported:
                self._reported = None
        return message

    def gap(self) -> Gap | None:
        """The missing range: messages buffered beyond a hole, or a reported head past the
        last message we have."""
        if self._last_seq is None or self._last_seq + 1 in self._pending:
            return None
        position = self.position
        assert position is not None
        if self._pending:
            return Gap(position, self._last_seq, min(self._pending) - 1)
        if self._reported is not None and self._reported > self._last_seq:
            return Gap(position, self._last_seq, self._reported, reported=True)
        return None

    def note_gap_filled(self, reported: bool = False) -> None:
        if reported:
            self.stats.tail_gaps += 1
        else:
            self.stats.gaps += 1
