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
from chalicelib.core.logs import EntryKind, LogEntry
from chalicelib.core.messages import NewMessage
from chalicelib.core.subscriptions import (
    Connection,
    Handover,
    Subscription,
    SubscriptionState,
)
from chalicelib.ports import (
    AppendConflictError,
    ChannelExistsError,
    IdsClaimedError,
    SeqTakenError,
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
    assert not store.delete_channel(meta(epoch="019ad0392f80ffff"), 1)
    assert store.delete_channel(meta(), 1)
    assert store.get_channel("runs:1") is None
    assert not store.delete_channel(meta(), 1)


# -- the log: entries at seqs, each taken once ----------------------------------------------


def test_append_writes_at_the_seqs_asked_and_reads_them_back(store: Any) -> None:
    store.create_channel(meta())
    assert store.last_entry("runs:1", EPOCH) is None
    first = store.append(meta(), 1, [NewMessage(b'"a"'), NewMessage(b'"b"', id="k")], TS, 99)
    assert [m.seq for m in first] == [1, 2]
    second = store.append(meta(), 3, [NewMessage(b'"c"', publisher="p")], TS + 1, 99)
    assert second[0].seq == 3 and second[0].publisher == "p"
    assert store.last_entry("runs:1", EPOCH) == LogEntry(3)
    assert store.entry("runs:1", EPOCH, 2) == LogEntry(2, EntryKind.MESSAGE, "k")
    assert store.entry("runs:1", EPOCH, 4) is None
    read = store.read("runs:1", EPOCH, 0, 10)
    assert [(m.seq, m.body, m.id) for m in read] == [(1, b'"a"', None), (2, b'"b"', "k"),
                                                     (3, b'"c"', None)]
    assert read[2].ts == TS + 1 and read[2].expires_at == 99
    # The channel's item is not touched by appends: its head stays the log's base.
    assert store.get_channel("runs:1").head == 0


def test_a_taken_seq_refuses_the_append_and_names_its_entry(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"1", id="first")], TS, 99)
    with pytest.raises(SeqTakenError) as taken:
        store.append(meta(), 1, [NewMessage(b"2")], TS, 99, claim_ids=False)
    assert taken.value.entry == LogEntry(1, EntryKind.MESSAGE, "first")
    # A batch that would overlap stores nothing at all.
    with pytest.raises(SeqTakenError):
        store.append(meta(), 0, [NewMessage(b"0"), NewMessage(b"x")], TS, 99)
    assert [m.seq for m in store.read("runs:1", EPOCH, -1, 10)] == [1]


def test_logs_of_other_epochs_are_separate(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"1")], TS, 99)
    other = meta(epoch="019ad0392f80ffff")
    assert store.append(other, 1, [NewMessage(b"1")], TS, 99)[0].seq == 1
    assert store.read("runs:1", "019ad0392f80ffff", 0, 10)[0].epoch == "019ad0392f80ffff"


def test_a_deleted_log_ends_with_a_marker_nobody_writes_past(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"1")], TS, 99)
    with pytest.raises(SeqTakenError):  # the end must follow the last entry
        store.delete_channel(meta(), 1)
    assert store.delete_channel(meta(), 2)
    assert store.last_entry("runs:1", EPOCH) == LogEntry(2, EntryKind.END)
    with pytest.raises(SeqTakenError) as taken:
        store.append(meta(), 2, [NewMessage(b"late")], TS, 99)  # a stale publisher
    assert taken.value.entry is not None and taken.value.entry.kind is EntryKind.END
    assert [m.seq for m in store.read("runs:1", EPOCH, 0, 10)] == [1]


def test_an_id_is_claimed_once_per_epoch(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"1", id="dup")], TS, 99_999_999_999)
    with pytest.raises(IdsClaimedError) as claimed:
        store.append(meta(), 2, [NewMessage(b"2", id="dup"), NewMessage(b"3")], TS,
                     99_999_999_999)
    assert claimed.value.claims == {"dup": 1}
    assert store.last_entry("runs:1", EPOCH) == LogEntry(1, EntryKind.MESSAGE, "dup")
    assert store.find_ids(meta(), ["dup", "other"]) == {"dup": 1}


