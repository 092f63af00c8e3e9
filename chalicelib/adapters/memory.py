"""In-memory twins of the stores and the sender: same contract, no AWS.

Used by the functional tests and anything that must run without DynamoDB. A single lock makes
every operation atomic, which is what DynamoDB's conditional writes and transactions give the
AWS adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..core.channels import ChannelMeta
from ..core.forks import fork_member
from ..core.logs import EntryKind, LogEntry
from ..core.messages import NewMessage, StoredMessage
from ..core.presence import Member
from ..core.producers import ProducerState
from ..core.subscriptions import Connection, Handover, Subscription, SubscriptionState
from ..ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    ConnectionGoneError,
    Deletion,
    ForkLimitError,
    ForkRefs,
    ForkSourceChangedError,
    IdsClaimedError,
    SeqTakenError,
    SubscriptionLimitError,
)

Entry = StoredMessage | EntryKind  # a message, or a marker (core/logs.py)


class MemoryStore:
    """Implements MessageStore, SubscriptionStore and LeaseStore."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.channels: dict[str, ChannelMeta] = {}
        self.logs: dict[tuple[str, str], dict[int, Entry]] = {}
        # (channel, epoch, id) -> (seq, expires_at)
        self.ids: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.producers: dict[tuple[str, str, str], ProducerState] = {}
        # (source, epoch) -> its fork bookkeeping (an item of its own on DynamoDB)
        self.fork_refs_by_source: dict[tuple[str, str], ForkRefs] = {}
        self.connections: dict[str, Connection] = {}
        self.connection_channels: dict[str, set[str]] = {}
        self.subs: dict[str, dict[str, Subscription]] = {}
        # scope -> lease id -> held until (epoch seconds)
        self.leases: dict[str, dict[str, int]] = {}
        # What DynamoDB Streams would carry: every appended message, in commit order.
        self.stream: list[StoredMessage] = []

    # -- MessageStore: channels ------------------------------------------------------------

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

    def delete_channel(
        self, meta: ChannelMeta, end_seq: int, purge: bool = False
    ) -> Deletion | None:
        with self._lock:
            current = self.channels.get(meta.name)
            if current is None or current.epoch != meta.epoch:
                return None
            self._end_log(meta.name, meta.epoch, end_seq)
            refs = self.fork_refs_by_source.get((meta.name, meta.epoch), ForkRefs())
            if refs.pins and not purge:
                self.channels[meta.name] = replace(current, deleted=True)
                return Deletion(soft=True)
            del self.channels[meta.name]
            self.fork_refs_by_source.pop((meta.name, meta.epoch), None)
            return Deletion(soft=False)

    def _end_log(self, name: str, epoch: str, end_seq: int) -> None:
        log = self.logs.setdefault((name, epoch), {})
        if EntryKind.END in log.values():
            return  # ended already (a soft delete, then the purge of its collection)
        if end_seq in log:
            raise SeqTakenError(_entry(end_seq, log[end_seq]))
        log[end_seq] = EntryKind.END

    def create_fork(
        self,
        meta: ChannelMeta,
        prefix: StoredMessage | None = None,
        pin: bool = True,
        max_forks: int = 100,
    ) -> ChannelMeta:
        assert meta.fork is not None
        with self._lock:
            existing = self.channels.get(meta.name)
            if existing is not None:
                raise ChannelExistsError(existing)
            source = self.channels.get(meta.fork.source)
            if source is None or source.epoch != meta.fork.source_epoch or source.deleted:
                raise ForkSourceChangedError(meta.fork.source)
            key = (source.name, source.epoch)
            refs = self.fork_refs_by_source.get(key, ForkRefs())
            if len(refs.forks) >= max_forks:
                raise ForkLimitError(source.name)
            member = fork_member(meta.name, meta.epoch)
            self.fork_refs_by_source[key] = ForkRefs(
                refs.forks | {member}, refs.pins | ({member} if pin else set())
            )
            self.channels[meta.name] = meta
            if prefix is not None:
                self.logs.setdefault((meta.name, meta.epoch), {})[prefix.seq] = prefix
                self.stream.append(prefix)
            return meta

    def fork_refs(self, name: str, epoch: str) -> ForkRefs:
        with self._lock:
            return self.fork_refs_by_source.get((name, epoch), ForkRefs())

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        with self._lock:
            refs = self.fork_refs_by_source.get((name, epoch))
            if refs is None:
                return None
            refs = ForkRefs(refs.forks - {member}, refs.pins - {member})
            if refs.forks:
                self.fork_refs_by_source[(name, epoch)] = refs
            else:
                del self.fork_refs_by_source[(name, epoch)]
            current = self.channels.get(name)
            if current is None or current.epoch != epoch:
                return None
            if current.deleted and not refs.pins:
                del self.channels[name]
                self.fork_refs_by_source.pop((name, epoch), None)
                return current
            return None

    def mark_written(self, meta: ChannelMeta, now_ms: int) -> None:
        with self._lock:
            current = self.channels.get(meta.name)
            if current is not None and current.epoch == meta.epoch and not current.written_ms:
                self.channels[meta.name] = replace(current, written_ms=now_ms)

    def renew_epoch(self, meta: ChannelMeta, new_epoch: str, end_seq: int) -> bool:
        with self._lock:
            current = self.channels.get(meta.name)
            if current is None or current.epoch != meta.epoch:
                return False
            self._end_log(meta.name, meta.epoch, end_seq)
            self.channels[meta.name] = replace(
                current, epoch=new_epoch, previous_epoch=meta.epoch, written_ms=None,
                stream_seq=None,
            )
            return True

    # -- MessageStore: logs ----------------------------------------------------------------

    def last_entry(self, name: str, epoch: str) -> LogEntry | None:
        with self._lock:
            log = self.logs.get((name, epoch))
            if not log:
                return None
            seq = max(log)
            return _entry(seq, log[seq])

    def entry(self, name: str, epoch: str, seq: int) -> LogEntry | None:
        with self._lock:
            found = self.logs.get((name, epoch), {}).get(seq)
            return _entry(seq, found) if found is not None else None

    def append(
        self,
        meta: ChannelMeta,
        first_seq: int,
        messages: Sequence[NewMessage],
        ts: int,
        expires_at: int,
        guard: AppendGuard | None = None,
        claim_ids: bool = True,
        stale_claims: Mapping[str, int] | None = None,
    ) -> list[StoredMessage]:
        guard = guard or AppendGuard()
        stale = stale_claims or {}
        with self._lock:
            log = self.logs.setdefault((meta.name, meta.epoch), {})
            end = first_seq + len(messages) + (1 if guard.close else 0)
            for seq in range(first_seq, end):
                if seq in log:
                    raise SeqTakenError(_entry(seq, log[seq]) if seq == first_seq else None)
            if claim_ids:
                claimed = {}
                for message in messages:
                    if message.id is None:
                        continue
                    held = self.ids.get((meta.name, meta.epoch, message.id))
                    if held is not None and held[1] > ts // 1000 and (
                        stale.get(message.id) != held[0]
                    ):
                        claimed[message.id] = held[0]
                if claimed:
                    raise IdsClaimedError(claimed)
            if guard.stream_seq is not None or guard.close:
                # As on DynamoDB, the channel's item joins only for Stream-Seq or close.
                current = self.channels.get(meta.name)
                if current is None or current.epoch != meta.epoch or current.closed or (
                    current.deleted
                ):
                    raise AppendConflictError(meta.name)
                if guard.stream_seq is not None and current.stream_seq != guard.stream_seq_before:
                    raise AppendConflictError(meta.name)
            if guard.producer is not None:
                key = (meta.name, meta.epoch, guard.producer.producer_id)
                if self.producers.get(key) != guard.producer_before:
                    raise AppendConflictError(meta.name)
            stored = []
            for offset, message in enumerate(messages):
                item = StoredMessage(
                    channel=meta.name, epoch=meta.epoch, seq=first_seq + offset,
                    body=message.body, ts=ts, expires_at=expires_at, id=message.id,
                    publisher=message.publisher, token=message.token, raw=message.raw,
                )
                log[item.seq] = item
                if claim_ids and message.id is not None:
                    self.ids[(meta.name, meta.epoch, message.id)] = (item.seq, expires_at)
                stored.append(item)
            self.stream.extend(stored)
            if guard.guarded:
                if guard.close:
                    log[first_seq + len(messages)] = EntryKind.CLOSE
                if guard.producer is not None:
                    key = (meta.name, meta.epoch, guard.producer.producer_id)
                    self.producers[key] = guard.producer
                if guard.stream_seq is not None or guard.close:
                    current = self.channels[meta.name]
                    self.channels[meta.name] = replace(
                        current,
                        closed=current.closed or guard.close,
                        stream_seq=guard.stream_seq or current.stream_seq,
                    )
            return stored

    def claim(
        self, meta: ChannelMeta, message_id: str, seq: int, expires_at: int, now_s: int
    ) -> int | None:
        with self._lock:
            key = (meta.name, meta.epoch, message_id)
            held = self.ids.get(key)
            if held is not None and held[1] > now_s:
                return held[0]
            self.ids[key] = (seq, expires_at)
            return None

    def move_claim(self, meta: ChannelMeta, message_id: str, from_seq: int, to_seq: int) -> bool:
        with self._lock:
            key = (meta.name, meta.epoch, message_id)
            held = self.ids.get(key)
            if held is None or held[0] != from_seq:
                return False
            self.ids[key] = (to_seq, held[1])
            return True

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
                i: self.ids[(meta.name, meta.epoch, i)][0]
                for i in ids
                if (meta.name, meta.epoch, i) in self.ids
            }

    def find_tokens(
        self, name: str, epoch: str, tokens: frozenset[str], since_ms: int, most: int
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        with self._lock:
            log = self.logs.get((name, epoch), {})
            for seq in sorted(log, reverse=True)[:most]:
                entry = log[seq]
                if isinstance(entry, StoredMessage):
                    if entry.ts < since_ms:
                        break
                    if entry.token in tokens:
                        found.setdefault(entry.token, seq)
            return found

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        with self._lock:
            log = self.logs.get((name, epoch), {})
            seqs = sorted(s for s in log if s > after_seq and (until_seq is None or s <= until_seq))
            return [m for s in seqs[:limit] if isinstance(m := log[s], StoredMessage)]

    def first_retained(self, name: str, epoch: str, now_s: int, head: int) -> int:
        with self._lock:
            log = self.logs.get((name, epoch), {})
            live = [
                s for s, m in log.items() if isinstance(m, StoredMessage) and m.expires_at > now_s
            ]
            return min(live) if live else head + 1

    def drain_stream(self) -> list[StoredMessage]:
        """Take the messages appended since the last drain (the test's stream poller)."""
        with self._lock:
            out, self.stream = self.stream, []
            return out

    def expire(self, name: str, epoch: str, through_seq: int) -> None:
        """Test helper: physically remove entries, as DynamoDB TTL eventually does."""
        with self._lock:
            log = self.logs.get((name, epoch), {})
            for seq in [s for s in log if s <= through_seq]:
                del log[seq]

    # -- LeaseStore ------------------------------------------------------------------------

    def acquire(self, scope: str, lease_id: str, until_s: int, limit: int, now_s: int) -> bool:
        with self._lock:
            held = {i: u for i, u in self.leases.get(scope, {}).items() if u > now_s}
            if len(held) >= limit and lease_id not in held:
                return False
            held[lease_id] = until_s
            self.leases[scope] = held
            return True

    def release(self, scope: str, lease_id: str) -> None:
        with self._lock:
            held = self.leases.get(scope, {})
            held.pop(lease_id, None)
            if not held:
                self.leases.pop(scope, None)

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
                replace(subscription, state=SubscriptionState.REPLAYING, missed=0)
            )

    def unsubscribe(
        self, channel: str, connection_id: str, received_ms: int | None = None
    ) -> bool:
        with self._lock:
            current = self.subs.get(channel, {}).get(connection_id)
            if current is None or (received_ms is not None and current.since_ms > received_ms):
                return False
            self.connection_channels.get(connection_id, set()).discard(channel)
            del self.subs[channel][connection_id]
            return True

    def _current(self, subscription: Subscription) -> Subscription | None:
        current = self.subs.get(subscription.channel, {}).get(subscription.connection_id)
        if current is None or current.epoch != subscription.epoch:
            return None
        return current

    def _put(self, subscription: Subscription) -> None:
        self.subs[subscription.channel][subscription.connection_id] = subscription

    def note_missed(self, subscription: Subscription, seq: int) -> bool:
        with self._lock:
            current = self._current(subscription)
            if current is None or current.state is not SubscriptionState.REPLAYING:
                return False
            self._put(replace(current, missed=max(current.missed, seq)))
            return True

    def go_live(self, subscription: Subscription, after_seq: int) -> Handover:
        with self._lock:
            current = self._current(subscription)
            if current is None or current.state is not SubscriptionState.REPLAYING:
                return Handover.GONE
            if current.missed > after_seq:
                return Handover.BEHIND
            self._put(
                replace(current, state=SubscriptionState.LIVE, after_seq=after_seq, missed=0)
            )
            return Handover.LIVE

    def get_subscription(self, channel: str, connection_id: str) -> Subscription | None:
        with self._lock:
            return self.subs.get(channel, {}).get(connection_id)

    def subscribers(self, channel: str) -> list[Subscription]:
        with self._lock:
            return list(self.subs.get(channel, {}).values())


