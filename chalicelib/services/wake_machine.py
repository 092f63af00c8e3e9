"""The state machine of a Durable Streams subscription (services/wakes.py builds on it).

One wake in flight per subscription: every change to a subscription is a compare-and-set on
its version (``_change`` retries a step against the state as stored), and a stream leaves
``pending`` only in the same atomic step that checks its link has not moved since it was read
(so an append that races an ack is never lost). Side effects (queue sends) run only after the
change they follow is stored; jobs are idempotent (each names the wake and attempt it is for),
so at-least-once queues are fine.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..core import wakes as w
from ..core.errors import SwitchboardError, UnavailableError
from ..observability import logger
from ..ports import NO_METRICS, Clock, Metrics, SigningKeys, WakeQueue, WakeStore, WebhookPoster
from ..settings import Settings
from .appends import Appender
from .channels import ChannelService

CAS_ATTEMPTS = 20
# A wake whose delivery is this late was probably never queued (a crash between storing the
# wake and sending its job): any later event re-queues it.
STUCK_MS = 60_000


@dataclass
class Change:
    """What a step decided: the new state (None: write nothing), the links whose tails it
    relied on, what to do once it is stored, and a value for the caller."""

    sub: w.WakeSubscription | None
    unchanged: dict[str, str | None] = field(default_factory=dict)
    effects: list[Callable[[], None]] = field(default_factory=list)
    result: Any = None


class WakeMachine:
    """Starting, finishing and re-queueing wakes, each change a compare-and-set."""

    def __init__(
        self,
        store: WakeStore,
        channels: ChannelService,
        appender: Appender,
        queue: WakeQueue,
        poster: WebhookPoster,
        keys: SigningKeys,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.channels = channels
        self.appender = appender
        self.queue = queue
        self.poster = poster
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics

    def get(self, sub_id: str) -> w.WakeSubscription:
        sub = self.store.get(w.validate_id(sub_id))
        if sub is None:
            raise w.SubscriptionNotFoundError(f"No subscription {sub_id!r}.", {"id": sub_id})
        return sub

    def _tail(self, channel: str) -> str:
        """The channel's tail offset now (the zero offset for a stream that does not
        exist): where a new link starts, so history is never a wake."""
        try:
            meta = self.channels.get(channel)
        except SwitchboardError:  # missing, expired, or deleted while forks hold it
            return w.ZERO_OFFSET
        return meta.head_offset

    def _change(
        self, sub_id: str, step: Callable[[w.WakeSubscription], Change],
        missing_ok: bool = False,
    ) -> Change | None:
        for _ in range(CAS_ATTEMPTS):
            sub = self.store.get(sub_id)
            if sub is None:
                if missing_ok:
                    return None
                raise w.SubscriptionNotFoundError(f"No subscription {sub_id!r}.",
                                                  {"id": sub_id})
            change = step(sub)
            if change.sub is None:
                for effect in change.effects:
                    effect()
                return change
            if self.store.save(change.sub, sub.version, change.unchanged):
                for effect in change.effects:
                    effect()
                return change
        raise UnavailableError("The subscription is changing too fast; retry.")

    def _start(self, sub: w.WakeSubscription) -> Change:
        """With no wake in flight: drop caught-up streams from ``pending`` and, if work is
        left, start a wake (its delivery is queued once the change is stored)."""
        if sub.wake is not None:
            return Change(sub)
        pending = sorted(sub.pending)
        links = self.store.links(sub.id, sub.incarnation, pending) if pending else {}
        snapshot = [(c, links[c].tail) for c in pending if c in links and links[c].pending]
        caught = [c for c in pending if c not in links or not links[c].pending]
        unchanged: dict[str, str | None] = {
            c: (links[c].tail if c in links else None) for c in caught}
        sub = replace(sub, pending=sub.pending - set(caught))
        if not snapshot:
            return Change(sub, unchanged)
        now = self.clock.now_ms()
        wake = w.Wake(
            wake_id=f"w_{secrets.token_hex(12)}",
            generation=sub.generation + 1,
            snapshot=tuple(snapshot[: w.SNAPSHOT_MAX]),
            token_id=secrets.token_hex(8),
            issued_ms=now,
            next_attempt_ms=now,
        )
        started = replace(sub, generation=wake.generation, wake=wake)
        self.metrics.count("WakesIssued")
        return Change(started, unchanged, [lambda: self._send(started, wake, "deliver", 0, 0)])

    def _finish(self, sub: w.WakeSubscription) -> Change:
        """The wake is over (done, released, lease expired): start the next if work is left."""
        return self._start(replace(sub, wake=None, failing=False))

    def _send(self, sub: w.WakeSubscription, wake: w.Wake, kind: str, attempt: int,
              delay_ms: int) -> None:
        job = w.Job(kind, sub.id, sub.incarnation, wake.wake_id, wake.generation, attempt)
        self.queue.send(job.to_json(), max(0, delay_ms))

    def _requeue_if_stuck(self, sub: w.WakeSubscription) -> None:
        wake = sub.wake
        if wake is None or wake.delivered or wake.holder is not None:
            return
        if self.clock.now_ms() > wake.next_attempt_ms + STUCK_MS:
            logger.warning("re-queueing a wake whose delivery is overdue",
                           extra={"subscription": sub.id, "wake": wake.wake_id})
            self._send(sub, wake, "deliver", wake.attempts, 0)

    def _current(self, sub: w.WakeSubscription, job: w.Job) -> w.Wake | None:
        wake = sub.wake
        if (sub.incarnation != job.incarnation or wake is None
                or wake.wake_id != job.wake_id or wake.generation != job.generation):
            return None
        return wake