def test_a_stale_claim_is_replaced_only_when_named(store: Any) -> None:
    store.create_channel(meta())
    # A publisher claimed "x" for seq 1 and died before writing it; seq 1 went to another.
    assert store.claim(meta(), "x", 1, 99_999_999_999, TS // 1000) is None
    store.append(meta(), 1, [NewMessage(b"other")], TS, 99_999_999_999)
    with pytest.raises(IdsClaimedError):
        store.append(meta(), 2, [NewMessage(b"x", id="x"), NewMessage(b"y")], TS,
                     99_999_999_999)
    stored = store.append(meta(), 2, [NewMessage(b"x", id="x"), NewMessage(b"y")], TS,
                          99_999_999_999, stale_claims={"x": 1})
    assert [m.seq for m in stored] == [2, 3]
    assert store.find_ids(meta(), ["x"]) == {"x": 2}


def test_claims_are_taken_once_moved_only_from_where_they_point_and_expire(store: Any) -> None:
    store.create_channel(meta())
    now_s = TS // 1000
    assert store.claim(meta(), "a", 5, now_s + 60, now_s) is None
    assert store.claim(meta(), "a", 6, now_s + 60, now_s) == 5
    assert not store.move_claim(meta(), "a", 6, 7)
    assert store.move_claim(meta(), "a", 5, 7)
    assert store.find_ids(meta(), ["a"]) == {"a": 7}
    # Past its retention the id is free again.
    assert store.claim(meta(), "a", 9, now_s + 600, now_s + 61) is None
    assert store.find_ids(meta(), ["a"]) == {"a": 9}


def test_ids_of_an_old_epoch_do_not_count(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"1", id="dup")], TS, 99_999_999_999)
    store.delete_channel(meta(), 2)
    fresh = meta(epoch="019ad0392f80ffff")
    store.create_channel(fresh)
    assert store.find_ids(fresh, ["dup"]) == {}
    assert store.append(fresh, 1, [NewMessage(b"1", id="dup")], TS, 99)[0].seq == 1


def test_find_token_looks_back_over_the_newest_entries_only(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"old", token="t-old")], TS - 600_000, 99)
    for seq in range(2, 6):
        store.append(meta(), seq, [NewMessage(b"x", token=f"t{seq}")], TS, 99)
    def find(*tokens: str, most: int = 10) -> dict[str, int]:
        return dict(store.find_tokens("runs:1", EPOCH, frozenset(tokens), TS - 1000, most))

    assert find("t3") == {"t3": 3}
    assert find("t5", "nope", "t2") == {"t5": 5, "t2": 2}
    assert find("nope") == {}
    # Older than the window, or beyond the entries it may read: not found.
    assert find("t-old") == {}
    assert find("t2", "t5", most=2) == {"t5": 5}
    assert store.read("runs:1", EPOCH, 0, 1)[0].token == "t-old"


def test_read_pages_by_seq_and_stops_at_until(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(str(i).encode()) for i in range(1, 8)], TS, 99)
    assert [m.seq for m in store.read("runs:1", EPOCH, 2, 3)] == [3, 4, 5]
    assert [m.seq for m in store.read("runs:1", EPOCH, 2, 10, until_seq=4)] == [3, 4]
    assert store.read("runs:1", EPOCH, 7, 10) == []
    assert store.read("runs:1", "019ad0392f80ffff", 0, 10) == []


def test_first_retained_skips_expired_messages(store: Any) -> None:
    store.create_channel(meta())
    for seq, expires in enumerate((100, 100, 100, 200, 200), start=1):
        store.append(meta(), seq, [NewMessage(b"x")], TS, expires)
    assert store.first_retained("runs:1", EPOCH, 50, 5) == 1
    assert store.first_retained("runs:1", EPOCH, 150, 5) == 4
    assert store.first_retained("runs:1", EPOCH, 250, 5) == 6
    assert store.first_retained("other", EPOCH, 0, 0) == 1


def test_written_is_recorded_once_and_a_renewed_epoch_remembers_the_old_one(store: Any) -> None:
    store.create_channel(meta())
    store.mark_written(meta(), TS)
    store.mark_written(meta(), TS + 5)
    assert store.get_channel("runs:1").written_ms == TS
    assert store.renew_epoch(meta(), "019ad0392f80eeee", 1)
    renewed = store.get_channel("runs:1")
    assert (renewed.epoch, renewed.previous_epoch, renewed.written_ms) == (
        "019ad0392f80eeee", EPOCH, None)
    assert store.last_entry("runs:1", EPOCH) == LogEntry(1, EntryKind.END)
    assert not store.renew_epoch(meta(), "019ad0392f80dddd", 1)  # not in that epoch now


