"""The append path against DynamoDB on moto as it behaves under concurrency (no global lock:
transactions conflict, single writes race per item): several "containers" publishing to one
channel at once, and a publish that dies between any two of its DynamoDB calls.

Each container is its own set of services over one DynamoDB, as Lambda containers are: its
own cache of the channel's tail, its own gate. Whatever they do, the log stays gapless, every
id is stored once, and a publish that died is either not visible at all or, retried with its
id, answered with the one seq it has.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.memory import RecordingSender
from chalicelib.core.messages import NewMessage
from chalicelib.core.producers import ProducerRequest
from chalicelib.services.appends import AppendRequest
from chalicelib.settings import Settings
from tests.support.aws import dynamo_store, moto_dynamodb

pytestmark = pytest.mark.integration

CHANNEL = "runs:load"
SETTINGS = Settings(auth_enabled=False, append_budget_s=60)


class Crash(Exception):
    """The Lambda died (timeout, out of memory, a lost host) right after a DynamoDB call."""


@dataclass
class CrashAfter:
    """Kills the caller right after its ``call``-th DynamoDB call completes (its effect
    stands, its answer is lost)."""

    call: int
    seen: int = 0
    armed: bool = True

    def __call__(self, **_: Any) -> None:
        if not self.armed:
            return
        self.seen += 1
        if self.seen == self.call:
            self.armed = False
            raise Crash(f"died after DynamoDB call {self.call}")


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with moto_dynamodb() as client:
        yield client


def container(client: Any, seed: int = 0) -> bootstrap.Services:
    """One Lambda container's services."""
    store = dynamo_store(client)
    return bootstrap.build(SETTINGS, store, store, RecordingSender(), SystemClock(),
                           rng=random.Random(seed))


def log_of(client: Any) -> list[tuple[int, str | None, bytes]]:
    """(seq, id, body) of every message of the channel, checking the log is gapless."""
    services = container(client)
    meta = services.channels.get(CHANNEL)
    messages = services.channels.read_after(meta, 0, 10_000)
    seqs = [m.seq for m in messages]
    assert seqs == list(range(1, len(seqs) + 1)), f"gaps or repeats: {seqs}"
    return [(m.seq, m.id, m.body) for m in messages]


def publish(services: bootstrap.Services, *messages: NewMessage, **kw: Any) -> Any:
    return services.appender.append(AppendRequest(CHANNEL, list(messages), **kw))


# -- many containers, one channel -----------------------------------------------------------


def test_containers_publishing_at_once_store_everything_once_and_gapless(dynamodb: Any) -> None:
    container(dynamodb).channels.create(CHANNEL)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(n: int) -> None:
        services = container(dynamodb, seed=n)
        try:
            for i in range(12):
                key = f"c{n}-{i}"
                if i % 4 == 0:  # a batch of two with ids: one transaction
                    out = publish(services, NewMessage(key.encode(), key),
                                  NewMessage(b"b", f"{key}b"))
                    pairs = [(key, out.results[0].seq), (f"{key}b", out.results[1].seq)]
                elif i % 4 == 1:  # no id: one conditional put
                    out = publish(services, NewMessage(key.encode()))
                    pairs = [(key, out.results[0].seq)]
                else:  # an id: claim, then put; every other one sent twice
                    out = publish(services, NewMessage(key.encode(), key))
                    if i % 2:
                        again = publish(services, NewMessage(key.encode(), key))
                        assert (again.results[0].seq, again.results[0].duplicate) == (
                            out.results[0].seq, True)
                    pairs = [(key, out.results[0].seq)]
                with lock:
                    acked.update(pairs)
        except BaseException as error:  # surfaced below, with the thread's name
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,), name=f"container-{n}") for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    log = log_of(dynamodb)
    assert len(log) == len(acked)
    for key, seq in acked.items():
        stored = [s for s, i, body in log if i == key or (i is None and body == key.encode())]
        assert stored == [seq], (key, stored)


def test_producers_racing_on_one_stream_commit_each_seq_once(dynamodb: Any) -> None:
    container(dynamodb).channels.create(CHANNEL, content_type="text/plain")
    errors: list[BaseException] = []

    def run(n: int) -> None:
        services = container(dynamodb, seed=10 + n)
        try:
            for seq in range(8):
                producer = ProducerRequest(f"p{n}", 0, seq)
                for _ in range(2):  # each batch sent twice: the second is a duplicate
                    publish(services, NewMessage(f"{n}:{seq}".encode()),
                            content_type="text/plain", producer=producer)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    bodies = [body.decode() for _, _, body in log_of(dynamodb)]
    assert sorted(bodies) == sorted(f"{n}:{s}" for n in range(4) for s in range(8))
    for n in range(4):  # each producer's appends in its own order
        mine = [b for b in bodies if b.startswith(f"{n}:")]
        assert mine == [f"{n}:{s}" for s in range(8)]


# -- a publish that dies between two DynamoDB calls -----------------------------------------


CASES: dict[str, tuple[list[NewMessage], dict[str, Any]]] = {
    "one message with an id": ([NewMessage(b"m", "only-once")], {}),
    "a batch with ids": ([NewMessage(b"a", "ba"), NewMessage(b"b", "bb")], {}),
    "a producer's append": ([NewMessage(b"p")],
                            {"producer": ProducerRequest("prod", 0, 1),
                             "content_type": "application/json"}),
    "one message without an id": ([NewMessage(b"n")], {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_publish_that_dies_between_any_two_calls_leaves_a_consistent_log(
    dynamodb: Any, case: str
) -> None:
    messages, options = CASES[case]
    setup = container(dynamodb)
    setup.channels.create(CHANNEL)
    publish(setup, NewMessage(b"before", "before"))
    if "producer" in options:
        publish(setup, NewMessage(b"p0"), content_type="application/json",
                producer=ProducerRequest("prod", 0, 0))
    baseline = log_of(dynamodb)
    interrupted = 0
    for call in range(1, 20):
        crash = CrashAfter(call)
        dynamodb.meta.events.register("after-call.dynamodb.*", crash)
        try:
            publish(container(dynamodb, call), *messages, **options)
        except Crash:
            interrupted += 1
        finally:
            dynamodb.meta.events.unregister("after-call.dynamodb.*", crash)
        if crash.armed:
            break  # it finished in fewer calls: every point has been tried
        log_of(dynamodb)  # gapless, whatever was interrupted
        # The client retries on another container: its ids settle where they are.
        retried = publish(container(dynamodb, 100 + call), *messages, **options)
        after = log_of(dynamodb)
        new = after[len(baseline):]
        if case == "one message without an id":
            # Without an id a retry cannot know: the message is there once or twice, never
            # half, and the log has no hole.
            assert [body for _, _, body in new] in ([b"n"], [b"n", b"n"])
        else:
            assert [body for _, _, body in new] == [m.body for m in messages], (call, new)
            if not retried.duplicate:
                assert [r.seq for r in retried.results] == [seq for seq, _, _ in new]
        # Next round starts clean: a new channel life.
        fresh = container(dynamodb)
        fresh.channels.delete(CHANNEL)
        fresh.channels.create(CHANNEL)
        publish(fresh, NewMessage(b"before", "before"))
        if "producer" in options:
            publish(fresh, NewMessage(b"p0"), content_type="application/json",
                    producer=ProducerRequest("prod", 0, 0))
        baseline = log_of(dynamodb)
    assert interrupted >= 2, "the publish should make several calls to interrupt"
    # And the channel still takes publishes at the tail.
    last = publish(container(dynamodb, 7), NewMessage(b"after"))
    assert last.results[0].seq == len(log_of(dynamodb))
