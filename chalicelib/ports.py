"""The ports: everything the services need from the outside world, as structural interfaces.

    MessageStore        channel metadata and logs        adapters/dynamodb, adapters/memory
    SubscriptionStore   connections and subscriptions    adapters/dynamodb, adapters/memory
    LeaseStore          concurrency leases (limits)      adapters/dynamodb, adapters/memory
    ConnectionSender    posts frames to sockets          adapters/apigateway, RecordingSender
    Clock               time and sleeping                adapters/clock, tests' FakeClock
    Metrics             counters                         adapters/metrics
    KeyRing             API keys by id                   adapters/keys
    WakeStore           Durable Streams subscriptions    adapters/dynamodb/wakes, memory_wakes
    WakeQueue           delayed wake jobs                adapters/sqs, memory_wakes
    WebhookPoster       signed webhook POSTs             adapters/webhooks, memory_wakes
    SigningKeys         the webhook signing keys         adapters/signing

Each store has an in-memory twin (tests, and anything that must not touch AWS) and an AWS
adapter; one contract suite (tests/contract) runs against every store implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .core.capabilities import ApiKey
from .core.channels import ChannelMeta
from .core.logs import LogEntry
from .core.messages import NewMessage, StoredMessage
from .core.presence import Member
from .core.producers import ProducerState
from .core.subscriptions import Connection, Handover, Subscription

if TYPE_CHECKING:  # annotations only: the functions that never touch wakes skip its import
    from .core.wakes import IndexEntry, Link, WakeSubscription


class AppendConflictError(Exception):
    """The append's conditions no longer hold (a producer's state, ``Stream-Seq``, a closed
    flag, or a concurrent transaction on one of its items): read again and retry."""


class SeqTakenError(AppendConflictError):
    """A seq the append wanted is taken: the log grew (or ended) meanwhile.

    ``entry`` is what holds the first seq asked for, when the store could tell."""

    def __init__(self, entry: LogEntry | None = None) -> None:
        super().__init__(entry)
        self.entry = entry


class IdsClaimedError(AppendConflictError):
    """Idempotency ids of the append are claimed already: ``claims`` maps each to the seq its
    claim names (its message is there, or the claim is stale: see MessageStore.claim)."""

    def __init__(self, claims: dict[str, int]) -> None:
        super().__init__(claims)
        self.claims = claims


@dataclass(frozen=True)
class AppendGuard:
    """Durable Streams state committed atomically with an append (all optional).

    The append fails with AppendConflictError unless the stream is still open, the producer's
    stored state is still ``producer_before`` (None: no state in this epoch) and the last
    ``Stream-Seq`` is still ``stream_seq_before``, so the caller's validation holds at commit
    time; on conflict it re-reads and re-validates.
    """

    producer: ProducerState | None = None  # the producer's state after this append
    producer_before: ProducerState | None = None
    stream_seq: str | None = None  # the new last Stream-Seq
    stream_seq_before: str | None = None
    close: bool = False  # close the stream after this append's messages (a close marker)

    @property
    def guarded(self) -> bool:
        return self.producer is not None or self.stream_seq is not None or self.close


class ForkSourceChangedError(Exception):
    """A fork's source was deleted or re-created since it was read: read it again."""


class ForkLimitError(Exception):
    """The fork's source has as many forks recorded as it may (``max_forks``)."""


@dataclass(frozen=True)
class ForkRefs:
    """One life (epoch) of a channel's fork bookkeeping, kept in an item of its own.

    ``forks``: every fork recorded (``name epoch``, core/forks.py ``fork_member``), counted
    against the per-stream cap. ``pins``: those made by a principal who may ``admin`` the
    source; while any is listed, deleting the source only soft-deletes it.
    """

    forks: frozenset[str] = frozenset()
    pins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Deletion:
    """What ``delete_channel`` did."""

    soft: bool  # forks still reference the channel: it is marked deleted, not removed


class ChannelExistsError(Exception):
    def __init__(self, existing: ChannelMeta) -> None:
        super().__init__(existing.name)
        self.existing = existing


class SubscriptionLimitError(Exception):
    """The connection holds as many subscriptions as it may."""


class ConnectionGoneError(Exception):
    """The socket behind a connection id is closed (API Gateway's GoneException, 410)."""


class SendThrottledError(Exception):
    """API Gateway refused the post for now (429 LimitExceeded): retry later."""