def test_concurrent_appends_at_the_tail_never_share_or_skip_a_seq(store: Any) -> None:
    store.create_channel(meta())
    won: list[int] = []
    lock = threading.Lock()

    def publisher(n: int) -> None:
        for i in range(10):
            while True:
                last = store.last_entry("runs:1", EPOCH)
                seq = (last.seq if last else 0) + 1
                try:
                    store.append(meta(), seq, [NewMessage(f"{n}-{i}".encode())], TS, 99)
                except SeqTakenError:
                    continue
                with lock:
                    won.append(seq)
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


def test_a_subscription_goes_live_only_past_what_the_fan_out_held_back(store: Any) -> None:
    store.put_connection(conn())
    store.subscribe(sub(after=2), 10)
    assert store.note_missed(sub(), 7)
    assert store.note_missed(sub(), 5)  # the highest noted stays
    assert store.get_subscription("runs:1", "c1").missed == 7
    assert store.go_live(sub(), 6) is Handover.BEHIND
    assert store.get_subscription("runs:1", "c1").state is SubscriptionState.REPLAYING
    assert store.go_live(sub(), 7) is Handover.LIVE
    (live,) = store.subscribers("runs:1")
    assert (live.state, live.after_seq) == (SubscriptionState.LIVE, 7)
    assert not store.note_missed(sub(), 9)  # live: the fan-out delivers instead
    assert store.go_live(sub(), 9) is Handover.GONE


def test_transitions_of_a_gone_or_other_epoch_subscription_fail(store: Any) -> None:
    store.put_connection(conn())
    store.subscribe(sub(), 10)
    assert store.go_live(sub(epoch="019ad0392f80ffff"), 1) is Handover.GONE
    assert store.unsubscribe("runs:1", "c1")
    assert not store.unsubscribe("runs:1", "c1")
    assert not store.note_missed(sub(), 1)
    assert store.go_live(sub(), 1) is Handover.GONE
    assert store.get_subscription("runs:1", "c1") is None


def test_an_unsubscribe_removes_only_subscriptions_received_before_it(store: Any) -> None:
    from dataclasses import replace

    store.put_connection(conn())
    store.subscribe(replace(sub(), since_ms=TS + 10), 10)
    # An unsubscribe sent before that subscribe, handled after it: the subscription stays.
    assert not store.unsubscribe("runs:1", "c1", received_ms=TS + 5)
    assert [s.since_ms for s in store.subscribers("runs:1")] == [TS + 10]
    assert store.unsubscribe("runs:1", "c1", received_ms=TS + 20)
    assert store.subscribers("runs:1") == []


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
    store.append(meta(), 1, [NewMessage(b"a")], TS, 9_999_999_999, guard=_guard(
        producer=_state(0, 0), producer_before=None, stream_seq="001",
    ))
    assert store.get_producer(meta(), "p1") == _state(0, 0)
    assert store.get_channel("runs:1").stream_seq == "001"
    assert store.last_entry("runs:1", EPOCH) == LogEntry(1)
    # Stream-Seq commits only over the value it was checked against.
    with pytest.raises(AppendConflictError):
        store.append(meta(), 2, [NewMessage(b"b")], TS, 9_999_999_999,
                     guard=_guard(stream_seq="002", stream_seq_before=None))


def test_a_moved_producer_state_conflicts_and_stores_nothing(store: Any) -> None:
    from chalicelib.ports import AppendConflictError

    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"a")], TS, 9_999_999_999,
                 guard=_guard(producer=_state(0, 0), producer_before=None))
    # Validated against "no state" (a stale read): the conditional write refuses it.
    with pytest.raises(AppendConflictError):
        store.append(meta(), 2, [NewMessage(b"b")], TS, 9_999_999_999,
                     guard=_guard(producer=_state(0, 0), producer_before=None))
    assert store.last_entry("runs:1", EPOCH) == LogEntry(1)
    assert store.get_producer(meta(), "p1") == _state(0, 0)


def test_producer_state_of_an_old_epoch_does_not_count(store: Any) -> None:
    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"a")], TS, 9_999_999_999,
                 guard=_guard(producer=_state(3, 7), producer_before=None))
    store.delete_channel(meta(), 2)
    reborn = meta(epoch="019ad0392f80ffff")
    store.create_channel(reborn)
    assert store.get_producer(reborn, "p1") is None


