"""One contract, every store: the in-memory twin and DynamoDB (on moto) must agree.

The services rely on exactly these behaviours; a new store implementation passes this file
before anything else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.core.channels import ChannelMeta
from chalicelib.core.messages import NewMessage
from chalicelib.core.subscriptions import Connection, Subscription, SubscriptionState
from chalicelib.ports import (
    AppendConflictError,
    ChannelExistsError,
    GoLive,
    SubscriptionLimitError,
)
from tests.support.aws import dynamo_store, moto_dynamodb

EPOCH = "019ad0392f80a540"
TS = 1_764_430_000_000


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        with moto_dynamodb() as client:
            yield dynamo_store(client)


def meta(name: str = "runs:1", epoch: str = EPOCH, head: int = 0, **kw: Any) -> ChannelMeta:
    return ChannelMeta(name=name, epoch=epoch, head=head, created_ms=TS, retention_s=3600, **kw)


def sub(channel: str = "runs:1", cid: str = "c1", after: int = 0, epoch: str = EPOCH) -> (
    Subscription
):
    return Subscription(
        channel=channel, connection_id=cid, endpoint="https://gw/api", epoch=epoch,
        after_seq=after, state=SubscriptionState.REPLAYING, expires_at=2_000_000_000,
    )


def conn(cid: str = "c1") -> Connection:
    return Connection(cid, "https://gw/api", TS, 2_000_000_000, principal=None)


# -- channels -------------------------------------------------------------------------------


def test_create_then_get_returns_the_same_metadata(store: Any) -> None:
    created = store.create_channel(meta(expires_at=2_000_000_000, ttl_s=60))
    assert store.get_channel("runs:1") == created


def test_get_of_a_missing_channel_is_none(store: Any) -> None:
    assert store.get_channel("nope") is None


def test_create_twice_raises_with_the_existing_channel(store: Any) -> None:
    store.create_channel(meta())
    with pytest.raises(ChannelExistsError) as info:
        store.create_channel(meta(epoch="019ad0392f80ffff"))
    assert info.value.existing.epoch == EPOCH


def test_delete_only_the_epoch_it_was_given(store: Any) -> None:
    store.create_channel(meta())
    assert not store.delete_channel(meta(epoch="019ad0392f80ffff"))
    assert store.delete_channel(meta())
    assert store.get_channel("runs:1") is None
    assert not store.delete_channel(meta())


# -- append and read ------------------------------------------------------------------------


def test_append_assigns_consecutive_seqs_and_moves_the_head(store: Any) -> None:
    store.create_channel(meta())
    first = store.append(meta(), [NewMessage(b'"a"'), NewMessage(b'"b"', id="k")], TS, 99)
    assert [m.seq for m in first] == [1, 2]
    second = store.append(meta(head=2), [NewMessage(b'"c"', publisher="p")], TS + 1, 99)
    assert second[0].seq == 3 and second[0].publisher == "p"
    assert store.get_channel("runs:1").head == 3
    read = store.read("runs:1", EPOCH, 0, 10)
    assert [(m.seq, m.body, m.id) for m in read] == [(1, b'"a"', None), (2, b'"b"', "k"),
                                                     (3, b'"c"', None)]
    assert read[2].ts == TS + 1 and read[2].expires_at == 99


def test_append_with_a_stale_head_conflicts_and_stores_nothing(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"1")], TS, 99)
    with pytest.raises(AppendConflictError):
        store.append(meta(head=0), [NewMessage(b"2")], TS, 99)
    assert [m.seq for m in store.read("runs:1", EPOCH, 0, 10)] == [1]


def test_append_to_another_epoch_conflicts(store: Any) -> None:
    store.create_channel(meta())
    with pytest.raises(AppendConflictError):
        store.append(meta(epoch="019ad0392f80ffff"), [NewMessage(b"1")], TS, 99)


def test_append_to_a_deleted_channel_conflicts(store: Any) -> None:
    store.create_channel(meta())
    store.delete_channel(meta())
    with pytest.raises(AppendConflictError):
        store.append(meta(), [NewMessage(b"1")], TS, 99)


def test_an_id_is_claimed_once_per_epoch(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"1", id="dup")], TS, 99)
    with pytest.raises(AppendConflictError):
        store.append(meta(head=1), [NewMessage(b"2", id="dup")], TS, 99)
    assert store.get_channel("runs:1").head == 1  # the whole transaction rolled back
    assert store.find_ids(meta(head=1), ["dup", "other"]) == {"dup": 1}


def test_ids_of_an_old_epoch_do_not_count(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"1", id="dup")], TS, 99)
    store.delete_channel(meta())
    fresh = meta(epoch="019ad0392f80ffff")
    store.create_channel(fresh)
    assert store.find_ids(fresh, ["dup"]) == {}
    assert store.append(fresh, [NewMessage(b"1", id="dup")], TS, 99)[0].seq == 1


def test_read_pages_by_seq_and_stops_at_until(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), [NewMessage(str(i).encode()) for i in range(1, 8)], TS, 99)
    assert [m.seq for m in store.read("runs:1", EPOCH, 2, 3)] == [3, 4, 5]
    assert [m.seq for m in store.read("runs:1", EPOCH, 2, 10, until_seq=4)] == [3, 4]
    assert store.read("runs:1", EPOCH, 7, 10) == []
    assert store.read("runs:1", "019ad0392f80ffff", 0, 10) == []


def test_first_retained_skips_expired_messages(store: Any) -> None:
    store.create_channel(meta())
    head = meta()
    for expires in (100, 100, 100, 200, 200):
        head = head.with_head(store.append(head, [NewMessage(b"x")], TS, expires)[-1].seq)
    assert store.first_retained("runs:1", EPOCH, 50, 5) == 1
    assert store.first_retained("runs:1", EPOCH, 150, 5) == 4
    assert store.first_retained("runs:1", EPOCH, 250, 5) == 6
    assert store.first_retained("other", EPOCH, 0, 0) == 1


def test_concurrent_appends_never_share_or_skip_a_seq(store: Any) -> None:
    store.create_channel(meta())
    won: list[int] = []
    lock = threading.Lock()

    def publisher(n: int) -> None:
        for i in range(10):
            while True:
                current = store.get_channel("runs:1")
                try:
                    stored = store.append(current, [NewMessage(f"{n}-{i}".encode())], TS, 99)
                except AppendConflictError:
                    continue
                with lock:
                    won.append(stored[0].seq)
                break

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == list(range(1, 41))
    assert [m.seq for m in store.read("runs:1", EPOCH, 0, 100)] == list(range(1, 41))


# -- connections and subscriptions ----------------------------------------------------------


def test_connection_round_trip_and_delete(store: Any) -> None:
    store.put_connection(conn())
    assert store.get_connection("c1") == conn()
    store.delete_connection("c1")
    assert store.get_connection("c1") is None


def test_subscribe_registers_replaying_and_subscribers_lists_it(store: Any) -> None:
    store.put_connection(conn())
    store.subscribe(sub(after=4), 10)
    (found,) = store.subscribers("runs:1")
    assert found.state is SubscriptionState.REPLAYING and found.after_seq == 4
    assert store.subscribers("runs:2") == []


def test_go_live_only_while_the_head_is_unchanged(store: Any) -> None:
    store.create_channel(meta())
    store.put_connection(conn())
    store.subscribe(sub(), 10)
    store.append(meta(), [NewMessage(b"1")], TS, 99)
    assert store.go_live(sub(), 0) is GoLive.HEAD_MOVED
    assert store.subscribers("runs:1")[0].state is SubscriptionState.REPLAYING
    assert store.go_live(sub(), 1) is GoLive.LIVE
    (live,) = store.subscribers("runs:1")
    assert live.state is SubscriptionState.LIVE and live.after_seq == 1


def test_go_live_after_unsubscribe_reports_gone(store: Any) -> None:
    store.create_channel(meta())
    store.put_connection(conn())
    store.subscribe(sub(), 10)
    assert store.unsubscribe("runs:1", "c1")
    assert not store.unsubscribe("runs:1", "c1")
    assert store.go_live(sub(), 0) is GoLive.GONE


def test_subscription_limit_counts_distinct_channels(store: Any) -> None:
    store.put_connection(conn())
    store.subscribe(sub("a:1"), 2)
    store.subscribe(sub("a:2"), 2)
    store.subscribe(sub("a:2"), 2)  # re-subscribing the same channel is not another one
    with pytest.raises(SubscriptionLimitError):
        store.subscribe(sub("a:3"), 2)
    store.unsubscribe("a:1", "c1")
    store.subscribe(sub("a:3"), 2)


def test_delete_connection_removes_its_subscriptions_only(store: Any) -> None:
    for cid in ("c1", "c2"):
        store.put_connection(conn(cid))
        store.subscribe(sub("a:1", cid), 10)
        store.subscribe(sub("a:2", cid), 10)
    store.delete_connection("c1")
    assert [s.connection_id for s in store.subscribers("a:1")] == ["c2"]
    assert [s.connection_id for s in store.subscribers("a:2")] == ["c2"]


# -- Durable Streams: producer state, Stream-Seq, close, sliding TTL (AppendGuard) ---------


def _guard(**kw: Any) -> Any:
    from chalicelib.ports import AppendGuard

    return AppendGuard(**kw)


def _state(epoch: int, seq: int, producer_id: str = "p1") -> Any:
    from chalicelib.core.producers import ProducerState

    return ProducerState(producer_id, epoch, seq)


def test_producer_state_commits_with_the_append(store: Any) -> None:
    store.create_channel(meta())
    assert store.get_producer(meta(), "p1") is None
    store.append(meta(), [NewMessage(b"a")], TS, 9_999_999_999, guard=_guard(
        producer=_state(0, 0), producer_before=None, stream_seq="001",
    ))
    assert store.get_producer(meta(), "p1") == _state(0, 0)
    assert store.get_channel("runs:1").stream_seq == "001"
    assert store.get_channel("runs:1").head == 1


def test_a_moved_producer_state_conflicts_and_stores_nothing(store: Any) -> None:
    from chalicelib.ports import AppendConflictError

    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"a")], TS, 9_999_999_999,
                 guard=_guard(producer=_state(0, 0), producer_before=None))
    # Validated against "no state" (a stale read): the conditional write refuses it.
    with pytest.raises(AppendConflictError):
        store.append(meta(head=1), [NewMessage(b"b")], TS, 9_999_999_999,
                     guard=_guard(producer=_state(0, 0), producer_before=None))
    assert store.get_channel("runs:1").head == 1
    assert store.get_producer(meta(), "p1") == _state(0, 0)


def test_producer_state_of_an_old_epoch_does_not_count(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"a")], TS, 9_999_999_999,
                 guard=_guard(producer=_state(3, 7), producer_before=None))
    store.delete_channel(meta(head=1))
    reborn = meta(epoch="019ad0392f80ffff")
    store.create_channel(reborn)
    assert store.get_producer(reborn, "p1") is None


def test_a_closed_stream_refuses_guarded_appends(store: Any) -> None:
    from chalicelib.ports import AppendConflictError

    store.create_channel(meta())
    store.append(meta(), [], TS, 9_999_999_999, guard=_guard(close=True))
    closed = store.get_channel("runs:1")
    assert closed.closed and closed.head == 0
    with pytest.raises(AppendConflictError):
        store.append(closed, [NewMessage(b"late")], TS, 9_999_999_999, guard=_guard())


def test_extend_expiry_only_moves_later(store: Any) -> None:
    store.create_channel(meta(expires_at=2_000_000_000, ttl_s=60))
    store.extend_expiry(meta(), 2_000_000_100)
    store.extend_expiry(meta(), 2_000_000_050)
    assert store.get_channel("runs:1").expires_at == 2_000_000_100


# -- Forks: create_fork, soft delete, release_fork (core/forks.py) ---------------------------

FORK_EPOCH = "019ad0392f80b000"


def _fork_meta(name: str = "f:1", source: str = "runs:1", at: int = 1, head: int | None = None,
               epoch: str = FORK_EPOCH, source_epoch: str = EPOCH) -> ChannelMeta:
    from chalicelib.core.forks import Ancestor, ForkOrigin

    origin = ForkOrigin(source, source_epoch, at, 0, (Ancestor(source, source_epoch, at),))
    return meta(name=name, epoch=epoch, head=at if head is None else head, fork=origin)


def _stored(name: str, epoch: str, seq: int, body: bytes) -> Any:
    from chalicelib.core.messages import StoredMessage

    return StoredMessage(name, epoch, seq, body, TS, 9_999_999_999)


def test_create_fork_records_it_in_the_source_and_round_trips_its_origin(store: Any) -> None:
    from chalicelib.core.forks import fork_member

    store.create_channel(meta())
    store.append(meta(), [NewMessage(b"ab")], TS, 9_999_999_999)
    fork = _fork_meta(head=2)
    prefix = _stored("f:1", FORK_EPOCH, 2, b"par")
    assert store.create_fork(fork, prefix) == fork
    assert store.get_channel("f:1") == fork
    assert store.get_channel("runs:1").forks == {fork_member("f:1", FORK_EPOCH)}
    # The partial entry is the fork's own seq 2; seq 1 stays in the source's log.
    assert [m.body for m in store.read("f:1", FORK_EPOCH, 0, 10)] == [b"par"]
    assert [m.body for m in store.read("runs:1", EPOCH, 0, 10)] == [b"ab"]


def test_create_fork_refuses_a_taken_name_or_a_changed_source(store: Any) -> None:
    from chalicelib.ports import ForkSourceChangedError

    store.create_channel(meta())
    store.create_channel(meta(name="f:1", epoch="019ad0392f80c000"))
    with pytest.raises(ChannelExistsError):
        store.create_fork(_fork_meta())
    with pytest.raises(ForkSourceChangedError):  # the source is in another epoch now
        store.create_fork(_fork_meta(name="f:2", source_epoch="019ad0392f80ffff"))
    with pytest.raises(ForkSourceChangedError):  # no such source
        store.create_fork(_fork_meta(name="f:3", source="runs:none"))
    assert store.get_channel("f:2") is None and store.get_channel("f:3") is None
    assert store.get_channel("runs:1").forks == frozenset()


def test_a_source_with_forks_is_soft_deleted_refuses_appends_and_new_forks(store: Any) -> None:
    from chalicelib.ports import ForkSourceChangedError

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    deletion = store.delete_channel(meta())
    assert deletion is not None and deletion.soft
    kept = store.get_channel("runs:1")
    assert kept.deleted and kept.epoch == EPOCH
    with pytest.raises(AppendConflictError):
        store.append(meta(), [NewMessage(b"late")], TS, 9_999_999_999)
    with pytest.raises(ForkSourceChangedError):
        store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))


def test_releasing_the_last_fork_collects_a_soft_deleted_source(store: Any) -> None:
    from chalicelib.core.forks import fork_member

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))
    store.delete_channel(meta())
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    assert store.get_channel("runs:1").deleted
    collected = store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000"))
    assert collected is not None and collected.name == "runs:1" and collected.deleted
    assert store.get_channel("runs:1") is None
    # Releasing from a channel that is gone, or in another epoch, is a no-op.
    assert store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000")) is None


def test_release_keeps_a_live_source_and_purge_ignores_forks(store: Any) -> None:
    from chalicelib.core.forks import fork_member

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    live = store.get_channel("runs:1")
    assert not live.deleted and live.forks == frozenset()
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))
    deletion = store.delete_channel(meta(), purge=True)
    assert deletion is not None and not deletion.soft
    assert store.get_channel("runs:1") is None
    assert store.delete_channel(meta()) is None
