"""Use cases: channels as append-only logs — lifecycle (create, get, delete) and reads.

Appending lives in appends.py (one path for every transport); forks in forks.py; the
Durable Streams protocol on top of both in streams.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from ..core.channels import ChannelMeta, resolve_start
from ..core.errors import ConflictError, GoneError, NotFoundError
from ..core.forks import fork_member, parse_member, segments
from ..core.logs import Tail, locate_tail
from ..core.messages import JSON_CONTENT_TYPE, StoredMessage, encode_data
from ..core.names import namespace_of, validate_channel
from ..core.offsets import StartRequest, encode, new_epoch
from ..ports import NO_METRICS, ChannelExistsError, Clock, MessageStore, Metrics, SeqTakenError
from ..settings import Settings

_UNBOUNDED = 2**62  # an upper seq bound no log reaches
# Bodies per HTTP read: under Lambda's 6 MB response, with the JSON around each message.
READ_MAX_BYTES = 4 * 1024 * 1024
_MESSAGE_OVERHEAD = 300


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
    """Channels: create, look up, delete, and read their logs (forks included)."""

    def __init__(
        self,
        store: MessageStore,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.metrics = metrics

    # -- lifecycle -------------------------------------------------------------------------

    def get(self, name: str) -> ChannelMeta:
        """The channel's metadata with ``head`` at its last message; :class:`NotFoundError` if
        it does not exist (or expired), :class:`GoneError` if it was deleted while forks still
        hold it."""
        return self.with_tail(self.stored(name))

    def stored(self, name: str, create: bool = False) -> ChannelMeta:
        """The channel as stored (``head`` is its log's base), created with its namespace's
        defaults if ``create``; the errors of :meth:`get`."""
        meta = self.load(validate_channel(name))
        if meta is None and create:
            meta, _ = self.create(name)
            return meta
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
        return self.with_tail(self.stored(name, create=True))

    def for_subscriber(self, name: str, may_create: bool) -> ChannelMeta:
        """The channel a subscribe frame names: created if missing when the subscriber may
        create it (``publish`` or ``admin``), else :class:`NotFoundError` saying so."""
        if may_create:
            return self.get_or_create(name)
        meta = self.load(validate_channel(name))
        if meta is None:
            raise NotFoundError(
                f"Channel {name!r} does not exist yet, and your credentials may only "
                "subscribe to it, not create it: subscribe again once its publisher has "
                f"created it (a first publish, or PUT /v1/channels/{name}).",
                {"channel": name},
            )
        if meta.deleted:
            self._gone(meta)
        return self.with_tail(meta)

    def tail(self, meta: ChannelMeta) -> Tail:
        """Where ``meta``'s own log ends (one strongly consistent Query of one item)."""
        last = self.store.last_entry(meta.name, meta.epoch)
        return locate_tail(meta, last, self.clock.now_ms())

    def with_tail(self, meta: ChannelMeta) -> ChannelMeta:
        """``meta`` as stored (``head`` the log's base) with ``head`` at its last message."""
        return meta.with_head(self.tail(meta).head)

    def create(
        self,
        name: str,
        retention_s: int | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        expires_at: int | None = None,
        ttl_s: int | None = None,
    ) -> tuple[ChannelMeta, bool]:
        """Create the channel; returns ``(meta, created)``. An existing channel is returned as
        it is (the caller compares configurations)."""
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
            return self.with_tail(existing), False

    def replaceable(self, existing: ChannelMeta) -> ChannelMeta | None:
        """None once an expired channel is removed (the caller creates anew); the channel
        itself if it stands; :class:`ConflictError` if it is deleted but held by forks."""
        if existing.is_expired(self.now_s()):
            # A stream past its Durable Streams TTL is gone: replace it with a new epoch.
            # Its forks keep reading its log (by name and epoch) until the log expires.
            while True:
                try:
                    purged = self.store.delete_channel(
                        existing, self.tail(existing).next_seq, purge=True
                    )
                    break
                except SeqTakenError:
                    continue
            if purged is not None:
                self.release(existing)
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
        while True:
            try:
                deletion = self.store.delete_channel(meta, self.tail(meta).next_seq)
                break
            except SeqTakenError:
                continue  # a publish landed meanwhile: end the log after it
        if deletion is None:
            raise NotFoundError(f"Channel {name!r} does not exist.", {"channel": name})
        if not deletion.soft:
            self.release(meta)

    def release(self, meta: ChannelMeta) -> None:
        """A removed fork drops its reference; a soft-deleted source left without forks is
        collected, and so on up the chain."""
        current: ChannelMeta | None = meta
        while current is not None and current.fork is not None:
            current = self.store.release_fork(
                current.fork.source,
                current.fork.source_epoch,
                fork_member(current.name, current.epoch),
            )

    def prune_forks(self, meta: ChannelMeta) -> int:
        """Release the recorded forks of ``meta`` that no longer exist (deleted without
        releasing it, or expired); how many were released. One GetItem per fork listed."""
        now_s = self.now_s()
        released = 0
        for member in sorted(self.store.fork_refs(meta.name, meta.epoch).forks):
            fork_name, fork_epoch = parse_member(member)
            fork = self.store.get_channel(fork_name)
            if fork is not None and fork.epoch == fork_epoch and not fork.is_expired(now_s):
                continue
            self.store.release_fork(meta.name, meta.epoch, member)
            released += 1
        return released

    def _gone(self, meta: ChannelMeta) -> None:
        """Answer for a soft-deleted channel: 410, or 404 once no fork pins it any more.

        Forks that expired (or were removed without releasing it) are pruned here, so an
        expiring fork releases its source too. One live fork is enough to hold it: the check
        stops there (one GetItem for the bookkeeping, one per dead fork, plus one)."""
        now_s = self.now_s()
        for member in sorted(self.store.fork_refs(meta.name, meta.epoch).pins):
            fork_name, fork_epoch = parse_member(member)
            fork = self.store.get_channel(fork_name)
            if fork is not None and fork.epoch == fork_epoch and not fork.is_expired(now_s):
                break
            collected = self.store.release_fork(meta.name, meta.epoch, member)
            if collected is not None:
                self.release(collected)
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

    def encode(self, data: Any) -> bytes:
        """A JSON message body, within the message size limit."""
        return encode_data(data, self.settings.max_message_bytes)

    # -- reads -----------------------------------------------------------------------------

    def read(
        self, name: str, start: StartRequest, limit: int, max_bytes: int = READ_MAX_BYTES
    ) -> ReadResult:
        """Up to ``limit`` messages after ``start``, and no more than ``max_bytes`` of bodies
        (a response must stay under Lambda's 6 MB): the rest follows from ``next``."""
        meta = self.get(name)
        after = self.resolve(meta, start)
        messages = self.read_after(meta, after, limit)
        size = 0
        for count, message in enumerate(messages):
            size += len(message.body) + _MESSAGE_OVERHEAD
            if count and size > max_bytes:
                messages = messages[:count]
                break
        return ReadResult(meta, messages, after)

    def resolve(self, meta: ChannelMeta, start: StartRequest) -> int:
        """The seq a reader starts after (raises offset_expired / epoch_mismatch)."""
        if start.kind == "now":
            return meta.head
        return resolve_start(start, meta, self.first_retained(meta))

    def first_retained(self, meta: ChannelMeta) -> int:
        """The first seq not yet expired (``head + 1`` if none), across a fork's ancestors."""
        now_s = self.now_s()
        for segment in segments(meta.name, meta.epoch, meta.ancestors, 0, meta.head):
            first = self.store.first_retained(segment.name, segment.epoch, now_s, segment.hi)
            if first <= segment.hi:
                return max(first, segment.lo + 1)
        return meta.head + 1

    def read_after(
        self,
        meta: ChannelMeta,
        after_seq: int,
        limit: int,
        until_seq: int | None = None,
        to_end: bool = False,
    ) -> list[StoredMessage]:
        """Retained messages after ``after_seq``, at most ``limit``, skipping expired ones:
        up to ``meta.head`` (and ``until_seq``), or whatever the log holds now (``to_end``)."""
        now_s = self.now_s()
        out: list[StoredMessage] = []
        end = _UNBOUNDED if to_end else meta.head
        if until_seq is not None:
            end = min(until_seq, end)
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

    # -- lifetimes -------------------------------------------------------------------------

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

    def now_s(self) -> int:
        return self.clock.now_ms() // 1000

    def load(self, name: str) -> ChannelMeta | None:
        """The channel as stored, or None if it does not exist or its lifetime ended."""
        meta = self.store.get_channel(name)
        if meta is not None and meta.is_expired(self.now_s()):
            return None  # past its Durable Streams TTL: gone, as if deleted
        return meta