def test_a_closed_stream_refuses_guarded_appends(store: Any) -> None:
    from chalicelib.ports import AppendConflictError

    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"a")], TS, 9_999_999_999, guard=_guard(close=True))
    closed = store.get_channel("runs:1")
    assert closed.closed
    assert store.last_entry("runs:1", EPOCH) == LogEntry(2, EntryKind.CLOSE)
    with pytest.raises(AppendConflictError):
        store.append(closed, 3, [NewMessage(b"late")], TS, 9_999_999_999,
                     guard=_guard(stream_seq="9"))
    # A publisher that missed the close runs into its marker.
    with pytest.raises(SeqTakenError):
        store.append(meta(), 2, [NewMessage(b"late")], TS, 9_999_999_999)


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
    from chalicelib.ports import ForkRefs

    store.create_channel(meta())
    store.append(meta(), 1, [NewMessage(b"ab")], TS, 9_999_999_999)
    source_item = store.get_channel("runs:1")
    fork = _fork_meta(head=2)
    prefix = _stored("f:1", FORK_EPOCH, 2, b"par")
    assert store.create_fork(fork, prefix) == fork
    assert store.get_channel("f:1") == fork
    member = fork_member("f:1", FORK_EPOCH)
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs(frozenset({member}), frozenset({member}))
    # The bookkeeping is an item of its own: the source's item is exactly as it was.
    assert store.get_channel("runs:1") == source_item
    assert store.fork_refs("runs:1", "019ad0392f80ffff") == ForkRefs()
    # The partial entry is the fork's own seq 2; seq 1 stays in the source's log.
    assert [m.body for m in store.read("f:1", FORK_EPOCH, 0, 10)] == [b"par"]
    assert [m.body for m in store.read("runs:1", EPOCH, 0, 10)] == [b"ab"]


def test_create_fork_refuses_a_taken_name_or_a_changed_source(store: Any) -> None:
    from chalicelib.ports import ForkRefs, ForkSourceChangedError

    store.create_channel(meta())
    store.create_channel(meta(name="f:1", epoch="019ad0392f80c000"))
    with pytest.raises(ChannelExistsError):
        store.create_fork(_fork_meta())
    with pytest.raises(ForkSourceChangedError):  # the source is in another epoch now
        store.create_fork(_fork_meta(name="f:2", source_epoch="019ad0392f80ffff"))
    with pytest.raises(ForkSourceChangedError):  # no such source
        store.create_fork(_fork_meta(name="f:3", source="runs:none"))
    assert store.get_channel("f:2") is None and store.get_channel("f:3") is None
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs()
    assert store.fork_refs("runs:none", EPOCH) == ForkRefs()


def test_a_source_with_forks_is_soft_deleted_refuses_appends_and_new_forks(store: Any) -> None:
    from chalicelib.ports import ForkSourceChangedError

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    deletion = store.delete_channel(meta(), 1)
    assert deletion is not None and deletion.soft
    kept = store.get_channel("runs:1")
    assert kept.deleted and kept.epoch == EPOCH
    with pytest.raises(SeqTakenError):
        store.append(meta(), 1, [NewMessage(b"late")], TS, 9_999_999_999)
    with pytest.raises(ForkSourceChangedError):
        store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))


def test_releasing_the_last_fork_collects_a_soft_deleted_source(store: Any) -> None:
    from chalicelib.core.forks import fork_member
    from chalicelib.ports import ForkRefs

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))
    store.delete_channel(meta(), 1)
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    assert store.get_channel("runs:1").deleted
    collected = store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000"))
    assert collected is not None and collected.name == "runs:1" and collected.deleted
    assert store.get_channel("runs:1") is None
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs()  # collected with it
    # Releasing from a channel that is gone, or in another epoch, is a no-op.
    assert store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000")) is None


def test_release_keeps_a_live_source_and_purge_ignores_forks(store: Any) -> None:
    from chalicelib.core.forks import fork_member
    from chalicelib.ports import ForkRefs

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0))
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    live = store.get_channel("runs:1")
    assert not live.deleted and store.fork_refs("runs:1", EPOCH) == ForkRefs()
    # Releasing twice (a retried cleanup) changes nothing.
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"))
    deletion = store.delete_channel(meta(), 1, purge=True)
    assert deletion is not None and not deletion.soft
    assert store.get_channel("runs:1") is None
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs()
    assert store.delete_channel(meta(), 1) is None