class SendFailedError(Exception):
    """A post failed for another reason; the fan-out reports the record as failed."""


class MessageStore(Protocol):
    """Channel metadata and logs. A log is a sequence of entries (core/logs.py), each written
    by a conditional put on its seq: nothing here is a counter that writers contend on."""

    def get_channel(self, name: str) -> ChannelMeta | None:
        """Strongly consistent read of the channel's metadata (``head`` is the log's base),
        or None if it does not exist."""

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        """Create ``meta`` if no channel of that name exists; else raise ChannelExistsError."""

    def delete_channel(
        self, meta: ChannelMeta, end_seq: int, purge: bool = False
    ) -> Deletion | None:
        """Delete the channel if it is still in ``meta.epoch`` (else None), ending its log
        with an ``end`` marker at ``end_seq`` in the same atomic step (SeqTakenError if that
        seq is taken: read the tail again). While forks pin it (and unless ``purge``), it is
        only marked deleted (soft) until :meth:`release_fork` removes the last pin; forks
        that do not pin it never hold it. Its fork bookkeeping goes with it."""

    def create_fork(
        self,
        meta: ChannelMeta,
        prefix: StoredMessage | None = None,
        pin: bool = True,
        max_forks: int = 100,
    ) -> ChannelMeta:
        """Create the fork ``meta`` (``meta.fork`` set) and record it in its source's fork
        bookkeeping (never in the source's own item), in one atomic step, with ``prefix`` (a
        partial entry at seq ``meta.head``) in its log. ``pin``: the fork holds its source
        (a delete of the source is then only a soft delete).

        Raises ChannelExistsError if the name is taken, ForkSourceChangedError if the source
        is no longer in ``meta.fork.source_epoch`` or was deleted, ForkLimitError if the
        source has ``max_forks`` forks recorded already.
        """

    def fork_refs(self, name: str, epoch: str) -> ForkRefs:
        """The fork bookkeeping of channel ``(name, epoch)`` (strongly consistent)."""

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        """Drop fork ``member`` from channel ``(name, epoch)``'s bookkeeping (a no-op if it is
        not there). If that leaves a soft-deleted channel without pins, remove it and return
        its metadata (the caller releases its own source in turn); else None."""

    def last_entry(self, name: str, epoch: str) -> LogEntry | None:
        """The entry at the highest seq of log ``(name, epoch)`` (strongly consistent), or
        None if the log holds none."""

    def entry(self, name: str, epoch: str, seq: int) -> LogEntry | None:
        """The entry at ``seq`` (strongly consistent), or None."""

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
        """Atomically store ``messages`` at seqs ``first_seq …`` of ``meta``'s log, each only
        if its seq is free, with the guard's state, and (``claim_ids``) a claim per id: new,
        or replacing the stale claim ``stale_claims[id]`` names.

        Raises SeqTakenError if a seq is taken, IdsClaimedError if an id is claimed,
        AppendConflictError if the guard's conditions fail or a concurrent transaction
        touched the same items.
        """

    def claim(self, meta: ChannelMeta, message_id: str, seq: int, expires_at: int, now_s: int) -> (
        int | None
    ):
        """Claim ``message_id`` for ``seq`` in this epoch: None if the claim is ours now,
        else the seq an existing (unexpired) claim names."""

    def move_claim(self, meta: ChannelMeta, message_id: str, from_seq: int, to_seq: int) -> bool:
        """Point the claim at ``to_seq`` if it still names ``from_seq``."""

    def mark_written(self, meta: ChannelMeta, now_ms: int) -> None:
        """Record, once per epoch, that the log is about to be written (core/logs.py)."""

    def renew_epoch(self, meta: ChannelMeta, new_epoch: str, end_seq: int) -> bool:
        """Move the channel to ``new_epoch`` (its log expired entirely: core/logs.py) if it is
        still in ``meta.epoch``, ending the old log with an ``end`` marker at ``end_seq``."""

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        """Strongly consistent read of a producer's state in this epoch of the channel."""

    def extend_expiry(self, meta: ChannelMeta, stream_expires_at: int) -> None:
        """Push a sliding-TTL stream's expiry later (never earlier), if it is still ``meta``'s
        epoch."""

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        """The seqs that claims of these ids name in this epoch of the channel."""

    def find_tokens(
        self, name: str, epoch: str, tokens: frozenset[str], since_ms: int, most: int
    ) -> dict[str, int]:
        """The seqs of the messages stored with these request tokens among the newest
        entries of the log (one pass), looking back to messages accepted at ``since_ms`` and
        at most ``most`` entries; tokens not there are absent."""

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        """Messages with ``after_seq < seq <= until_seq`` in seq order, at most ``limit``
        (markers are skipped).

        Expired messages may be included (DynamoDB deletes them lazily): callers filter.
        """

    def first_retained(self, name: str, epoch: str, now_s: int, head: int) -> int:
        """The first seq not yet expired, or ``head + 1`` if every message expired."""


