"""Use case: deliver newly stored messages to live subscribers (the DynamoDB stream consumer).

One Query per channel finds its subscribers; each connection gets its frames in seq order,
and connections are served concurrently. A connection found Gone ends through
:meth:`SessionService.end_connection`, like every other way a connection ends.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..core import frames
from ..core.errors import EpochMismatchError
from ..core.messages import StoredMessage
from ..core.offsets import encode
from ..core.subscriptions import Subscription, SubscriptionState
from ..observability import logger
from ..ports import (
    NO_METRICS,
    Clock,
    ConnectionGoneError,
    Metrics,
    SendFailedError,
    SendThrottledError,
)
from ..settings import Settings
from .sessions import SessionService

# What the Management API accepts in one post (API Gateway's 128 KB WebSocket message).
MAX_POST_BYTES = 128 * 1024


@dataclass
class FanoutReport:
    delivered: int = 0
    gone: set[str] = field(default_factory=set)  # sockets that were closed already
    dropped: set[str] = field(default_factory=set)  # sockets that could not keep up
    failed_records: set[str] = field(default_factory=set)  # out of time: redeliver these


@dataclass
class _Outcome:
    sent: int
    gone: bool = False
    dropped: bool = False
    failed: list[str] = field(default_factory=list)


@dataclass
class _Delivery:
    endpoint: str
    connection_id: str
    # (ids of the stream records a frame carries, the frame), in delivery order
    frames: list[tuple[list[str], str]] = field(default_factory=list)

    def add(self, records: list[tuple[str, StoredMessage]], batch: bool) -> None:
        """One subscription's messages, one per frame or (``batch``) packed."""
        start = 0
        for count, frame in frames.message_frames([m for _, m in records], batch):
            self.frames.append(([r for r, _ in records[start : start + count]], frame))
            start += count


