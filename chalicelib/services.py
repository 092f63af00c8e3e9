"""Use cases: publish, read, subscribe, connect, disconnect, fan out.

Services depend only on the ports (chalicelib/ports.py) and the pure core; the handlers turn
Lambda events into calls on them, and bootstrap.py decides which adapters they get.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools import Logger

from .core import frames
from .core.auth import PUBLISH, SUBSCRIBE, Principal
from .core.channels import ChannelMeta, resolve_start
from .core.errors import (
    ConflictError,
    EpochMismatchError,
    GoneError,
    InternalError,
    NotFoundError,
    SwitchboardError,
    TooLargeError,
    UnavailableError,
)
from .core.forks import fork_member, parse_member, segments
from .core.messages import (
    JSON_CONTENT_TYPE,
    NewMessage,
    PublishResult,
    StoredMessage,
    check_size,
    encode_data,
)
from .core.names import namespace_of, validate_channel
from .core.offsets import StartRequest, encode, new_epoch
from .core.producers import (
    ProducerRequest,
    ProducerState,
    Verdict,
    check_producer,
    check_stream_seq,
)
from .core.subscriptions import Connection, Subscription, SubscriptionState
from .ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    Clock,
    ConnectionGoneError,
    ConnectionSender,
    GoLive,
    MessageStore,
    SendFailedError,
    SendThrottledError,
    SubscriptionLimitError,
    SubscriptionStore,
)
from .settings import Settings

# Same underlying logger as observability.logger (Powertools configures it once).
logger = Logger(service="switchboard")

# A DynamoDB transaction holds at most 100 items; one of them is the channel's head.
_TRANSACTION_ITEMS = 100
# ... and at most 4 MB: leave room for keys and attributes.
_TRANSACTION_BYTES = 3_500_000


class StreamClosedError(ConflictError):
    """A Durable Streams append to a closed stream (409 with ``Stream-Closed: true``)."""

    def __init__(self, meta: ChannelMeta) -> None:
        super().__init__(
            f"Stream {meta.name!r} is closed: it takes no more appends. Read it to the end, "
            "or create a new stream.",
            {"channel": meta.name, "offset": meta.head_offset},
        )
        self.meta = meta


@dataclass(frozen=True)
class StreamAppend:
    """The outcome of a Durable Streams append."""

    meta: ChannelMeta  # the channel after the append (its head is the new tail)
    duplicate: bool = False  # an idempotent producer's retry: nothing was stored
    producer: ProducerState | None = None  # the producer's state after the append
    stored: int = 0  # messages appended


class Metrics:
    """The counters the services report; the handlers flush them as CloudWatch EMF."""

    def __init__(self, sink: Callable[[str, float], None] | None = None) -> None:
        self._sink = sink

    def count(self, name: str, value: float = 1) -> None:
        if self._sink is not None and value:
            self._sink(name, value)


@dataclass(frozen=True)
class ReadResult:
    meta: ChannelMeta
    messages: list[StoredMessage]
    after_seq: int  # the position the read started after

    @property
    def next_offset(self) -> str:
        last = self.messages[-1].seq if self.messages else self.after_seq
        return encode(self.meta.epoch, last)

    @property
    def up_to_date(self) -> bool:
        last = self.messages[-1].seq if self.messages else self.after_seq
        return last >= self.meta.head


class ChannelService:
    """Channels as append-only logs: create, delete, publish, read."""

    def __init__(
        self,
        store: MessageStore,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics or Metrics()

    # -- lifecycle -------------------------------------------------------------------------

    def get(self, name: str) -> ChannelMeta:
        """The channel's metadata; :class:`NotFoundError` if it does not exist (or expired),
        :class:`GoneError` if it was deleted while forks still hold it."""
        meta = self._load(validate_channel(name))
        if meta is None:
            raise NotFoundError(
                f"Channel {name!r} does not exist. Create it with PUT /v1/stream/{name}, or "
                "publish to it over the WebSocket or /v1/channels.",
                {"channel": name},
            )
        if meta.deleted:
            self._gone(meta)
        return meta

    def get_or_create(self, name: str) -> ChannelMeta:
        """Implicit creation, with the namespace's defaults (WebSocket and /v1/channels)."""
        meta = self._load(validate_channel(name))
        if meta is not None:
            return self.get(name) if meta.deleted else meta
        meta, _ = self.create(name)
        return meta

    def create(
        self,
        name: str,
        retention_s: int | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        expires_at: int | None = None,
        ttl_s: int | None = None,
    ) -> tuple[ChannelMeta, bool]:
        """Create the channel; returns ``(meta, created)``. An existing channel is returned as
        it is when the requested configuration matches, else :class:`ConflictError`."""
        validate_channel(name)
        now = self.clock.now_ms()
        meta = ChannelMeta(
            name=name,
            epoch=new_epoch(now, self.rng.getrandbits(16)),
            head=0,
            created_ms=now,
            retention_s=retention_s or self.settings.retention_for(namespace_of(name)),
            content_type=content_type,
            expires_at=expires_at,
            ttl_s=ttl_s,
        )
        try:
            return self.store.create_channel(meta), True
        except ChannelExistsError as exists:
            existing = self.replaceable(exists.existing)
            if existing is None:
                return self.create(name, retention_s, content_type, expires_at, ttl_s)
            return existing, False

    def replaceable(self, existing: ChannelMeta) -> ChannelMeta | None:
        """None once an expired channel is removed (the caller creates anew); the channel
        itself if it stands; :class:`ConflictError` if it is deleted but held by forks."""
        if existing.is_expired(self._now_s()):
            # A stream past its Durable Streams TTL is gone: replace it with a new epoch.
            # Its forks keep reading its log (by name and epoch) until the log expires.
            if self.store.delete_channel(existing, purge=True) is not None:
                self._release(existing)
            return None
        if existing.deleted:
            raise ConflictError(
                f"Stream {existing.name!r} was deleted but forks still read it: the name "
                "cannot be reused until they are deleted.",
                {"channel": existing.name},
            )
        return existing

    def delete(self, name: str) -> None:
        meta = self.get(name)
        deletion = self.store.delete_channel(meta)
        if deletion is None:
            raise NotFoundError(f"Channel {name!r} does not exist.", {"channel": name})
        if not deletion.soft:
            self._release(meta)

    def _release(self, meta: ChannelMeta) -> None:
        """A removed fork drops its reference; a soft-deleted source left without forks is
        collected, and so on up the chain."""
        current: ChannelMeta | None = meta
        while current is not None and current.fork is not None:
            current = self.store.release_fork(
                current.fork.source,
                current.fork.source_epoch,
                fork_member(current.name, current.epoch),
            )

    def _gone(self, meta: ChannelMeta) -> None:
        """Answer for a soft-deleted channel: 410, or 404 once no fork holds it any more.

        Forks that expired (or were removed without releasing it) are pruned here, so an
        expiring fork releases its source too. One live fork is enough to hold it: the check
        stops there (one GetItem per dead fork, plus one)."""
        now_s = self._now_s()
        for member in sorted(meta.forks):
            fork_name, fork_epoch = parse_member(member)
            fork = self.store.get_channel(fork_name)
            if fork is not None and fork.epoch == fork_epoch and not fork.is_expired(now_s):
                break
            collected = self.store.release_fork(meta.name, meta.epoch, member)
            if collected is not None:
                self._release(collected)
                raise NotFoundError(
                    f"Channel {meta.name!r} does not exist.", {"channel": meta.name}
                )
        raise GoneError(
            f"Stream {meta.name!r} was deleted; forks of it still exist, so the name is "
            "reserved until they are deleted.",
            {"channel": meta.name},
        )

    def info(self, name: str) -> dict[str, Any]:
        meta = self.get(name)
        return meta.to_dict(message_count=meta.head - self.first_retained(meta) + 1)

    def first_retained(self, meta: ChannelMeta) -> int:
        """The first seq not yet expired (``head + 1`` if none), across a fork's ancestors."""
        now_s = self._now_s()
        for segment in segments(meta.name, meta.epoch, meta.ancestors, 0, meta.head):
            first = self.store.first_retained(segment.name, segment.epoch, now_s, segment.hi)
            if first <= segment.hi:
                return max(first, segment.lo + 1)
        return meta.head + 1

    # -- publish ---------------------------------------------------------------------------

    def encode(self, data: Any) -> bytes:
        return encode_data(data, self.settings.max_message_bytes)

    def publish(
        self, name: str, messages: Sequence[NewMessage], implicit_create: bool = True
    ) -> list[PublishResult]:
        """Append ``messages`` in order; an ``id`` already published answers its original seq.

        Seqs come from a conditional write on the channel's head, so they are unique and
        gapless whatever the number of concurrent publishers; a lost race re-reads and
        retries with jittered backoff.
        """
        validate_channel(name)
        if len(messages) > self.settings.max_batch:
            raise TooLargeError(
                f"At most {self.settings.max_batch} messages per request; got {len(messages)}.",
                {"max_batch": self.settings.max_batch},
            )
        for message in messages:
            check_size(len(message.body), self.settings.max_message_bytes)
        results: list[PublishResult | None] = [None] * len(messages)
        pending = list(range(len(messages)))
        meta: ChannelMeta | None = None
        conflicts = 0
        check_ids = False  # duplicates are rare: look ids up only after a conflict
        while pending:
            if meta is None:
                meta = self.get_or_create(name) if implicit_create else self.get(name)
            if check_ids:
                pending = self._resolve_known_ids(meta, messages, pending, results)
                check_ids = False
                if not pending:
                    break
            chunk = self._next_chunk(messages, pending)
            now = self.clock.now_ms()
            try:
                stored = self.store.append(
                    meta,
                    [messages[i] for i in chunk],
                    ts=now,
                    expires_at=now // 1000 + meta.retention_s,
                )
            except AppendConflictError:
                conflicts += 1
                if conflicts >= self.settings.publish_attempts:
                    raise UnavailableError(
                        f"Channel {name!r} is too busy right now; retry the publish "
                        "(with the same ids it cannot be stored twice).",
                        {"channel": name},
                    ) from None
                meta, check_ids = None, True
                self.clock.sleep(self._backoff(conflicts))
                continue
            for index, saved in zip(chunk, stored, strict=True):
                results[index] = PublishResult(name, saved.epoch, saved.seq)
            meta = meta.with_head(stored[-1].seq)
            pending = pending[len(chunk) :]
        self.metrics.count("MessagesPublished", sum(1 for r in results if r and not r.duplicate))
        return [r for r in results if r is not None]

    def _resolve_known_ids(
        self,
        meta: ChannelMeta,
        messages: Sequence[NewMessage],
        pending: list[int],
        results: list[PublishResult | None],
    ) -> list[int]:
        ids = [messages[i].id for i in pending if messages[i].id]
        known = self.store.find_ids(meta, [i for i in ids if i]) if ids else {}
        still: list[int] = []
        for i in pending:
            msg_id = messages[i].id
            if msg_id is not None and msg_id in known:
                results[i] = PublishResult(meta.name, meta.epoch, known[msg_id], duplicate=True)
            else:
                still.append(i)
        return still

    def _next_chunk(self, messages: Sequence[NewMessage], pending: list[int]) -> list[int]:
        """As many pending messages as fit in one transaction (100 items, 4 MB), stopping
        before a repeated id (its first occurrence must be stored before the repeat can be
        recognised)."""
        chunk: list[int] = []
        items, size = 1, 0
        seen: set[str] = set()
        for i in pending:
            msg_id = messages[i].id
            cost = 2 if msg_id else 1
            full = items + cost > _TRANSACTION_ITEMS or (
                chunk and size + len(messages[i].body) > _TRANSACTION_BYTES
            )
            if full or (msg_id is not None and msg_id in seen):
                break
            if msg_id is not None:
                seen.add(msg_id)
            chunk.append(i)
            items += cost
            size += len(messages[i].body)
        return chunk

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads racing publishers apart.
        return self.rng.uniform(0, min(0.5, 0.01 * 2**attempt))

    # -- read ------------------------------------------------------------------------------

    def read(self, name: str, start: StartRequest, limit: int) -> ReadResult:
        meta = self.get(name)
        after = self.resolve(meta, start)
        return ReadResult(meta, self.read_after(meta, after, limit), after)

    def resolve(self, meta: ChannelMeta, start: StartRequest) -> int:
        """The seq a reader starts after (raises offset_expired / epoch_mismatch)."""
        if start.kind == "now":
            return meta.head
        return resolve_start(start, meta, self.first_retained(meta))

    def read_after(
        self, meta: ChannelMeta, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        """Retained messages after ``after_seq``, at most ``limit``, skipping expired ones."""
        now_s = self._now_s()
        out: list[StoredMessage] = []
        end = meta.head if until_seq is None else min(until_seq, meta.head)
        # A fork reads its inherited prefix from its ancestors' logs, then its own.
        for segment in segments(meta.name, meta.epoch, meta.ancestors, after_seq, end):
            inherited = segment.name != meta.name or segment.epoch != meta.epoch
            cursor = segment.lo
            while len(out) < limit and cursor < segment.hi:
                page = self.store.read(
                    segment.name, segment.epoch, cursor, limit - len(out), segment.hi
                )
                if not page:
                    break
                out.extend(
                    # Served as the fork's own messages (its name, epoch and offsets).
                    replace(m, channel=meta.name, epoch=meta.epoch) if inherited else m
                    for m in page
                    if m.expires_at > now_s
                )
                cursor = page[-1].seq
            if len(out) >= limit:
                break
        return out

    # -- Durable Streams appends -----------------------------------------------------------

    def append_stream(
        self,
        name: str,
        messages: Sequence[NewMessage],
        content_type: str | None,
        producer: ProducerRequest | None = None,
        stream_seq: str | None = None,
        close: bool = False,
        publisher: str | None = None,
    ) -> StreamAppend:
        """Append with the Durable Streams rules: idempotent producers, ``Stream-Seq``,
        closing, sliding TTL.

        Validation runs against freshly read state and the append commits only if that state
        still holds (one transaction, conditioned on head, open stream and producer state);
        a lost race re-reads and validates again, so a retry that raced its original is
        recognised as a duplicate rather than stored twice.
        """
        for message in messages:
            check_size(len(message.body), self.settings.max_message_bytes)
        if publisher is not None:
            messages = [replace(m, publisher=publisher) for m in messages]
        guarded = producer is not None or stream_seq is not None or close
        fits = len(messages) + 2 <= _TRANSACTION_ITEMS and (
            sum(len(m.body) for m in messages) <= _TRANSACTION_BYTES
        )
        if not fits and guarded:
            raise TooLargeError(
                "An append with producer, Stream-Seq or close headers is committed in one "
                f"transaction: at most {_TRANSACTION_ITEMS - 2} messages and "
                f"{_TRANSACTION_BYTES} bytes. Split it into smaller batches.",
                {"max_messages": _TRANSACTION_ITEMS - 2, "max_bytes": _TRANSACTION_BYTES},
            )
        for attempt in range(1, self.settings.publish_attempts + 1):
            meta = self.get(name)
            state = None
            if producer is not None:
                state = self.store.get_producer(meta, producer.producer_id)
                if check_producer(state, producer) is Verdict.DUPLICATE:
                    return StreamAppend(meta, duplicate=True, producer=state)
            if meta.closed:
                if close and not messages:
                    return StreamAppend(meta, producer=state)  # closing twice is a no-op
                raise StreamClosedError(meta)
            if messages and content_type is not None and content_type != meta.content_type:
                raise ConflictError(
                    f"Stream {name!r} holds {meta.content_type}; this append is "
                    f"{content_type}. Send the stream's content type.",
                    {"content_type": meta.content_type},
                )
            if stream_seq is not None:
                check_stream_seq(meta.stream_seq, stream_seq)
            new_state = (
                ProducerState(producer.producer_id, producer.epoch, producer.seq)
                if producer is not None
                else None
            )
            now = self.clock.now_ms()
            guard = AppendGuard(
                producer=new_state,
                producer_before=state,
                stream_seq=stream_seq,
                close=close,
                stream_expires_at=self.sliding_expiry(meta, now),
            )
            if not fits:
                return self._append_chunked(meta, messages, guard)
            try:
                stored = self.store.append(
                    meta, messages, ts=now, expires_at=now // 1000 + meta.retention_s,
                    guard=guard,
                )
            except AppendConflictError:
                self.clock.sleep(self._backoff(attempt))
                continue
            self.metrics.count("MessagesPublished", len(stored))
            after = meta.with_head(stored[-1].seq) if stored else meta
            return StreamAppend(
                replace(after, closed=close, stream_seq=stream_seq or meta.stream_seq),
                producer=new_state,
                stored=len(stored),
            )
        raise UnavailableError(
            f"Stream {name!r} is too busy right now; retry the append (with producer headers "
            "it cannot be stored twice).",
            {"channel": name},
        )

    def _append_chunked(
        self, meta: ChannelMeta, messages: Sequence[NewMessage], guard: AppendGuard
    ) -> StreamAppend:
        """A plain append too big for one transaction: consecutive guarded chunks (each
        refuses a closed stream), retried per chunk on a lost race."""
        pending = list(messages)
        conflicts = 0
        while pending:
            size, count = 0, 0
            for message in pending:
                if count + 2 > _TRANSACTION_ITEMS or size + len(message.body) > (
                    _TRANSACTION_BYTES
                ):
                    break
                size, count = size + len(message.body), count + 1
            now = self.clock.now_ms()
            try:
                stored = self.store.append(
                    meta, pending[:count], ts=now, expires_at=now // 1000 + meta.retention_s,
                    guard=guard,
                )
            except AppendConflictError:
                conflicts += 1
                if conflicts >= self.settings.publish_attempts:
                    raise UnavailableError(
                        f"Stream {meta.name!r} is too busy right now; retry the append.",
                        {"channel": meta.name},
                    ) from None
                self.clock.sleep(self._backoff(conflicts))
                meta = self.get(meta.name)
                if meta.closed:
                    raise StreamClosedError(meta) from None
                continue
            self.metrics.count("MessagesPublished", len(stored))
            meta = meta.with_head(stored[-1].seq)
            pending = pending[count:]
        return StreamAppend(meta, stored=len(messages))

    def sliding_expiry(self, meta: ChannelMeta, now_ms: int) -> int | None:
        """The new expiry of a stream with a ``Stream-TTL`` (renewed on every access), in
        epoch seconds rounded up so a stream never lives less than its TTL."""
        if meta.ttl_s is None:
            return None
        return -(-(now_ms + meta.ttl_s * 1000) // 1000)

    def touch(self, meta: ChannelMeta) -> None:
        """A read renews a sliding TTL (one conditional write, only for TTL streams)."""
        expiry = self.sliding_expiry(meta, self.clock.now_ms())
        if expiry is not None and expiry != meta.expires_at:
            self.store.extend_expiry(meta, expiry)

    def _now_s(self) -> int:
        return self.clock.now_ms() // 1000

    def _load(self, name: str) -> ChannelMeta | None:
        meta = self.store.get_channel(name)
        if meta is not None and meta.is_expired(self._now_s()):
            return None  # past its Durable Streams TTL: gone, as if deleted
        return meta


@dataclass(frozen=True)
class WsContext:
    """Who sent a WebSocket frame and where replies go."""

    connection_id: str
    endpoint: str
    # Who is on the other end: from the $connect token (anonymous when auth is off).
    principal: Principal = field(default_factory=Principal.anonymous)


class SessionService:
    """The WebSocket side: connections, subscriptions with exact replay, and replies."""

    def __init__(
        self,
        channels: ChannelService,
        subscriptions: SubscriptionStore,
        sender: ConnectionSender,
        settings: Settings,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.channels = channels
        self.subscriptions = subscriptions
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or Metrics()

    def connect(self, ctx: WsContext) -> None:
        now = self.clock.now_ms()
        self.subscriptions.put_connection(
            Connection(
                connection_id=ctx.connection_id,
                endpoint=ctx.endpoint,
                connected_ms=now,
                expires_at=now // 1000 + self.settings.connection_ttl_s,
                principal=ctx.principal.publisher,
                claims=json.dumps(ctx.principal.to_claims(), separators=(",", ":")),
            )
        )

    def disconnect(self, connection_id: str) -> None:
        self.subscriptions.delete_connection(connection_id)

    def handle(self, ctx: WsContext, body: str | bytes | None) -> None:
        """Answer one client frame. Errors become error frames; the connection stays up."""
        ref: str | None = None
        channel: str | None = None
        try:
            frame = frames.parse_client_frame(body, self.settings.max_frame_bytes)
            ref = frame.ref
            channel = getattr(frame, "channel", None)
            logger.thread_safe_append_keys(channel=channel)
            if isinstance(frame, frames.Ping):
                self._send(ctx, frames.pong_frame(ref))
            elif isinstance(frame, frames.Publish):
                self._publish(ctx, frame)
            elif isinstance(frame, frames.Subscribe):
                self._subscribe(ctx, frame)
            else:
                self.subscriptions.unsubscribe(frame.channel, ctx.connection_id)
                self._send(ctx, frames.unsubscribed_frame(ref, frame.channel))
        except ConnectionGoneError:
            self.subscriptions.delete_connection(ctx.connection_id)
        except SwitchboardError as error:
            ref = ref if ref is not None else frames.ref_of(body)
            logger.info("frame rejected", extra={"code": error.code, "ref": ref})
            self._send_quietly(ctx, frames.error_frame(error, ref, channel))
        except Exception:
            logger.exception("frame failed")
            ref = ref if ref is not None else frames.ref_of(body)
            failure = InternalError("The server failed to handle this frame; retry it.")
            self._send_quietly(ctx, frames.error_frame(failure, ref, channel))
        finally:
            logger.thread_safe_remove_keys(["channel"])

    def _publish(self, ctx: WsContext, frame: frames.Publish) -> None:
        ctx.principal.require(frame.channel, PUBLISH, self.clock.now_ms() / 1000)
        body = self.channels.encode(frame.data)
        # `publisher` is who authenticated, never what the frame claims.
        (result,) = self.channels.publish(
            frame.channel, [NewMessage(body, frame.id, ctx.principal.publisher)]
        )
        logger.debug("published", extra={"seq": result.seq})
        self._send(ctx, frames.ack_frame(frame.ref, result))

    def _subscribe(self, ctx: WsContext, frame: frames.Subscribe) -> None:
        """Register first, then replay, then go live: nothing can fall in between."""
        ctx.principal.require(frame.channel, SUBSCRIBE, self.clock.now_ms() / 1000)
        meta = self.channels.get_or_create(frame.channel)
        after = self.channels.resolve(meta, frame.start)
        sub = Subscription(
            channel=meta.name,
            connection_id=ctx.connection_id,
            endpoint=ctx.endpoint,
            epoch=meta.epoch,
            after_seq=after,
            state=SubscriptionState.REPLAYING,
            expires_at=self.clock.now_ms() // 1000 + self.settings.connection_ttl_s,
        )
        try:
            self.subscriptions.subscribe(sub, self.settings.max_subscriptions_per_connection)
        except SubscriptionLimitError:
            raise TooLargeError(
                f"A connection may hold {self.settings.max_subscriptions_per_connection} "
                "subscriptions; unsubscribe from one first or open another connection.",
                {"max_subscriptions": self.settings.max_subscriptions_per_connection},
            ) from None
        self._send(
            ctx,
            frames.subscribed_frame(
                frame.ref, meta.name, meta.epoch, encode(meta.epoch, after),
                meta.head_offset if meta.head else "-1",
            ),
        )
        self._replay(ctx, sub, meta, after)

    def _replay(self, ctx: WsContext, sub: Subscription, meta: ChannelMeta, after: int) -> None:
        """Send everything up to the head, then switch to live only if the head is still
        where the replay ended; otherwise send the rest and try again.

        The head is re-read right before each switch and anything new is sent first, so the
        window in which a concurrent publish can make the switch fail is one read and one
        transaction, not the time the posts took: a channel streaming tokens does not keep a
        subscriber replaying. Bounded by attempts and by time, for a channel written faster
        than a subscriber can be caught up.
        """
        cursor = after
        replayed = 0
        attempts = 0
        deadline = self.clock.now_ms() + self.settings.replay_catchup_s * 1000
        while True:
            while cursor < meta.head:
                page = self.channels.read_after(
                    meta, cursor, self.settings.replay_page, until_seq=meta.head
                )
                if not page:  # the rest expired while we read
                    cursor = meta.head
                    break
                for message in page:
                    self._send(ctx, frames.message_frame(message))
                cursor = page[-1].seq
                replayed += len(page)
            latest = self.channels.store.get_channel(meta.name)
            if latest is None or latest.epoch != meta.epoch:
                break  # deleted meanwhile: live subscribers of the new life are told so
            meta = latest
            if meta.head == cursor:
                attempts += 1
                if self.subscriptions.go_live(sub, cursor) is not GoLive.HEAD_MOVED:
                    break
            if (
                attempts >= self.settings.replay_catchup_rounds
                or self.clock.now_ms() > deadline
            ):
                self.subscriptions.unsubscribe(sub.channel, sub.connection_id)
                raise UnavailableError(
                    f"Channel {sub.channel!r} is publishing faster than this subscription can "
                    "catch up; subscribe again from your last offset.",
                    {"channel": sub.channel, "offset": encode(meta.epoch, cursor)},
                )
        self.metrics.count("MessagesReplayed", replayed)

    def _send(self, ctx: WsContext, data: str) -> None:
        self.sender.send(ctx.endpoint, ctx.connection_id, data)

    def _send_quietly(self, ctx: WsContext, data: str) -> None:
        try:
            self._send(ctx, data)
        except ConnectionGoneError:
            self.subscriptions.delete_connection(ctx.connection_id)
        except (SendThrottledError, SendFailedError):
            logger.warning("could not deliver an error frame")


@dataclass
class FanoutReport:
    delivered: int = 0
    gone: set[str] = field(default_factory=set)
    failed_records: set[str] = field(default_factory=set)


@dataclass
class _Delivery:
    endpoint: str
    connection_id: str
    frames: list[tuple[str, str]] = field(default_factory=list)  # (record id, frame)


class FanoutService:
    """Deliver newly stored messages to live subscribers (the DynamoDB stream consumer)."""

    def __init__(
        self,
        subscriptions: SubscriptionStore,
        sender: ConnectionSender,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.subscriptions = subscriptions
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics or Metrics()
        self._pool: ThreadPoolExecutor | None = None

    def fan_out(self, records: Iterable[tuple[str, StoredMessage]]) -> FanoutReport:
        """``records`` are (stream record id, message) in stream order.

        One Query per channel finds its subscribers; each connection gets its frames in seq
        order, and connections are served concurrently.
        """
        by_channel: dict[str, list[tuple[str, StoredMessage]]] = defaultdict(list)
        for record_id, message in records:
            by_channel[message.channel].append((record_id, message))
        deliveries: dict[str, _Delivery] = {}
        stale: list[tuple[Subscription, str]] = []  # (subscription, the channel's new epoch)
        for channel, items in by_channel.items():
            for sub in self.subscriptions.subscribers(channel):
                newest_epoch = items[-1][1].epoch
                if sub.state is SubscriptionState.LIVE and sub.epoch != newest_epoch:
                    stale.append((sub, newest_epoch))
                    continue
                for record_id, message in items:
                    if sub.wants(message.epoch, message.seq):
                        delivery = deliveries.setdefault(
                            sub.connection_id, _Delivery(sub.endpoint, sub.connection_id)
                        )
                        delivery.frames.append((record_id, frames.message_frame(message)))
        report = FanoutReport()
        for sub, epoch in stale:
            self._end_stale(sub, epoch, report)
        if deliveries:
            for delivery, outcome in zip(
                deliveries.values(), self._map(self._deliver, list(deliveries.values())),
                strict=True,
            ):
                sent, gone, failed = outcome
                report.delivered += sent
                if gone:
                    report.gone.add(delivery.connection_id)
                report.failed_records.update(failed)
        for connection_id in report.gone:
            self.subscriptions.delete_connection(connection_id)
        self.metrics.count("MessagesDelivered", report.delivered)
        self.metrics.count("ConnectionsGone", len(report.gone))
        return report

    def _map(
        self, fn: Callable[[_Delivery], tuple[int, bool, list[str]]], items: list[_Delivery]
    ) -> list[tuple[int, bool, list[str]]]:
        if len(items) == 1:
            return [fn(items[0])]
        if self._pool is None:  # kept across warm invocations
            self._pool = ThreadPoolExecutor(max_workers=self.settings.fanout_concurrency)
        return list(self._pool.map(fn, items))

    def _deliver(self, delivery: _Delivery) -> tuple[int, bool, list[str]]:
        """Post one connection's frames in order: (sent, gone, failed record ids)."""
        sent = 0
        for position, (_record_id, frame) in enumerate(delivery.frames):
            try:
                self._post(delivery.endpoint, delivery.connection_id, frame)
            except ConnectionGoneError:
                return sent, True, []
            except (SendFailedError, SendThrottledError):
                logger.warning(
                    "delivery failed", extra={"connection_id": delivery.connection_id}
                )
                # Retry from this record on: stream redelivery is at-least-once and
                # clients drop seqs they have seen.
                return sent, False, [rid for rid, _ in delivery.frames[position:]]
            sent += 1
        return sent, False, []

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
        self.subscriptions.unsubscribe(sub.channel, sub.connection_id)
        try:
            self.sender.send(sub.endpoint, sub.connection_id, frame)
        except ConnectionGoneError:
            report.gone.add(sub.connection_id)
        except (SendThrottledError, SendFailedError):
            logger.warning("could not tell a stale subscriber", extra={"channel": sub.channel})