class SubscriptionStore(Protocol):
    def put_connection(self, connection: Connection) -> None: ...

    def get_connection(self, connection_id: str) -> Connection | None: ...

    def delete_connection(self, connection_id: str) -> None:
        """Delete the connection and every subscription it holds."""

    def subscribe(self, subscription: Subscription, max_per_connection: int) -> None:
        """Register (or replace) a subscription in the REPLAYING state.

        Raises SubscriptionLimitError if the connection already holds ``max_per_connection``
        subscriptions on other channels.
        """

    def unsubscribe(
        self, channel: str, connection_id: str, received_ms: int | None = None
    ) -> bool:
        """Remove the subscription; with ``received_ms``, only one subscribed no later than
        that (a subscribe sent after an unsubscribe may be handled first)."""

    def note_missed(self, subscription: Subscription, seq: int) -> bool:
        """While it replays, record that the fan-out held back messages up to ``seq`` (the
        highest noted stays); False if it is not replaying (any more)."""

    def go_live(self, subscription: Subscription, after_seq: int) -> Handover:
        """REPLAYING -> LIVE at ``after_seq``, only if nothing noted is past it (BEHIND)."""

    def get_subscription(self, channel: str, connection_id: str) -> Subscription | None: ...

    def subscribers(self, channel: str) -> list[Subscription]:
        """Every subscription on ``channel`` (a Query on the channel key, never a Scan)."""


@runtime_checkable
class LeaseStore(Protocol):
    """Leases that bound how much of something one principal or connection runs at once
    (long-polls, SSE responses, replays), across every Lambda container. A lease lasts until
    it is released or its time passes, so a crashed invocation never holds one for long."""

    def acquire(self, scope: str, lease_id: str, until_s: int, limit: int, now_s: int) -> bool:
        """Hold lease ``lease_id`` of ``scope`` until ``until_s`` (epoch seconds), unless
        ``limit`` leases of the scope that last past ``now_s`` are held already (False)."""

    def release(self, scope: str, lease_id: str) -> None:
        """Give the lease back (a no-op if it is not held)."""