def test_a_fork_that_does_not_pin_never_holds_its_source(store: Any) -> None:
    from chalicelib.core.forks import fork_member
    from chalicelib.ports import ForkRefs

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0), pin=False)
    member = fork_member("f:1", FORK_EPOCH)
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs(frozenset({member}), frozenset())
    # Its owner deletes the source outright: no soft delete, the name is free again.
    deletion = store.delete_channel(meta(), 1)
    assert deletion is not None and not deletion.soft
    assert store.get_channel("runs:1") is None
    assert store.fork_refs("runs:1", EPOCH) == ForkRefs()
    store.create_channel(meta(epoch="019ad0392f80e000"))
    # The fork's later release finds nothing of its own there.
    assert store.release_fork("runs:1", EPOCH, member) is None
    assert store.get_channel("runs:1").epoch == "019ad0392f80e000"
    assert store.fork_refs("runs:1", "019ad0392f80e000") == ForkRefs()


def test_only_pinning_forks_make_a_delete_soft(store: Any) -> None:
    from chalicelib.core.forks import fork_member

    store.create_channel(meta())
    store.create_fork(_fork_meta(at=0), pin=False)
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"), pin=True)
    deletion = store.delete_channel(meta(), 1)
    assert deletion is not None and deletion.soft
    # Releasing the fork that does not pin keeps it; the pinning one collects it.
    assert store.release_fork("runs:1", EPOCH, fork_member("f:1", FORK_EPOCH)) is None
    assert store.get_channel("runs:1").deleted
    assert store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000"))
    assert store.get_channel("runs:1") is None


def test_forks_per_source_are_capped(store: Any) -> None:
    from chalicelib.core.forks import fork_member
    from chalicelib.ports import ForkLimitError

    store.create_channel(meta())
    store.create_fork(_fork_meta(name="f:1", at=0), max_forks=2)
    store.create_fork(_fork_meta(name="f:2", at=0, epoch="019ad0392f80d000"), pin=False,
                      max_forks=2)
    with pytest.raises(ForkLimitError):
        store.create_fork(_fork_meta(name="f:3", at=0, epoch="019ad0392f80d001"), max_forks=2)
    assert store.get_channel("f:3") is None
    assert len(store.fork_refs("runs:1", EPOCH).forks) == 2
    store.release_fork("runs:1", EPOCH, fork_member("f:2", "019ad0392f80d000"))
    store.create_fork(_fork_meta(name="f:3", at=0, epoch="019ad0392f80d001"), max_forks=2)
    assert store.get_channel("f:3") is not None


# -- Leases: concurrency limits (services/limits.py) ---------------------------------------


def test_leases_are_granted_up_to_the_limit_and_released(store: Any) -> None:
    assert store.acquire("live:key:k1", "a", 200, 2, 100)
    assert store.acquire("live:key:k1", "b", 200, 2, 100)
    assert not store.acquire("live:key:k1", "c", 200, 2, 100)
    # Another scope counts on its own; taking a lease one holds already is no extra slot.
    assert store.acquire("live:key:k2", "c", 200, 2, 100)
    assert store.acquire("live:key:k1", "a", 250, 2, 100)
    store.release("live:key:k1", "a")
    assert store.acquire("live:key:k1", "c", 200, 2, 100)
    store.release("live:key:k1", "zzz")  # not held: nothing happens
    store.release("live:nobody", "a")
    assert not store.acquire("live:key:k1", "d", 200, 2, 100)


def test_a_lease_that_ran_out_frees_its_slot(store: Any) -> None:
    assert store.acquire("replay:conn:c1", "a", 110, 1, 100)
    assert not store.acquire("replay:conn:c1", "b", 200, 1, 105)
    # At 110 the first lease has run out (its holder died without releasing it).
    assert store.acquire("replay:conn:c1", "b", 200, 1, 110)
    assert not store.acquire("replay:conn:c1", "c", 200, 1, 150)


def test_concurrent_takers_never_exceed_the_limit(store: Any) -> None:
    granted: list[str] = []
    lock = threading.Lock()

    def take(lease: str) -> None:
        if store.acquire("live:busy", lease, 500, 3, 100):
            with lock:
                granted.append(lease)

    threads = [threading.Thread(target=take, args=(f"l{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every taker either got a slot or was refused; never more than three at once.
    assert 1 <= len(granted) <= 3
    for lease in granted:
        store.release("live:busy", lease)
    assert store.acquire("live:busy", "after", 500, 3, 100)