class FanoutService:
    """Deliver newly stored messages to live subscribers (the DynamoDB stream consumer)."""

    def __init__(
        self,
        sessions: SessionService,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.sessions = sessions
        self.subscriptions = sessions.subscriptions
        self.sender = sessions.sender
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics
        self._pool: ThreadPoolExecutor | None = None

    def fan_out(
        self, records: Iterable[tuple[str, StoredMessage]], deadline_ms: int | None = None
    ) -> FanoutReport:
        """``records`` are (stream record id, message) in stream order.

        One Query per channel finds its subscribers; each connection gets its frames in seq
        order (records of one channel are sorted by seq: a batch may interleave the records of
        concurrent writes), and connections are served concurrently. A JOINING subscription
        first gets what it missed between its replay and this batch, read from the log, then
        goes LIVE (core/subscriptions.py).
        """
        by_channel: dict[str, list[tuple[str, StoredMessage]]] = defaultdict(list)
        for record_id, message in records:
            by_channel[message.channel].append((record_id, message))
        deliveries: dict[str, _Delivery] = {}
        stale: list[tuple[Subscription, str]] = []  # (subscription, the channel's new epoch)
        for channel, items in by_channel.items():
            _sort_by_seq(items)
            newest_epoch = items[-1][1].epoch
            for sub in self.subscriptions.subscribers(channel):
                if sub.epoch != newest_epoch:
                    if sub.state is SubscriptionState.LIVE:
                        stale.append((sub, newest_epoch))
                    continue
                wanted = [(r, m) for r, m in items if sub.wants(m.epoch, m.seq)]
                if wanted and sub.state is SubscriptionState.REPLAYING:
                    # Its replay sends these; note them so it does not go live before.
                    if self.subscriptions.note_missed(sub, wanted[-1][1].seq):
                        continue
                    # It went live meanwhile: deliver from where its replay stopped.
                    current = self.subscriptions.get_subscription(channel, sub.connection_id)
                    if current is None or current.state is not SubscriptionState.LIVE:
                        continue
                    wanted = [(r, m) for r, m in items if current.wants(m.epoch, m.seq)]
                if not wanted:
                    continue
                delivery = deliveries.setdefault(
                    sub.connection_id, _Delivery(sub.endpoint, sub.connection_id)
                )
                delivery.add(wanted, sub.batch)
        report = FanoutReport()
        for sub, epoch in stale:
            self._end_stale(sub, epoch, report)
        if deliveries:
            serve = functools.partial(self._deliver, deadline_ms=deadline_ms)
            for delivery, outcome in zip(
                deliveries.values(), self._map(serve, list(deliveries.values())), strict=True,
            ):
                report.delivered += outcome.sent
                if outcome.gone:
                    report.gone.add(delivery.connection_id)
                if outcome.dropped:
                    report.dropped.add(delivery.connection_id)
                    self._drop(delivery)
                report.failed_records.update(outcome.failed)
        for connection_id in report.gone:
            self.sessions.end_connection(connection_id)
        self.metrics.count("MessagesDelivered", report.delivered)
        self.metrics.count("ConnectionsGone", len(report.gone))
        self.metrics.count("ConnectionsDropped", len(report.dropped))
        return report

    def _map(
        self, fn: Callable[[_Delivery], _Outcome], items: list[_Delivery]
    ) -> list[_Outcome]:
        if len(items) == 1:
            return [fn(items[0])]
        if self._pool is None:  # kept across warm invocations
            self._pool = ThreadPoolExecutor(max_workers=self.settings.fanout_concurrency)
        return list(self._pool.map(fn, items))

    def _deliver(self, delivery: _Delivery, deadline_ms: int | None) -> _Outcome:
        """Post one connection's frames in order.

        One connection never fails the batch for the others: a socket that stays throttled or
        failing after bounded retries is dropped (its subscriptions end and the socket is
        closed; its client reconnects and resumes from its offset). Only running out of the
        invocation's time fails records, from the first one not sent: the stream redelivers
        them, and clients drop seqs they have."""
        sent = 0
        for position, (_records, frame) in enumerate(delivery.frames):
            if deadline_ms is not None and self.clock.now_ms() >= deadline_ms:
                return _Outcome(sent, failed=[r for ids, _ in delivery.frames[position:]
                                              for r in ids])
            if len(frame.encode("utf-8")) > MAX_POST_BYTES:
                # API Gateway would refuse it (413) on every retry of the batch: skip it;
                # the subscriber sees the seq gap and reads the message over HTTP.
                logger.error("frame over the post limit skipped",
                             extra={"connection_id": delivery.connection_id})
                self.metrics.count("FramesTooLarge")
                continue
            try:
                self._post(delivery.endpoint, delivery.connection_id, frame)
            except ConnectionGoneError:
                return _Outcome(sent, gone=True)
            except (SendFailedError, SendThrottledError):
                logger.warning(
                    "delivery failed after retries: dropping the connection",
                    extra={"connection_id": delivery.connection_id},
                )
                return _Outcome(sent, dropped=True)
            sent += 1
        return _Outcome(sent)

    def _post(self, endpoint: str, connection_id: str, frame: str) -> None:
        for attempt in range(1, self.settings.send_attempts + 1):
            try:
                self.sender.send(endpoint, connection_id, frame)
                return
            except (SendThrottledError, SendFailedError):
                if attempt == self.settings.send_attempts:
                    raise
                base = self.settings.send_backoff_ms / 1000 * 2 ** (attempt - 1)
                self.clock.sleep(self.rng.uniform(base / 2, base))

    def _drop(self, delivery: _Delivery) -> None:
        """A connection that cannot keep up: forget it, and close its socket so its client
        reconnects and resumes from its offset."""
        self.sessions.end_connection(delivery.connection_id)
        # Gone already, or the close happens at API Gateway's idle timeout instead.
        with contextlib.suppress(ConnectionGoneError, SendFailedError, SendThrottledError):
            self.sender.close(delivery.endpoint, delivery.connection_id)

    def _end_stale(self, sub: Subscription, epoch: str, report: FanoutReport) -> None:
        """A subscriber of a deleted-and-recreated channel is told so, once, and dropped."""
        frame = frames.error_frame(
            EpochMismatchError(
                f"Channel {sub.channel!r} was deleted and created again; subscribe from '-1' "
                "to follow the new log.",
                {"epoch": epoch, "earliest": encode(epoch, 0)},
            ),
            None,
            sub.channel,
        )
        self.subscriptions.unsubscribe(sub.channel, sub.connection_id, sub.since_ms)
        try:
            self.sender.send(sub.endpoint, sub.connection_id, frame)
        except ConnectionGoneError:
            report.gone.add(sub.connection_id)
        except (SendThrottledError, SendFailedError):
            logger.warning("could not tell a stale subscriber", extra={"channel": sub.channel})


def _sort_by_seq(items: list[tuple[str, StoredMessage]]) -> None:
    """Seq order within each epoch (a batch may interleave concurrent writes' records);
    epochs keep the order in which the stream first shows them."""
    first_seen: dict[str, int] = {}
    for position, (_record, message) in enumerate(items):
        first_seen.setdefault(message.epoch, position)
    items.sort(key=lambda item: (first_seen[item[1].epoch], item[1].seq))