class PresenceStore(Protocol):
    """Presence members (core/presence.py), the channels a connection has members on, and
    the minute buckets the sweeper checks."""

    def put_member(self, member: Member) -> Member | None:
        """Create or replace ``member``; the member as it was, or None if it is new. A
        WebSocket member is also recorded on its connection (:meth:`linked`)."""

    def touch_member(
        self, channel: str, key: str, expires_at: int, updated_ms: int
    ) -> Member | None:
        """A heartbeat: push the member's expiry to ``expires_at``; the member as it was,
        or None (and nothing written) if it is not a member."""

    def remove_member(
        self, channel: str, key: str, expired_by: int | None = None
    ) -> Member | None:
        """Remove the member (with ``expired_by``: only if its expiry is at or before that,
        so a member that heartbeated meanwhile stays); what was removed, or None."""

    def members(self, channel: str) -> list[Member]:
        """The channel's members (a Query on the channel's key), expired ones included."""

    def linked(self, connection_id: str) -> list[str]:
        """The channels on which this connection has members."""

    def mark_due(self, bucket: int, channel: str, key: str, expires_at: int) -> None:
        """Have the sweeper look at this member, due at ``expires_at``, in minute ``bucket``
        (written whenever a member's expiry moves into a new minute)."""

    def due(self, bucket: int, until: int) -> list[tuple[str, str]]:
        """(channel, member key) of the entries of minute ``bucket`` due at or before
        ``until`` (epoch seconds)."""

    def expiries(self, members: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The current expiry of each of these members that still exists."""

    def swept_bucket(self) -> int | None:
        """The first minute the sweeper still looks at (every earlier one was swept after it
        ended); None before the first sweep."""

    def set_swept_bucket(self, bucket: int) -> None:
        """Move :meth:`swept_bucket` forward (never back)."""


class ConnectionSender(Protocol):
    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        """Post one frame; raise ConnectionGoneError, SendThrottledError or SendFailedError."""

    def close(self, endpoint: str, connection_id: str) -> None:
        """Close the socket (its client reconnects); ConnectionGoneError if it is gone."""


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, epoch milliseconds (also what deadlines are measured in)."""

    def sleep(self, seconds: float) -> None: ...


class Metrics(Protocol):
    def count(self, name: str, value: float = 1) -> None:
        """Add ``value`` to the counter ``name`` (flushed once per invocation)."""


class NullMetrics:
    """Counts nothing (tests, and wherever no metrics are wanted)."""

    def count(self, name: str, value: float = 1) -> None:
        pass


NO_METRICS: Metrics = NullMetrics()


class KeyRing(Protocol):
    def get(self, key_id: str) -> ApiKey | None:
        """The API key with this id, or None."""


# -- Durable Streams subscriptions (core/wakes.py, services/wakes.py) ------------------------


class WakeStore(Protocol):
    """Wake subscriptions, their per-stream links and the index the stream consumer reads.

    A subscription's configuration and delivery state change only by compare-and-set on its
    ``version``; links change by monotone single-item updates (tails up, acks up).
    """

    def create(self, sub: WakeSubscription) -> bool:
        """Store a new subscription (version 1) and its pattern index entry, if no
        subscription has that id; False if one has."""

    def get(self, sub_id: str) -> WakeSubscription | None:
        """Strongly consistent read."""

    def list_ids(self, after: str | None, limit: int) -> list[str]:
        """Subscription ids in order, after ``after``, at most ``limit``."""

    def save(
        self, sub: WakeSubscription, expected_version: int,
        unchanged: Mapping[str, str | None] | None = None,
    ) -> bool:
        """Replace the subscription (``version`` becomes ``expected_version + 1``) if it is
        still at ``expected_version`` and every link named in ``unchanged`` still has that
        tail (channel -> tail; None: the link must not exist); False otherwise. Atomic."""

    def delete(self, sub: WakeSubscription) -> None:
        """Remove the subscription, its index entries and its links."""

    def matching(self, channel: str) -> list[IndexEntry]:
        """Index entries that may cover ``channel``: patterns of its namespace (the caller
        matches them) and explicit links of exactly this channel."""

    def link_explicit(self, sub: WakeSubscription, channel: str, at: str) -> Link:
        """Link ``channel`` explicitly (a new link starts acked at ``at``); idempotent."""

    def unlink_explicit(self, sub: WakeSubscription, channel: str) -> None:
        """Remove the explicit link (a glob link of the same stream stays); idempotent."""

    def advance(
        self, sub_id: str, incarnation: str, channel: str, tail: str,
        new_acked: str | None = None,
    ) -> Link | None:
        """Raise the link's tail to ``tail`` (never lower it); a missing link is created (as
        a glob link acked at ``new_acked``) only when ``new_acked`` is given. The link as it
        is afterwards, or None if it does not exist."""

    def ack(self, sub_id: str, incarnation: str, channel: str, offset: str) -> Link | None:
        """Move the link's acked offset up to ``offset`` (never down, never past the tail);
        the link after, or None if it is missing."""

    def links(
        self, sub_id: str, incarnation: str, channels: Sequence[str] | None = None,
    ) -> dict[str, Link]:
        """The links of these channels (all of them when None), strongly consistent."""


class WakeQueue(Protocol):
    def send(self, job: str, delay_ms: int) -> None:
        """Deliver ``job`` (a JSON document) to the wake job handler after ``delay_ms``
        (at most 15 minutes), at least once."""


@dataclass(frozen=True)
class WebhookResponse:
    status: int  # 0 when no HTTP answer came (refused, timed out, unsafe address)
    body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """POST ``body``; never raises for the receiver's failures (they are the answer)."""


class SigningKeys(Protocol):
    def sign(self, message: bytes) -> tuple[str, bytes]:
        """(kid, Ed25519 signature) with the active key."""

    def active_kid(self) -> str: ...

    def jwks(self) -> dict[str, object]:
        """Every published public key (active and not yet retired), as a JWK set."""

    def token_keys(self) -> list[bytes]:
        """HMAC keys for wake tokens: the first signs, any verifies."""