def _entry(seq: int, found: Entry) -> LogEntry:
    if isinstance(found, StoredMessage):
        return LogEntry(seq, EntryKind.MESSAGE, found.id)
    return LogEntry(seq, found)


@dataclass
class RecordingSender:
    """A ConnectionSender that records frames per connection instead of posting them.

    Connections listed in ``gone`` answer like a closed socket (GoneException).
    """

    sent: dict[str, list[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    closed: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        if connection_id in self.gone:
            raise ConnectionGoneError(connection_id)
        with self._lock:
            self.sent.setdefault(connection_id, []).append(data)

    def close(self, endpoint: str, connection_id: str) -> None:
        if connection_id in self.gone:
            raise ConnectionGoneError(connection_id)
        with self._lock:
            self.closed.append(connection_id)
            self.gone.add(connection_id)


class MemoryPresenceStore:
    """The PresenceStore twin."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.members_by_channel: dict[str, dict[str, Member]] = {}
        self.links: dict[str, set[str]] = {}
        self.buckets: dict[int, set[tuple[int, str, str]]] = {}
        self.swept: int | None = None

    def put_member(self, member: Member) -> Member | None:
        with self._lock:
            before = self.members_by_channel.setdefault(member.channel, {}).get(member.key)
            self.members_by_channel[member.channel][member.key] = member
            if member.connection_id is not None:
                self.links.setdefault(member.connection_id, set()).add(member.channel)
            return before

    def touch_member(
        self, channel: str, key: str, expires_at: int, updated_ms: int
    ) -> Member | None:
        with self._lock:
            before = self.members_by_channel.get(channel, {}).get(key)
            if before is not None:
                self.members_by_channel[channel][key] = replace(
                    before, expires_at=max(before.expires_at, expires_at)
                )
            return before

    def remove_member(
        self, channel: str, key: str, expired_by: int | None = None
    ) -> Member | None:
        with self._lock:
            current = self.members_by_channel.get(channel, {}).get(key)
            if current is None or (expired_by is not None and current.expires_at > expired_by):
                return None
            del self.members_by_channel[channel][key]
            if current.connection_id is not None:  # one member per connection and channel
                self.links.get(current.connection_id, set()).discard(channel)
            return current

    def members(self, channel: str) -> list[Member]:
        with self._lock:
            return list(self.members_by_channel.get(channel, {}).values())

    def linked(self, connection_id: str) -> list[str]:
        with self._lock:
            return sorted(self.links.get(connection_id, set()))

    def mark_due(self, bucket: int, channel: str, key: str, expires_at: int) -> None:
        with self._lock:
            self.buckets.setdefault(bucket, set()).add((expires_at, channel, key))

    def due(self, bucket: int, until: int) -> list[tuple[str, str]]:
        with self._lock:
            return sorted({(c, k) for exp, c, k in self.buckets.get(bucket, set())
                           if exp <= until})

    def expiries(self, members: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        with self._lock:
            out = {}
            for channel, key in members:
                member = self.members_by_channel.get(channel, {}).get(key)
                if member is not None:
                    out[(channel, key)] = member.expires_at
            return out

    def swept_bucket(self) -> int | None:
        with self._lock:
            return self.swept

    def set_swept_bucket(self, bucket: int) -> None:
        with self._lock:
            self.swept = max(self.swept or bucket, bucket)
