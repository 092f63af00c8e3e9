"""The ports: everything the services need from the outside world, as structural interfaces.

    MessageStore        channel metadata and logs        adapters/dynamodb, adapters/memory
    SubscriptionStore   connections and subscriptions    adapters/dynamodb, adapters/memory
    ConnectionSender    posts frames to sockets          adapters/apigateway, RecordingSender
    Clock               time and sleeping                adapters/clock, tests' FakeClock
    Metrics             counters                         adapters/metrics
    KeyRing             API keys by id                   adapters/keys

Each store has an in-memory twin (tests, and anything that must not touch AWS) and an AWS
adapter; one contract suite (tests/contract) runs against every store implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .core.capabilities import ApiKey
from .core.channels import ChannelMeta
from .core.messages import NewMessage, StoredMessage
from .core.producers import ProducerState
from .core.subscriptions import Connection, Subscription


class AppendConflictError(Exception):
    """The channel moved (head, epoch or a claimed id) since it was read: read and retry."""


@dataclass(frozen=True)
class AppendGuard:
    """Durable Streams state committed atomically with an append (all optional).

    The append fails with AppendConflictError unless the stream is still open and the
    producer's stored state is still ``producer_before`` (None: no state in this epoch), so
    the caller's validation holds at commit time; on conflict it re-reads and re-validates.
    """

    producer: ProducerState | None = None  # the producer's state after this append
    producer_before: ProducerState | None = None
    stream_seq: str | None = None  # the new last Stream-Seq
    close: bool = False  # close the stream with this append (messages may be empty)
    stream_expires_at: int | None = None  # the new expiry of a stream with a sliding TTL


class ForkSourceChangedError(Exception):
    """A fork's source was deleted or re-created since it was read: read it again."""


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


class GoLive(Enum):
    LIVE = "live"  # switched: the fan-out now delivers seqs after the head
    HEAD_MOVED = "head_moved"  # the channel grew meanwhile: replay the rest and try again
    GONE = "gone"  # the subscription or channel disappeared (unsubscribe, disconnect, delete)


class ConnectionGoneError(Exception):
    """The socket behind a connection id is closed (API Gateway's GoneException, 410)."""


class SendThrottledError(Exception):
    """API Gateway refused the post for now (429 LimitExceeded): retry later."""


class SendFailedError(Exception):
    """A post failed for another reason; the fan-out reports the record as failed."""


class MessageStore(Protocol):
    def get_channel(self, name: str) -> ChannelMeta | None:
        """Strongly consistent read of the channel's metadata, or None if it does not exist."""

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        """Create ``meta`` if no channel of that name exists; else raise ChannelExistsError."""

    def delete_channel(self, meta: ChannelMeta, purge: bool = False) -> Deletion | None:
        """Delete the channel if it is still in ``meta.epoch`` (else None); its log becomes
        unreachable. While forks reference it (and unless ``purge``), it is only marked
        deleted (soft) and kept until :meth:`release_fork` removes the last reference."""

    def create_fork(self, meta: ChannelMeta, prefix: StoredMessage | None = None) -> ChannelMeta:
        """Create the fork ``meta`` (``meta.fork`` set) and record it in its source, in one
        atomic step, with ``prefix`` (a partial entry at seq ``meta.head``) in its log.

        Raises ChannelExistsError if the name is taken, ForkSourceChangedError if the source
        is no longer in ``meta.fork.source_epoch`` or was deleted.
        """

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        """Drop fork ``member`` from channel ``(name, epoch)``'s references. If that leaves a
        soft-deleted channel unreferenced, remove it and return its metadata (the caller
        releases its own source in turn); else None."""

    def append(
        self,
        meta: ChannelMeta,
        messages: Sequence[NewMessage],
        ts: int,
        expires_at: int,
        guard: AppendGuard | None = None,
    ) -> list[StoredMessage]:
        """Atomically store ``messages`` at seqs ``meta.head + 1 …`` and claim their ids.

        Raises AppendConflictError if the head or epoch moved or an id is already claimed;
        with a ``guard``, also if the stream was closed or the producer's state moved.
        """

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        """Strongly consistent read of a producer's state in this epoch of the channel."""

    def extend_expiry(self, meta: ChannelMeta, stream_expires_at: int) -> None:
        """Push a sliding-TTL stream's expiry later (never earlier), if it is still ``meta``'s
        epoch."""

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        """The seqs of ids already published in this epoch of the channel."""

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        """Messages with ``after_seq < seq <= until_seq`` in seq order, at most ``limit``.

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

    def unsubscribe(self, channel: str, connection_id: str) -> bool: ...

    def go_live(self, subscription: Subscription, head: int) -> GoLive:
        """Switch to LIVE with ``after_seq = head`` if the channel's head is still ``head``."""

    def subscribers(self, channel: str) -> list[Subscription]:
        """Every subscription on ``channel`` (a Query on the channel key, never a Scan)."""


class ConnectionSender(Protocol):
    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        """Post one frame; raise ConnectionGoneError, SendThrottledError or SendFailedError."""


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
