"""Use case: append messages to a channel's log — the one path every transport takes.

WebSocket publishes, ``POST /v1/channels/{c}/messages`` and Durable Streams appends all come
here, so idempotency ids, the closed-stream rule, transaction limits and conflict retries are
written once. Durable Streams adds optional rules on top (producer state, ``Stream-Seq``,
closing, content type); they are validated against freshly read state and committed in the
same transaction as the messages, conditioned on that state, so a lost race re-reads and
validates again (a producer's retry that raced its original is recognised as a duplicate).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.channels import ChannelMeta
from ..core.errors import ConflictError, TooLargeError, UnavailableError
from ..core.messages import NewMessage, PublishResult, check_size
from ..core.names import validate_channel
from ..core.producers import (
    ProducerRequest,
    ProducerState,
    Verdict,
    check_producer,
    check_stream_seq,
)
from ..ports import NO_METRICS, AppendConflictError, AppendGuard, Clock, MessageStore, Metrics
from ..settings import Settings
from .channels import ChannelService

# A DynamoDB transaction holds at most 100 items; one of them is the channel's head, one the
# producer's state.
TRANSACTION_ITEMS = 100
# ... and at most 4 MB: leave room for keys and attributes.
TRANSACTION_BYTES = 3_500_000


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

    @property
    def guarded(self) -> bool:
        """Producer, Stream-Seq or close state must commit atomically with the messages."""
        return self.producer is not None or self.stream_seq is not None or self.close


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
    results: list[PublishResult | None] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    conflicts: int = 0
    check_ids: bool = False  # duplicates are rare: look ids up only after a conflict


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

    def append(self, request: AppendRequest) -> AppendOutcome:
        """Append ``request.messages`` in order; an ``id`` already published answers its
        original seq (``duplicate``). Seqs come from a conditional write on the channel's
        head, so they are unique and gapless whatever the number of concurrent publishers;
        a lost race re-reads and retries with jittered backoff."""
        validate_channel(request.channel)
        self._check_limits(request)
        messages = request.messages
        if request.publisher is not None:
            messages = [replace(m, publisher=request.publisher) for m in messages]
        progress = _Progress(messages, [None] * len(messages), list(range(len(messages))))
        meta: ChannelMeta | None = None
        state: ProducerState | None = None
        while True:
            if meta is None:
                meta, state, early = self._validate(request, progress)
                if early is not None:
                    return early
            chunk = self._next_chunk(messages, progress.pending)
            last = len(chunk) == len(progress.pending)
            now = self.clock.now_ms()
            guard = AppendGuard(
                producer=self._new_state(request) if last else None,
                producer_before=state,
                stream_seq=request.stream_seq if last else None,
                close=request.close and last,
                stream_expires_at=self.channels.sliding_expiry(meta, now),
            )
            try:
                stored = self.store.append(
                    meta, [messages[i] for i in chunk], ts=now,
                    expires_at=now // 1000 + meta.retention_s, guard=guard,
                )
            except AppendConflictError:
                self._after_conflict(request, progress)
                meta = None
                continue
            for index, saved in zip(chunk, stored, strict=True):
                progress.results[index] = PublishResult(meta.name, saved.epoch, saved.seq)
            self.metrics.count("MessagesPublished", len(stored))
            meta = meta.with_head(stored[-1].seq) if stored else meta
            progress.pending = progress.pending[len(chunk) :]
            if last:
                return self._outcome(request, meta, progress)

    # -- steps -----------------------------------------------------------------------------

    def _check_limits(self, request: AppendRequest) -> None:
        count = len(request.messages)
        if count > self.settings.max_batch:
            raise TooLargeError(
                f"At most {self.settings.max_batch} messages per request; got {count}.",
                {"max_batch": self.settings.max_batch},
            )
        for message in request.messages:
            check_size(len(message.body), self.settings.max_message_bytes)
        fits = count + 2 <= TRANSACTION_ITEMS and (
            sum(len(m.body) for m in request.messages) <= TRANSACTION_BYTES
        )
        if request.guarded and not fits:
            raise TooLargeError(
                "An append with producer, Stream-Seq or close headers is committed in one "
                f"transaction: at most {TRANSACTION_ITEMS - 2} messages and "
                f"{TRANSACTION_BYTES} bytes. Split it into smaller batches.",
                {"max_messages": TRANSACTION_ITEMS - 2, "max_bytes": TRANSACTION_BYTES},
            )

    def _validate(
        self, request: AppendRequest, progress: _Progress
    ) -> tuple[ChannelMeta, ProducerState | None, AppendOutcome | None]:
        """Read the channel (and producer) afresh and apply the rules against them:
        (meta, producer state, an outcome if there is nothing left to store)."""
        name = request.channel
        meta = self.channels.get_or_create(name) if request.implicit_create else (
            self.channels.get(name)
        )
        state = None
        if request.producer is not None:
            state = self.store.get_producer(meta, request.producer.producer_id)
            if check_producer(state, request.producer) is Verdict.DUPLICATE:
                return meta, state, AppendOutcome(meta, duplicate=True, producer=state)
        if meta.closed:
            if request.close and not progress.pending:
                return meta, state, AppendOutcome(meta, producer=state)  # closing twice
            raise StreamClosedError(meta)
        if (
            progress.pending
            and request.content_type is not None
            and request.content_type != meta.content_type
        ):
            raise ConflictError(
                f"Stream {name!r} holds {meta.content_type}; this append is "
                f"{request.content_type}. Send the stream's content type.",
                {"content_type": meta.content_type},
            )
        if request.stream_seq is not None:
            check_stream_seq(meta.stream_seq, request.stream_seq)
        if progress.check_ids:
            progress.check_ids = False
            self._resolve_known_ids(meta, progress)
            if not progress.pending and not request.close:
                return meta, state, self._outcome(request, meta, progress)
        return meta, state, None

    def _after_conflict(self, request: AppendRequest, progress: _Progress) -> None:
        progress.conflicts += 1
        if progress.conflicts >= self.settings.publish_attempts:
            raise UnavailableError(
                f"Channel {request.channel!r} is too busy right now; retry the publish (with "
                "the same ids, or the same producer headers, it cannot be stored twice).",
                {"channel": request.channel},
            )
        progress.check_ids = True
        # Full jitter: spreads racing publishers apart.
        self.clock.sleep(self.rng.uniform(0, min(0.5, 0.01 * 2**progress.conflicts)))

    def _resolve_known_ids(self, meta: ChannelMeta, progress: _Progress) -> None:
        messages = progress.messages
        ids = [m for i in progress.pending if (m := messages[i].id) is not None]
        known = self.store.find_ids(meta, ids) if ids else {}
        still: list[int] = []
        for i in progress.pending:
            msg_id = messages[i].id
            if msg_id is not None and msg_id in known:
                progress.results[i] = PublishResult(
                    meta.name, meta.epoch, known[msg_id], duplicate=True
                )
            else:
                still.append(i)
        progress.pending = still

    @staticmethod
    def _next_chunk(messages: Sequence[NewMessage], pending: list[int]) -> list[int]:
        """As many pending messages as fit in one transaction (100 items, 4 MB), stopping
        before a repeated id (its first occurrence must be stored before the repeat can be
        recognised)."""
        chunk: list[int] = []
        items, size = 2, 0  # the head, and room for a producer's state
        seen: set[str] = set()
        for i in pending:
            msg_id = messages[i].id
            cost = 2 if msg_id else 1
            full = items + cost > TRANSACTION_ITEMS or (
                chunk and size + len(messages[i].body) > TRANSACTION_BYTES
            )
            if full or (msg_id is not None and msg_id in seen):
                break
            if msg_id is not None:
                seen.add(msg_id)
            chunk.append(i)
            items += cost
            size += len(messages[i].body)
        return chunk

    @staticmethod
    def _new_state(request: AppendRequest) -> ProducerState | None:
        producer = request.producer
        if producer is None:
            return None
        return ProducerState(producer.producer_id, producer.epoch, producer.seq)

    def _outcome(
        self, request: AppendRequest, meta: ChannelMeta, progress: _Progress
    ) -> AppendOutcome:
        after = replace(
            meta,
            closed=meta.closed or request.close,
            stream_seq=request.stream_seq or meta.stream_seq,
        )
        results = tuple(r for r in progress.results if r is not None)
        return AppendOutcome(after, results, producer=self._new_state(request))
