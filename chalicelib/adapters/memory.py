"""In-memory twins of the stores and the sender: same contract, no AWS.

Used by the functional tests and anything that must run without DynamoDB. A single lock makes
every operation atomic, which is what DynamoDB's conditional writes and transactions give the
AWS adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.channels import ChannelMeta
from ..core.forks import fork_member
from ..core.messages import NewMessage, StoredMessage
from ..core.producers import ProducerState
from ..core.subscriptions import Connection, Subscription, SubscriptionState
from ..ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    ConnectionGoneError,
    Deletion,
    ForkSourceChangedError,
    GoLive,
    SubscriptionLimitError,
)


class MemoryStore:
    """Implements both MessageStore and SubscriptionStore."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.channels: dict[str, ChannelMeta] = {}
        self.logs: dict[tuple[str, str], dict[int, StoredMessage]] = {}
        self.ids: dict[tuple[str, str, str], int] = {}
        self.producers: dict[tuple[str, str, str], ProducerState] = {}
        self.connections: dict[str, Connection] = {}
        self.connection_channels: dict[str, set[str]] = {}
        self.subs: dict[str, dict[str, Subscription]] = {}
        # What DynamoDB Streams would carry: every appended message, in commit order.
        self.stream: list[StoredMessage] = []

    # -- MessageStore ----------------------------------------------------------------------

    def get_channel(self, name: str) -> ChannelMeta | None:
        with self._lock:
            return self.channels.get(name)

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        with self._lock:
            existing = self.channels.get(meta.name)
            if existing is not None:
                raise ChannelExistsError(existing)
            self.channels[meta.name] = meta
            return meta

    def delete_channel(self, meta: ChannelMeta, purge: bool = False) -> Deletion | None:
        with self._lock:
            current = self.channels.get(meta.name)
            if current is None or current.epoch != meta.epoch:
                return None
            if current.forks and not purge:
                self.channels[meta.name] = replace(current, deleted=True)
                return Deletion(soft=True)
            del self.channels[meta.name]
            return Deletion(soft=False)

    def create_fork(self, meta: ChannelMeta, prefix: StoredMessage | None = None) -> ChannelMeta:
        assert meta.fork is not None
        with self._lock:
            existing = self.channels.get(meta.name)
            if existing is not None:
                raise ChannelExistsError(existing)
            source = self.channels.get(meta.fork.source)
            if source is None or source.epoch != meta.fork.source_epoch or source.deleted:
                raise ForkSourceChangedError(meta.fork.source)
            self.channels[source.name] = replace(
                source, forks=source.forks | {fork_member(meta.name, meta.epoch)}
            )
            self.channels[meta.name] = meta
            if prefix is not None:
                self.logs.setdefault((meta.name, meta.epoch), {})[prefix.seq] = prefix
                self.stream.append(prefix)
            return meta

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        with self._lock:
            current = self.channels.get(name)
            if current is None or current.epoch != epoch:
                return None
            current = replace(current, forks=current.forks - {member})
            if current.deleted and not current.forks:
                del self.channels[name]
                return current
            self.channels[name] = current
            return None

    def append(
        self,
        meta: ChannelMeta,
        messages: Sequence[NewMessage],
        ts: int,
        expires_at: int,
        guard: AppendGuard | None = None,
    ) -> list[StoredMessage]:
        with self._lock:
            current = self.channels.get(meta.name)
            if (
                current is None
                or current.epoch != meta.epoch
                or current.head != meta.head
                or current.deleted
            ):
                raise AppendConflictError(meta.name)
            if guard is not None:
                if current.closed:
                    raise AppendConflictError(meta.name)
                if guard.producer is not None:
                    key = (meta.name, meta.epoch, guard.producer.producer_id)
                    if self.producers.get(key) != guard.producer_before:
                        raise AppendConflictError(meta.name)
            for message in messages:
                if message.id is not None and (meta.name, meta.epoch, message.id) in self.ids:
                    raise AppendConflictError(meta.name)
            log = self.logs.setdefault((meta.name, meta.epoch), {})
            stored = []
            for offset, message in enumerate(messages, start=1):
                item = StoredMessage(
                    channel=meta.name,
                    epoch=meta.epoch,
                    seq=meta.head + offset,
                    body=message.body,
                    ts=ts,
                    expires_at=expires_at,
                    id=message.id,
                    publisher=message.publisher,
                )
                log[item.seq] = item
                if message.id is not None:
                    self.ids[(meta.name, meta.epoch, message.id)] = item.seq
                stored.append(item)
            self.stream.extend(stored)
            updated = current.with_head(meta.head + len(messages))
            if guard is not None:
                if guard.producer is not None:
                    self.producers[(meta.name, meta.epoch, guard.producer.producer_id)] = (
                        guard.producer
                    )
                updated = replace(
                    updated,
                    closed=guard.close,
                    stream_seq=guard.stream_seq or updated.stream_seq,
                    expires_at=guard.stream_expires_at or updated.expires_at,
                )
            self.channels[meta.name] = updated
            return stored

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        with self._lock:
            return self.producers.get((meta.name, meta.epoch, producer_id))

    def extend_expiry(self, meta: ChannelMeta, stream_expires_at: int) -> None:
        with self._lock:
            current = self.channels.get(meta.name)
            if current is not None and current.epoch == meta.epoch and (
                current.expires_at is None or current.expires_at < stream_expires_at
            ):
                self.channels[meta.name] = replace(current, expires_at=stream_expires_at)

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {
                i: self.ids[(meta.name, meta.epoch, i)]
                for i in ids
                if (meta.name, meta.epoch, i) in self.ids
            }

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        with self._lock:
            log = self.logs.get((name, epoch), {})
            seqs = sorted(s for s in log if s > after_seq and (until_seq is None or s <= until_seq))
            return [log[s] for s in seqs[:limit]]

    def first_retained(self, name: str, epoch: str, now_s: int, head: int) -> int:
        with self._lock:
            log = self.logs.get((name, epoch), {})
            live = [s for s, m in log.items() if m.expires_at > now_s]
            return min(live) if live else head + 1

    def drain_stream(self) -> list[StoredMessage]:
        """Take the messages appended since the last drain (the test's stream poller)."""
        with self._lock:
            out, self.stream = self.stream, []
            return out

    def expire(self, name: str, epoch: str, through_seq: int) -> None:
        """Test helper: physically remove messages, as DynamoDB TTL eventually does."""
        with self._lock:
            log = self.logs.get((name, epoch), {})
            for seq in [s for s in log if s <= through_seq]:
                del log[seq]

    # -- SubscriptionStore -----------------------------------------------------------------

    def put_connection(self, connection: Connection) -> None:
        with self._lock:
            self.connections[connection.connection_id] = connection

    def get_connection(self, connection_id: str) -> Connection | None:
        with self._lock:
            return self.connections.get(connection_id)

    def delete_connection(self, connection_id: str) -> None:
        with self._lock:
            self.connections.pop(connection_id, None)
            for channel in self.connection_channels.pop(connection_id, set()):
                self.subs.get(channel, {}).pop(connection_id, None)

    def subscribe(self, subscription: Subscription, max_per_connection: int) -> None:
        with self._lock:
            held = self.connection_channels.setdefault(subscription.connection_id, set())
            if subscription.channel not in held and len(held) >= max_per_connection:
                raise SubscriptionLimitError(subscription.connection_id)
            held.add(subscription.channel)
            self.subs.setdefault(subscription.channel, {})[subscription.connection_id] = (
                replace(subscription, state=SubscriptionState.REPLAYING)
            )

    def unsubscribe(self, channel: str, connection_id: str) -> bool:
        with self._lock:
            self.connection_channels.get(connection_id, set()).discard(channel)
            return self.subs.get(channel, {}).pop(connection_id, None) is not None

    def go_live(self, subscription: Subscription, head: int) -> GoLive:
        with self._lock:
            current = self.subs.get(subscription.channel, {}).get(subscription.connection_id)
            meta = self.channels.get(subscription.channel)
            if current is None or meta is None or meta.epoch != subscription.epoch:
                return GoLive.GONE
            if meta.head != head:
                return GoLive.HEAD_MOVED
            self.subs[subscription.channel][subscription.connection_id] = replace(
                current, state=SubscriptionState.LIVE, after_seq=head
            )
            return GoLive.LIVE

    def subscribers(self, channel: str) -> list[Subscription]:
        with self._lock:
            return list(self.subs.get(channel, {}).values())


@dataclass
class RecordingSender:
    """A ConnectionSender that records frames per connection instead of posting them.

    Connections listed in ``gone`` answer like a closed socket (GoneException).
    """

    sent: dict[str, list[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        if connection_id in self.gone:
            raise ConnectionGoneError(connection_id)
        with self._lock:
            self.sent.setdefault(connection_id, []).append(data)
