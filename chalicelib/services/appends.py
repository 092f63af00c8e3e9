"""Use case: append messages to a channel's log — the one path every transport takes.

WebSocket publishes, ``POST /v1/channels/{c}/messages`` and Durable Streams appends all come
here, so idempotency ids, the closed-stream rule, transaction limits and retries are written
once (the transaction limits and per-request checks are core/batches.py).

How a seq is assigned (core/logs.py): the appender writes at the log's tail + 1 with a put
that fails if the seq is taken, learns the new tail from the failure, and tries again. Nothing
counts seqs in a shared item, so publishers do not contend with each other beyond the seq
they race for, and never with subscribers. What it costs, per message:

- no id:      one conditional PutItem (1 write unit);
- with an id: the id's claim, then the message (2 write units), so a retry — even one that
  raced its original — answers the original seq;
- batches and Durable Streams guards (producer, ``Stream-Seq``, close): one transaction of
  the messages, their claims and the state they commit with (2 write units per item).

The channel's metadata and tail are cached per process (``append_cache_s``, log_cache.py): a
publisher that writes a channel again pays no read, and appends to one channel from one
process take turns. Retries are bounded by the caller's deadline (the Lambda's remaining
time), not by a count; a channel busier than that answers ``rate_limited`` with a retry hint.

Durable Streams rules on top (producer state, ``Stream-Seq``, closing, content type) are
validated against freshly read state and committed in the same transaction as the messages,
conditioned on that state, so a lost race re-reads and validates again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.batches import check_request, next_chunk
from ..core.channels import ChannelMeta
from ..core.errors import ConflictError, ForbiddenError, RateLimitedError
from ..core.logs import EntryKind, LogEntry, Tail
from ..core.messages import NewMessage, PublishResult
from ..core.names import validate_channel
from ..core.offsets import new_epoch
from ..core.presence import is_presence_log
from ..core.producers import (
    ProducerRequest,
    ProducerState,
    Verdict,
    check_producer,
    check_stream_seq,
)
from ..ports import (
    NO_METRICS,
    AppendConflictError,
    AppendGuard,
    Clock,
    IdsClaimedError,
    MessageStore,
    Metrics,
    SeqTakenError,
)
from ..settings import Settings
from .channels import ChannelService
from .log_cache import KnownLog, LogCache


class StreamClosedError(ConflictError):
    """An append to a closed stream (409; Durable Streams adds ``Stream-Closed: true``)."""

    def __init__(self, meta: ChannelMeta) -> None:
        super().__init__(
            f"Stream {meta.name!r} is closed: it takes no more appends. Read it to the end, "
            "or create a new stream.",
            {"channel": meta.name, "offset": meta.head_offset},
        )
        self.meta = meta


@dataclass(frozen=True)
class AppendRequest:
    channel: str
    messages: Sequence[NewMessage]
    # WebSocket and /v1/channels create a missing channel with its namespace's defaults;
    # Durable Streams answers 404.
    implicit_create: bool = False
    publisher: str | None = None  # who authenticated: stamped on every message
    # Durable Streams only:
    content_type: str | None = None  # must match the stream's (None: not checked)
    producer: ProducerRequest | None = None
    stream_seq: str | None = None
    close: bool = False
    # A client's retry of a publish whose answer it lost: its messages' request tokens are
    # looked for before anything is stored.
    retry: bool = False
    # Written by the service itself (a presence log): clients may not append there.
    system: bool = False

    @property
    def guarded(self) -> bool:
        """Producer, Stream-Seq or close state must commit atomically with the messages."""
        return self.producer is not None or self.stream_seq is not None or self.close

    @property
    def needs_fresh_channel(self) -> bool:
        """``Stream-Seq`` is checked against the channel's item as it is now. Anything else
        may start from what this process knows: a producer's state is read afresh and
        conditioned on, and a closed or deleted log refuses the seq with its marker."""
        return self.stream_seq is not None


@dataclass(frozen=True)
class AppendOutcome:
    meta: ChannelMeta  # the channel after the append (its head is the new tail)
    results: tuple[PublishResult, ...] = ()  # one per message, in order
    duplicate: bool = False  # an idempotent producer's retry: nothing was stored
    producer: ProducerState | None = None  # the producer's state after the append

    @property
    def stored(self) -> int:
        return sum(1 for r in self.results if not r.duplicate)


@dataclass
class _Progress:
    """What an append has done so far across transactions and retries."""

    messages: Sequence[NewMessage]
    deadline_ms: int
    results: list[PublishResult | None] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    stale_claims: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    tokens_checked: bool = False


class Appender:
    def __init__(
        self,
        channels: ChannelService,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.channels = channels
        self.store: MessageStore = channels.store
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.cache = LogCache()

    def append(self, request: AppendRequest, deadline_ms: int | None = None) -> AppendOutcome:
        """Append ``request.messages`` in order; an ``id`` already published answers its
        original seq (``duplicate``). ``deadline_ms`` (epoch ms) bounds the retries: the
        Lambda's remaining time, by default ``append_budget_s`` from now."""
        validate_channel(request.channel)
        if is_presence_log(request.channel) and not request.system:
            raise ForbiddenError(
                f"{request.channel!r} is a presence log: it records presence changes "
                "(enter, update, leave presence instead); it takes no publishes.",
                {"channel": request.channel},
            )
        check_request(request.messages, request.guarded, self.settings.max_batch,
                      self.settings.max_message_bytes)
        now = self.clock.now_ms()
        budget = now + int(self.settings.append_budget_s * 1000)
        deadline = min(deadline_ms, budget) if deadline_ms is not None else budget
        messages = request.messages
        if request.publisher is not None:
            messages = [replace(m, publisher=request.publisher) for m in messages]
        progress = _Progress(
            messages, deadline, [None] * len(messages), list(range(len(messages)))
        )
        gate = self.cache.gate(request.channel)
        if not gate.acquire(timeout=max(0.0, (deadline - now) / 1000)):
            raise self._busy(request)
        try:
            return self._append(request, progress)
        finally:
            gate.release()

    def view(self, name: str) -> ChannelMeta:
        """The channel as this process knows it (its metadata and tail, read if not known):
        enough to decide how to split a body, without a read per append."""
        validate_channel(name)
        return self._log(AppendRequest(name, ()), fresh=False).meta

    # -- the loop --------------------------------------------------------------------------

    def _append(self, request: AppendRequest, progress: _Progress) -> AppendOutcome:
        # Guarded appends validate against state read now; others may start from the cache.
        log: KnownLog | None = self._log(request, fresh=request.needs_fresh_channel)
        while True:
            if log is None:
                log = self._log(request, fresh=True)
            if log.tail.lost:
                self._renew(log)
                log = None
                continue
            if log.tail.marker is EntryKind.END:
                self._retry(request, progress)  # deleted meanwhile: read it again
                log = None
                continue
            meta = log.meta
            state = None
            if request.producer is not None:
                state = self.store.get_producer(meta, request.producer.producer_id)
                if check_producer(state, request.producer) is Verdict.DUPLICATE:
                    return AppendOutcome(meta, duplicate=True, producer=state)
            if meta.closed or log.tail.marker is EntryKind.CLOSE:
                closed = replace(meta, closed=True)
                if request.close and not request.messages:
                    return AppendOutcome(closed, producer=state)  # closing twice: a no-op
                raise StreamClosedError(closed)
            self._check_stream(request, meta)
            try:
                if log.tail.empty and meta.written_ms is None:
                    # Before the log's first entry, so an expired log is recognised later.
                    now = self.clock.now_ms()
                    self.store.mark_written(meta, now)
                    log = replace(log, meta=replace(meta, written_ms=now))
                done = self._write(request, progress, log, state)
            except SeqTakenError:
                # The log grew (or ended) meanwhile: where does it end now?
                self._retry(request, progress)
                tail = self.channels.tail(log.meta)
                log = self.cache.remember(
                    KnownLog(log.meta.with_head(tail.head), tail, self.clock.now_ms())
                )
                continue
            except AppendConflictError:
                self._retry(request, progress, backoff=True)
                log = None
                continue
            if done is not None:
                return done
            log = None if request.needs_fresh_channel else self.cache.get(request.channel)

    def _write(
        self,
        request: AppendRequest,
        progress: _Progress,
        log: KnownLog,
        state: ProducerState | None,
    ) -> AppendOutcome | None:
        """One attempt at the next chunk; the outcome once everything is stored."""
        messages = progress.messages
        meta = log.meta
        if request.retry and not progress.tokens_checked:
            self._find_retried(meta, progress)
        chunk = next_chunk(messages, progress.pending, request.guarded)
        last = len(chunk) == len(progress.pending)
        now = self.clock.now_ms()
        expires_at = now // 1000 + meta.retention_s
        batch = [messages[i] for i in chunk]
        if not batch and not request.guarded:
            stored_seqs: list[int] = []  # every id was a duplicate
        elif len(chunk) == 1 and not request.guarded and batch[0].id is not None:
            seq, duplicate = self._write_claimed(
                meta, log.tail, batch[0], now, expires_at, progress
            )
            stored_seqs = [] if duplicate else [seq]
            progress.results[chunk[0]] = PublishResult(meta.name, meta.epoch, seq, duplicate)
        else:
            guard = None
            if request.guarded:
                guard = AppendGuard(
                    producer=_new_state(request.producer) if last else None,
                    producer_before=state,
                    stream_seq=request.stream_seq if last else None,
                    stream_seq_before=meta.stream_seq,
                    close=request.close and last,
                )
            try:
                stored = self.store.append(
                    meta, meta.head + 1, batch, ts=now, expires_at=expires_at, guard=guard,
                    stale_claims=progress.stale_claims,
                )
            except IdsClaimedError as claimed:
                self._sort_claims(meta, claimed.claims, progress)
                return None
            stored_seqs = [m.seq for m in stored]
            for index, saved in zip(chunk, stored, strict=True):
                progress.results[index] = PublishResult(meta.name, saved.epoch, saved.seq)
        self.metrics.count("MessagesPublished", len(stored_seqs))
        progress.pending = progress.pending[len(chunk) :]
        head = max([meta.head, *stored_seqs])
        after = replace(meta, head=head, closed=meta.closed or (request.close and last))
        marker = EntryKind.CLOSE if request.close and last else None
        self.cache.remember(KnownLog(after, Tail(head, marker=marker), now))
        if not last:
            return None
        self._extend_expiry(after, now)
        results = tuple(r for r in progress.results if r is not None)
        return AppendOutcome(
            replace(after, stream_seq=request.stream_seq or meta.stream_seq),
            results,
            producer=_new_state(request.producer),
        )

    # -- one message with an id: claim it, then write it -----------------------------------

    def _write_claimed(
        self,
        meta: ChannelMeta,
        tail: Tail,
        message: NewMessage,
        now: int,
        expires_at: int,
        progress: _Progress,
    ) -> tuple[int, bool]:
        """(seq, duplicate) of a single message with an id, in two writes: the id's claim
        names the seq, then the message takes it. A claim whose message lost its seq to
        another is moved to the tail; a claim whose message was never written (its publisher
        crashed, or is still on its way) is completed at its seq, by whichever gets there
        first: either way the id ends up at exactly one seq."""
        assert message.id is not None
        seq = tail.head + 1
        held = self.store.claim(meta, message.id, seq, expires_at, now // 1000)
        while True:
            self._check_deadline(meta.name, progress)
            if held is not None:
                seq, held = self._settle_claim(meta, message.id, held, expires_at, now)
                if held is not None:
                    return held, True
                continue
            try:
                self.store.append(meta, seq, [message], now, expires_at, claim_ids=False)
                return seq, False
            except SeqTakenError as taken:
                entry = taken.entry or self.store.entry(meta.name, meta.epoch, seq)
                if entry is not None and entry.kind is EntryKind.MESSAGE and (
                    entry.id == message.id
                ):
                    return seq, True  # its own retry (or a helper) wrote it: the same message
                if entry is not None and entry.kind is not EntryKind.MESSAGE:
                    raise  # closed or ended: the caller reads the channel again
                progress.retries += 1
                target = self.channels.tail(meta).next_seq
                if not self.store.move_claim(meta, message.id, seq, target):
                    held = self.store.claim(meta, message.id, target, expires_at, now // 1000)
                seq = target

    def _settle_claim(
        self, meta: ChannelMeta, message_id: str, held: int, expires_at: int, now: int
    ) -> tuple[int, int | None]:
        """An existing claim names ``held``: (seq to write at, None) once the claim is ours
        to complete, or (held, held) if the id is stored there already."""
        entry = self.store.entry(meta.name, meta.epoch, held)
        if entry is not None and entry.kind is EntryKind.MESSAGE and entry.id == message_id:
            return held, held
        if entry is not None and entry.kind is not EntryKind.MESSAGE:
            raise SeqTakenError(entry)
        tail = self.channels.tail(meta)
        if entry is None and held == tail.next_seq:
            return held, None  # never written: complete it where it was claimed
        # Its message lost the seq, or expired: the id starts over at the tail.
        if self.store.move_claim(meta, message_id, held, tail.next_seq):
            return tail.next_seq, None
        again = self.store.claim(meta, message_id, tail.next_seq, expires_at, now // 1000)
        if again is None:
            return tail.next_seq, None
        return self._settle_claim(meta, message_id, again, expires_at, now)

    def _find_retried(self, meta: ChannelMeta, progress: _Progress) -> None:
        """A retried publish: the messages (without ids) whose first attempt landed, found
        by their request tokens among the log's newest entries (within ``retry_window_s``,
        at most ``retry_scan``, one pass for the whole batch), are duplicates at their seqs
        and are not stored again."""
        progress.tokens_checked = True
        messages = progress.messages
        tokens = frozenset(
            t for i in progress.pending if (t := messages[i].token) and messages[i].id is None
        )
        if not tokens:
            return
        since = self.clock.now_ms() - int(self.settings.retry_window_s * 1000)
        found = self.store.find_tokens(
            meta.name, meta.epoch, tokens, since, self.settings.retry_scan
        )
        for i in progress.pending:
            token = messages[i].token
            if messages[i].id is None and token in found:
                progress.results[i] = PublishResult(meta.name, meta.epoch, found[token], True)
        progress.pending = [i for i in progress.pending if progress.results[i] is None]

    def _sort_claims(self, meta: ChannelMeta, claims: dict[str, int], progress: _Progress) -> None:
        """Ids of a batch that are claimed already: those stored at their claim's seq are
        duplicates; the other claims are stale, and the next attempt replaces them."""
        messages = progress.messages
        for message_id, seq in claims.items():
            entry: LogEntry | None = self.store.entry(meta.name, meta.epoch, seq)
            if entry is not None and entry.kind is EntryKind.MESSAGE and entry.id == message_id:
                for i in progress.pending:
                    if messages[i].id == message_id:
                        progress.results[i] = PublishResult(meta.name, meta.epoch, seq, True)
                progress.pending = [i for i in progress.pending if messages[i].id != message_id]
            else:
                progress.stale_claims[message_id] = seq

    # -- state: the cache, retries, limits -------------------------------------------------

    def _log(self, request: AppendRequest, fresh: bool) -> KnownLog:
        now = self.clock.now_ms()
        if not fresh:
            known = self.cache.recent(request.channel, now, self.settings.append_cache_s * 1000)
            if known is not None:
                return known
        stored = self.channels.stored(request.channel, create=request.implicit_create)
        tail = self.channels.tail(stored)
        return self.cache.remember(KnownLog(stored.with_head(tail.head), tail, now))

    def _renew(self, log: KnownLog) -> None:
        """Everything the log held expired and may be deleted: its numbering is lost, so the
        channel continues in a new epoch (offsets of the old one answer offset_expired)."""
        now = self.clock.now_ms()
        self.store.renew_epoch(
            log.meta, new_epoch(now, self.rng.getrandbits(16)), log.tail.next_seq
        )
        self.cache.forget(log.meta.name)

    def _retry(self, request: AppendRequest, progress: _Progress, backoff: bool = False) -> None:
        """After a lost race: forget what we knew, back off if it keeps happening."""
        self.cache.forget(request.channel)
        progress.retries += 1
        self._check_deadline(request.channel, progress)
        if backoff or progress.retries > 2:
            # Full jitter: spreads racing publishers apart.
            pause = self.rng.uniform(0, min(0.2, 0.005 * 2 ** min(progress.retries, 8)))
            if self.clock.now_ms() + pause * 1000 < progress.deadline_ms:
                self.clock.sleep(pause)

    def _check_deadline(self, name: str, progress: _Progress) -> None:
        if self.clock.now_ms() >= progress.deadline_ms:
            raise self._busy_channel(name)

    def _busy(self, request: AppendRequest) -> RateLimitedError:
        return self._busy_channel(request.channel)

    def _busy_channel(self, name: str) -> RateLimitedError:
        self.metrics.count("PublishesRateLimited")
        retry_after = int(self.rng.uniform(100, 500))
        return RateLimitedError(
            f"Channel {name!r} is taking publishes faster than it can store them; retry in "
            f"{retry_after} ms (with the same ids it cannot be stored twice).",
            {"channel": name, "retry_after_ms": retry_after},
        )

    def _check_stream(self, request: AppendRequest, meta: ChannelMeta) -> None:
        if request.messages and request.content_type is not None and (
            request.content_type != meta.content_type
        ):
            raise ConflictError(
                f"Stream {meta.name!r} holds {meta.content_type}; this append is "
                f"{request.content_type}. Send the stream's content type.",
                {"content_type": meta.content_type},
            )
        if request.stream_seq is not None:
            check_stream_seq(meta.stream_seq, request.stream_seq)

    def _extend_expiry(self, meta: ChannelMeta, now: int) -> None:
        """An append renews a sliding ``Stream-TTL`` (one conditional write, TTL streams only)."""
        expiry = self.channels.sliding_expiry(meta, now)
        if expiry is not None and expiry != meta.expires_at:
            self.store.extend_expiry(meta, expiry)


def _new_state(producer: ProducerRequest | None) -> ProducerState | None:
    if producer is None:
        return None
    return ProducerState(producer.producer_id, producer.epoch, producer.seq)
