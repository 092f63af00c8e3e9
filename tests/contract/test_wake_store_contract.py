"""The WakeStore contract: the in-memory twin and DynamoDB (on moto) must agree.

services/wakes.py relies on exactly these: create once, compare-and-set saves that also hold
links still, links that only move forward, and the index the stream consumer reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.adapters.memory_wakes import MemoryWakeStore
from chalicelib.core import wakes as w
from tests.support.aws import dynamo_store, moto_dynamodb

E = "019ad0392f80a540"


def off(seq: int, epoch: str = E) -> str:
    return f"{epoch}_{seq:016d}"


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryWakeStore()
    else:
        with moto_dynamodb() as client:
            yield dynamo_store(client).wakes


def subscription(sub_id: str = "s1", pattern: str | None = "events/*",
                 streams: tuple[str, ...] = (), created: int = 1_000) -> w.WakeSubscription:
    config = w.SubscriptionConfig(
        type=w.WEBHOOK, pattern=w.parse_pattern(pattern) if pattern else None, streams=streams,
        webhook_url="https://hooks.example.com/x", wake_stream=None, lease_ttl_ms=30_000,
        description=None,
    )
    return w.WakeSubscription(sub_id, config, config.config_hash(), created,
                              "https://api.example.com")


def test_create_once_and_read_back(store: Any) -> None:
    sub = subscription()
    assert store.create(sub) is True
    assert store.create(replace(sub, created_ms=2_000)) is False
    got = store.get("s1")
    assert got is not None and got.version == 1 and got.created_ms == 1_000
    assert got.config == sub.config and got.base_url == sub.base_url
    assert store.get("nope") is None
    store.create(subscription("s0"))
    store.create(subscription("s2"))
    assert store.list_ids(None, 10) == ["s0", "s1", "s2"]
    assert store.list_ids("s0", 1) == ["s1"]
    store.delete(store.get("s1"))
    assert store.list_ids(None, 10) == ["s0", "s2"]


def test_save_is_compare_and_set(store: Any) -> None:
    store.create(subscription())
    sub = store.get("s1")
    wake = w.Wake("w_1", 1, (("events:a", off(3)),), "t1", 5_000, next_attempt_ms=5_000)
    assert store.save(replace(sub, wake=wake, generation=1, pending=frozenset({"events:a"})), 1)
    assert store.save(replace(sub, generation=9), 1) is False  # stale version
    got = store.get("s1")
    assert got.version == 2 and got.wake == wake and got.pending == {"events:a"}


def test_save_holds_links_still(store: Any) -> None:
    sub = subscription()
    store.create(sub)
    store.advance("s1", sub.incarnation, "events:a", off(2), off(0))
    assert store.save(replace(sub, generation=1), 1, {"events:a": off(2), "events:b": None})
    store.advance("s1", sub.incarnation, "events:a", off(3))
    # The link moved since it was read: the save must fail, whatever the version says.
    assert store.save(replace(sub, generation=2), 2, {"events:a": off(2)}) is False
    assert store.save(replace(sub, generation=2), 2, {"events:a": off(3)}) is True
    store.advance("s1", sub.incarnation, "events:b", off(1), off(0))
    assert store.save(replace(sub, generation=3), 3, {"events:b": None}) is False


def test_links_move_forward_only(store: Any) -> None:
    sub = subscription()
    store.create(sub)
    inc = sub.incarnation
    assert store.advance("s1", inc, "events:a", off(5)) is None  # no link, none created
    link = store.advance("s1", inc, "events:a", off(5), off(2))
    assert link == w.Link("events:a", frozenset({w.GLOB}), off(2), off(5)) and link.pending
    assert store.advance("s1", inc, "events:a", off(4), off(0)).tail == off(5)  # never down
    assert store.advance("s1", inc, "events:a", off(7)).tail == off(7)
    assert store.ack("s1", inc, "events:a", off(6)).acked == off(6)
    assert store.ack("s1", inc, "events:a", off(3)).acked == off(6)  # never down
    assert store.ack("s1", inc, "events:a", off(9)).acked == off(6)  # never past the tail
    assert store.ack("s1", inc, "events:zzz", off(1)) is None
    assert store.links("s1", inc) == {"events:a": w.Link("events:a", frozenset({w.GLOB}),
                                                          off(6), off(7))}
    # Another incarnation of the same id sees none of them.
    assert store.links("s1", "0000000009999") == {}


def test_index_finds_patterns_by_namespace_and_explicit_links_by_channel(store: Any) -> None:
    glob = subscription("g", pattern="events/*")
    explicit = subscription("x", pattern=None, streams=("manual:a",))
    store.create(glob)
    store.create(explicit)
    link = store.link_explicit(explicit, "manual:a", w.ZERO_OFFSET)
    assert link.acked == link.tail == w.ZERO_OFFSET and link.link_type == w.EXPLICIT
    # Linking again keeps the cursor.
    store.advance("x", explicit.incarnation, "manual:a", off(3))
    assert store.link_explicit(explicit, "manual:a", off(9)).acked == w.ZERO_OFFSET
    assert [e.id for e in store.matching("events:one")] == ["g"]
    assert store.matching("events:one")[0].pattern == w.parse_pattern("events/*")
    assert [(e.id, e.pattern) for e in store.matching("manual:a")] == [("x", None)]
    assert store.matching("manual:b") == [] and store.matching("other:a") == []
    store.unlink_explicit(explicit, "manual:a")
    store.unlink_explicit(explicit, "manual:a")  # idempotent
    assert store.matching("manual:a") == []
    assert store.links("x", explicit.incarnation) == {}


def test_unlinking_explicit_keeps_a_glob_link(store: Any) -> None:
    sub = subscription("g", pattern="events/*", streams=("events:a",))
    store.create(sub)
    store.advance("g", sub.incarnation, "events:a", off(2), off(1))
    store.link_explicit(sub, "events:a", off(9))
    assert store.links("g", sub.incarnation)["events:a"].link_types == {w.GLOB, w.EXPLICIT}
    store.unlink_explicit(sub, "events:a")
    assert store.links("g", sub.incarnation)["events:a"].link_types == {w.GLOB}


def test_delete_removes_everything(store: Any) -> None:
    sub = subscription("g", pattern="events/*")
    store.create(sub)
    store.link_explicit(sub, "manual:a", w.ZERO_OFFSET)
    store.advance("g", sub.incarnation, "events:a", off(2), off(1))
    store.delete(sub)
    assert store.get("g") is None
    assert store.matching("events:a") == [] and store.matching("manual:a") == []
    assert store.links("g", sub.incarnation) == {}
    assert store.create(replace(sub, created_ms=5_000)) is True


def test_one_of_racing_saves_wins(store: Any) -> None:
    store.create(subscription())
    base = store.get("s1")
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def racer(n: int) -> None:
        barrier.wait()
        results.append(store.save(replace(base, generation=n), base.version))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert store.get("s1").version == 2
