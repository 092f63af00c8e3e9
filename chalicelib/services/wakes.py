"""Use case: Durable Streams subscriptions — wake a consumer when its streams get messages.

The protocol's model (fields, codes, globs, tokens, payloads) is in core/wakes.py; this is the
state machine around it, the same on AWS and under ``switchboard dev``:

    append (any transport) -> DynamoDB stream -> on_messages: raise each matching link's tail;
        a stream that becomes pending joins the subscription's ``pending`` set, and an idle
        subscription starts a wake (generation + 1, snapshot of pending tails)
    wake job (queue) -> deliver: POST the signed webhook, or append wake events to the
        wake stream; 2xx ``{"done": true}`` acks the snapshot; a failure is retried after
        1 s, 2 s, 4 s ... 60 s (+-20 %), the schedule persisted on the subscription
    callback / claim / ack / release -> fenced by wake id, generation and token; done (or a
        release, or an expired lease) clears the wake and starts the next one if work is left
    lease job (queue) -> an expired lease clears the wake and wakes again if work is left

One wake in flight per subscription: wake_machine.py holds the compare-and-set state
machine (start, finish, re-queue) these use cases drive.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..core import wakes as w
from ..core.errors import SwitchboardError, UnavailableError
from ..core.messages import NewMessage, StoredMessage
from ..core.offsets import encode
from ..observability import logger
from .appends import AppendRequest
from .wake_machine import CAS_ATTEMPTS, Change, WakeMachine

# A claim reads the tails of at most this many linked streams (appends the stream consumer
# has not processed yet); the consumer brings the others.
CATCH_UP_MAX = 100


class WakeService(WakeMachine):
    """The use cases: administration, the stream consumer, wake jobs, and the endpoints
    webhook consumers and pull-wake workers call with a wake's token."""

    # -- administration --------------------------------------------------------------------

    def put(self, sub_id: str, body: object, base_url: str) -> tuple[dict[str, Any], bool]:
        """Create (``True``) or re-confirm (``False``) a subscription; 409 if it differs."""
        w.validate_id(sub_id)
        config = w.parse_config(body, self.settings.webhook_allow_loopback)
        candidate = w.WakeSubscription(
            id=sub_id, config=config, config_hash=config.config_hash(),
            created_ms=self.clock.now_ms(), base_url=base_url,
        )
        for _ in range(CAS_ATTEMPTS):
            created = self.store.create(candidate)
            sub = self.store.get(sub_id)
            if sub is None:
                continue  # deleted in between: create again
            if not created and sub.config_hash != candidate.config_hash:
                raise w.SubscriptionExistsError(
                    f"Subscription {sub_id!r} exists with another configuration; delete it "
                    "first, or PUT the same configuration.", {"id": sub_id})
            # Explicit links are (re)made on every PUT: idempotent, so a PUT that failed
            # half-way is completed by its retry.
            for channel in config.streams:
                self._link(sub, channel)
            return sub.info(list(self.store.links(sub.id, sub.incarnation).values())), created
        raise UnavailableError("The subscription is changing too fast; retry.")

    def info(self, sub_id: str) -> dict[str, Any]:
        sub = self.get(sub_id)
        self._requeue_if_stuck(sub)
        return sub.info(list(self.store.links(sub.id, sub.incarnation).values()))

    def page(self, after: str | None, limit: int) -> tuple[list[w.WakeSubscription], str | None]:
        """A page of subscriptions in id order, and where the next page starts (or None)."""
        ids = self.store.list_ids(after, limit)
        subs = [s for s in (self.store.get(i) for i in ids) if s is not None]
        return subs, (ids[-1] if len(ids) == limit else None)

    def delete(self, sub_id: str) -> None:
        """Idempotent: deleting a missing subscription succeeds. In-flight callbacks, acks
        and releases of a deleted subscription fail (404) and move nothing."""
        sub = self.store.get(w.validate_id(sub_id))
        if sub is not None:
            self.store.delete(sub)

    def add_streams(self, sub_id: str, channels: tuple[str, ...]) -> None:
        sub = self.get(sub_id)
        for channel in channels:
            self._link(sub, channel)

    def remove_stream(self, sub_id: str, channel: str) -> None:
        self.store.unlink_explicit(self.get(sub_id), channel)

    def _link(self, sub: w.WakeSubscription, channel: str) -> None:
        if sub.config.excludes(channel):
            return
        existing = self.store.links(sub.id, sub.incarnation, [channel]).get(channel)
        self.store.link_explicit(sub, channel, existing.acked if existing else self._tail(channel))

    def jwks(self) -> dict[str, object]:
        return self.keys.jwks()

    # -- the stream consumer ---------------------------------------------------------------

    def on_messages(self, records: Iterable[tuple[str, StoredMessage]]) -> set[str]:
        """Raise the links of every matching subscription; returns the ids of the records
        whose channel failed (the stream re-delivers from the lowest)."""
        by_channel: dict[str, list[tuple[str, StoredMessage]]] = defaultdict(list)
        for record_id, message in records:
            by_channel[message.channel].append((record_id, message))
        failed: set[str] = set()
        for channel, items in by_channel.items():
            items.sort(key=lambda item: (item[1].epoch, item[1].seq))
            try:
                self._on_channel(channel, [m for _, m in items])
            except Exception:
                logger.exception("wake consumer failed", extra={"channel": channel})
                failed.update(r for r, _ in items)
        return failed

    def _on_channel(self, channel: str, messages: list[StoredMessage]) -> None:
        last = messages[-1]
        covering: dict[str, tuple[w.IndexEntry, bool, bool]] = {}
        for entry in self.store.matching(channel):
            explicit = entry.pattern is None
            glob = entry.pattern is not None and entry.pattern.matches(channel)
            if not explicit and not glob:
                continue
            _, was_explicit, was_glob = covering.get(entry.id, (entry, False, False))
            covering[entry.id] = (entry, was_explicit or explicit, was_glob or glob)
        for entry, explicit, glob in covering.values():
            if entry.wake_stream == channel:
                continue
            new_acked = None
            if glob and not explicit:
                # A stream a glob finds is linked from the first message after the
                # subscription was created: what came before is history, never a wake.
                fresh = next((m for m in messages if m.ts >= entry.created_ms), None)
                if fresh is not None:
                    new_acked = encode(fresh.epoch, fresh.seq - 1)
            link = self.store.advance(entry.id, entry.incarnation, channel, last.offset,
                                      new_acked)
            if link is not None and link.pending:
                self._notify(entry.id, entry.created_ms, channel)

    def _notify(self, sub_id: str, created_ms: int, channel: str) -> None:
        def step(sub: w.WakeSubscription) -> Change:
            if sub.created_ms != created_ms:
                return Change(None)
            if channel in sub.pending and sub.wake is not None:
                self._requeue_if_stuck(sub)
                return Change(None)
            return self._start(replace(sub, pending=sub.pending | {channel}))

        self._change(sub_id, step, missing_ok=True)

    # -- jobs ------------------------------------------------------------------------------

    def run_job(self, text: str) -> None:
        job = w.Job.from_json(text)
        if job.kind == "deliver":
            self._deliver(job)
        elif job.kind == "lease":
            self._lease(job)
        else:
            logger.error("unknown wake job", extra={"job": text[:200]})

    def _deliver(self, job: w.Job) -> None:
        sub = self.store.get(job.subscription)
        wake = self._current(sub, job) if sub is not None else None
        if sub is None or wake is None or wake.delivered or wake.attempts != job.attempt:
            return  # stale or duplicate: the wake moved on
        if sub.config.type == w.PULL_WAKE and wake.holder is not None:
            return  # claimed before its event was written: nothing to announce
        if sub.config.type == w.WEBHOOK:
            ok, done, error = self._post(sub, wake)
        else:
            ok, done, error = self._announce(sub, wake)
        if ok and done:
            self._complete(sub.id, job, [w.Ack(c, t) for c, t in wake.snapshot])
            return
        now = self.clock.now_ms()

        def step(current: w.WakeSubscription) -> Change:
            live = self._current(current, job)
            if live is None or live.delivered or live.attempts != job.attempt:
                return Change(None)
            if ok:
                lease = now + current.config.lease_ttl_ms if current.config.type == w.WEBHOOK \
                    else None
                updated = replace(live, delivered=True, lease_until_ms=lease)
                changed = replace(current, wake=updated, failing=False)
                effects = []
                if lease is not None:
                    effects.append(lambda: self._send(changed, updated, "lease", 0,
                                                      lease - now))
                return Change(changed, effects=effects)
            delay = w.retry_delay_ms(live.attempts + 1, self.rng)
            updated = replace(live, attempts=live.attempts + 1, next_attempt_ms=now + delay)
            changed = replace(current, wake=updated, failing=True)
            return Change(changed, effects=[
                lambda: self._send(changed, updated, "deliver", updated.attempts, delay)])

        if not ok:
            self.metrics.count("WakeDeliveryFailures")
            logger.warning("wake delivery failed; retrying", extra={
                "subscription": sub.id, "attempt": job.attempt + 1, "error": error})
        self._change(sub.id, step, missing_ok=True)

    def _post(self, sub: w.WakeSubscription, wake: w.Wake) -> tuple[bool, bool, str | None]:
        assert sub.config.webhook_url is not None
        links = self.store.links(sub.id, sub.incarnation, [c for c, _ in wake.snapshot])
        token = w.issue_token(self.keys.token_keys()[0], w.TokenClaims(
            sub.id, sub.incarnation, wake.generation, wake.token_id,
            wake.issued_ms // 1000 + w.TOKEN_TTL_S))
        body = json.dumps(w.webhook_body(sub, wake, links, token),
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = self.clock.now_ms() // 1000
        kid, signature = self.keys.sign(w.signed_payload(timestamp, body))
        response = self.poster.post(sub.config.webhook_url, body, {
            "Content-Type": "application/json",
            "Webhook-Signature": w.signature_header(timestamp, kid, signature),
        })
        self.metrics.count("WebhookDeliveries")
        if not response.ok:
            return False, False, response.error or f"HTTP {response.status}"
        return True, w.done_answer(response.body), None

    def _announce(self, sub: w.WakeSubscription, wake: w.Wake) -> tuple[bool, bool, str | None]:
        assert sub.config.wake_stream is not None
        events = w.wake_events(sub, wake, self.clock.now_ms())
        messages = [
            NewMessage(json.dumps(e, separators=(",", ":")).encode(),
                       id=f"wake:{wake.wake_id}:{i}")
            for i, e in enumerate(events)
        ]
        try:
            self.appender.append(AppendRequest(sub.config.wake_stream, messages))
        except SwitchboardError as error:  # missing or closed wake stream: retried
            return False, False, f"{error.code}: {error.message}"
        return True, False, None

    def _complete(self, sub_id: str, job: w.Job, acks: list[w.Ack]) -> Change | None:
        """The consumer is done with the wake ``job`` names: apply ``acks``, clear it, and
        start the next wake if work is left (``result``: whether one started)."""
        for ack in acks:
            self.store.ack(sub_id, job.incarnation, ack.channel, ack.offset)

        def step(sub: w.WakeSubscription) -> Change:
            if self._current(sub, job) is None:
                return Change(None)
            change = self._finish(sub)
            change.result = change.sub is not None and change.sub.wake is not None
            return change

        return self._change(sub_id, step, missing_ok=True)

    def _lease(self, job: w.Job) -> None:
        sub = self.store.get(job.subscription)
        wake = self._current(sub, job) if sub is not None else None
        if sub is None or wake is None or wake.lease_until_ms is None:
            return
        now = self.clock.now_ms()
        if now < wake.lease_until_ms:  # extended since: check again when it ends
            self._send(sub, wake, "lease", 0, wake.lease_until_ms - now)
            return

        def step(current: w.WakeSubscription) -> Change:
            live = self._current(current, job)
            if live is None or live.lease_until_ms is None or \
                    self.clock.now_ms() < live.lease_until_ms:
                return Change(None)
            self.metrics.count("WakeLeasesExpired")
            return self._finish(current)

        self._change(sub.id, step, missing_ok=True)

    # -- webhook callbacks and pull-wake workers -------------------------------------------

    def _authorized(self, sub_id: str, authorization: str | None,
                    body: object, with_acks: bool = True,
                    ) -> tuple[w.WakeSubscription, w.TokenClaims, w.AckRequest]:
        request = w.parse_ack_request(body, with_acks)
        claims = w.read_token(self.keys.token_keys(), authorization, sub_id,
                              self.clock.now_ms() // 1000)
        sub = self.get(sub_id)
        self._fence(sub, claims, request)
        return sub, claims, request

    @staticmethod
    def _fence(sub: w.WakeSubscription, claims: w.TokenClaims, request: w.AckRequest) -> None:
        wake = sub.wake
        if (claims.incarnation != sub.incarnation or wake is None
                or claims.generation != wake.generation or claims.token_id != wake.token_id
                or request.generation != wake.generation or request.wake_id != wake.wake_id):
            raise w.FencedError(
                "This wake is over (acked, released, expired or superseded): stop working on "
                "it; a newer wake carries any work left.",
                {"generation": sub.generation}, generation=sub.generation)

    def callback(self, sub_id: str, authorization: str | None, body: object) -> dict[str, Any]:
        """A webhook consumer's ack (``done``: the wake is over) or lease extension."""
        sub, claims, request = self._authorized(sub_id, authorization, body)
        return self._acked(sub, claims, request)

    def ack(self, sub_id: str, authorization: str | None, body: object) -> dict[str, Any]:
        """A pull-wake worker's ack: with ``done`` it ends the claim; without, it is the
        heartbeat that extends the lease."""
        sub, claims, request = self._authorized(sub_id, authorization, body)
        return self._acked(sub, claims, request)

    def _acked(self, sub: w.WakeSubscription, claims: w.TokenClaims,
               request: w.AckRequest) -> dict[str, Any]:
        if request.acks:
            links = self.store.links(sub.id, sub.incarnation, [a.channel for a in request.acks])
            w.check_acks(request.acks, links)
        job = w.Job("ack", sub.id, sub.incarnation, request.wake_id, request.generation)
        if request.done:
            for ack in request.acks:
                self.store.ack(sub.id, sub.incarnation, ack.channel, ack.offset)

            def finish(current: w.WakeSubscription) -> Change:
                self._fence(current, claims, request)
                change = self._finish(current)
                change.result = change.sub is not None and change.sub.wake is not None
                return change

            change = self._change(sub.id, finish)
            return {"ok": True, "next_wake": bool(change and change.result)}
        for ack in request.acks:
            self.store.ack(sub.id, sub.incarnation, ack.channel, ack.offset)

        def extend(current: w.WakeSubscription) -> Change:
            self._fence(current, claims, request)
            live = self._current(current, job)
            assert live is not None
            now = self.clock.now_ms()
            updated = replace(live, delivered=True,
                              lease_until_ms=now + current.config.lease_ttl_ms)
            changed = replace(current, wake=updated, failing=False)
            effects = []
            if live.lease_until_ms is None:  # the first lease of this wake: watch it
                effects.append(lambda: self._send(changed, updated, "lease", 0,
                                                  current.config.lease_ttl_ms))
            return Change(changed, effects=effects)

        self._change(sub.id, extend)
        return {"ok": True, "next_wake": False}

    def release(self, sub_id: str, authorization: str | None, body: object) -> None:
        """A worker gives the wake back unfinished: a new wake follows if work is left."""
        _, claims, request = self._authorized(sub_id, authorization, body, with_acks=False)

        def step(current: w.WakeSubscription) -> Change:
            self._fence(current, claims, request)
            return self._finish(current)

        self._change(sub_id, step)

    def claim(self, sub_id: str, body: object) -> dict[str, Any]:
        """A pull-wake worker takes the pending work: the wake in flight, or a new one from
        the streams' tails as they are now (appends the stream consumer has not seen yet
        included)."""
        if not isinstance(body, dict) or not isinstance(body.get("worker"), str) \
                or not body["worker"] or len(body["worker"]) > 256:
            raise w.InvalidSubscriptionRequestError('The body is {"worker": "<worker id>"}.')
        worker = body["worker"]
        sub = self.get(sub_id)
        if sub.config.type != w.PULL_WAKE:
            raise w.InvalidSubscriptionRequestError("Only pull-wake subscriptions are claimed.")
        if not self._held(sub):
            self._catch_up(sub)
        now = self.clock.now_ms()

        def step(current: w.WakeSubscription) -> Change:
            if self._held(current):
                assert current.wake is not None
                raise w.AlreadyClaimedError(
                    f"Wake {current.wake.generation} is held by {current.wake.holder!r}.",
                    {"generation": current.wake.generation},
                    current_holder=current.wake.holder, generation=current.wake.generation)
            base = current if current.wake is None or current.wake.holder is None \
                else replace(current, wake=None)
            change = self._start(base)
            started = change.sub or base
            if started.wake is None:
                raise w.NoPendingWorkError("No stream of this subscription has unprocessed "
                                           "messages.")
            claimed = replace(started.wake, holder=worker, token_id=secrets.token_hex(8),
                              delivered=True, lease_until_ms=now + started.config.lease_ttl_ms)
            final = replace(started, wake=claimed, failing=False)
            return Change(final, change.unchanged, [lambda: self._send(
                final, claimed, "lease", 0, final.config.lease_ttl_ms)], result=final)

        change = self._change(sub_id, step)
        assert change is not None
        final = change.result
        wake = final.wake
        links = self.store.links(final.id, final.incarnation, [c for c, _ in wake.snapshot])
        token = w.issue_token(self.keys.token_keys()[0], w.TokenClaims(
            final.id, final.incarnation, wake.generation, wake.token_id,
            now // 1000 + w.TOKEN_TTL_S))
        return {
            "wake_id": wake.wake_id,
            "generation": wake.generation,
            "token": token,
            "streams": [links[c].info(t) for c, t in wake.snapshot if c in links],
            "lease_ttl_ms": final.config.lease_ttl_ms,
        }

    def _held(self, sub: w.WakeSubscription) -> bool:
        wake = sub.wake
        return (wake is not None and wake.holder is not None
                and wake.lease_until_ms is not None
                and self.clock.now_ms() < wake.lease_until_ms)

    def _catch_up(self, sub: w.WakeSubscription) -> None:
        """Raise the links to the streams' tails as they are now, and mark what is pending
        (the pending streams first, then others, at most ``CATCH_UP_MAX``)."""
        links = self.store.links(sub.id, sub.incarnation)
        order = sorted(links, key=lambda c: (c not in sub.pending, c))[:CATCH_UP_MAX]
        for channel in order:
            link = links[channel]
            tail = self._tail(channel)
            if tail <= link.tail:
                continue
            raised = self.store.advance(sub.id, sub.incarnation, channel, tail)
            if raised is not None and raised.pending and channel not in sub.pending:
                def step(current: w.WakeSubscription, channel: str = channel) -> Change:
                    if channel in current.pending:
                        return Change(None)
                    return Change(replace(current, pending=current.pending | {channel}))

                self._change(sub.id, step, missing_ok=True)


def scope_channels(config: w.SubscriptionConfig) -> tuple[list[str], str | None]:
    """What a subscription covers, for authorization: its explicit channels and wake stream,
    and the capability prefix of its pattern (``events/*`` -> ``events:``)."""
    channels = list(config.streams)
    if config.wake_stream is not None:
        channels.append(config.wake_stream)
    prefix = None
    if config.pattern is not None:
        literal = []
        for segment in config.pattern.segments:
            if segment in ("*", "**"):
                break
            literal.append(segment)
        if len(literal) == len(config.pattern.segments):
            channels.append(":".join(literal))
        else:
            prefix = ":".join(literal) + ":"
    return channels, prefix
