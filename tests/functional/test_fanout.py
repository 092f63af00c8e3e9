"""The stream-triggered fan-out: who gets what, Gone cleanup, retries, partial failures."""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.ports import SendFailedError, SendThrottledError
from tests.functional.conftest import Harness


def live_subscriber(h: Harness, cid: str, channel: str = "runs:1") -> None:
    h.connect(cid)
    h.send(cid, action="subscribe", channel=channel)
    h.take(cid)


def publish(h: Harness, channel: str, *datas: Any) -> None:
    assert h.post(f"/v1/channels/{channel}/messages",
                  [{"data": d} for d in datas]).status_code == 201


def test_each_subscriber_gets_each_message_once_in_order(harness: Harness) -> None:
    for cid in ("c1", "c2", "c3"):
        live_subscriber(harness, cid)
    live_subscriber(harness, "other", channel="runs:2")
    publish(harness, "runs:1", 1, 2, 3)
    publish(harness, "runs:2", "x")
    assert harness.pump() == {"batchItemFailures": []}
    for cid in ("c1", "c2", "c3"):
        assert [f["seq"] for f in harness.take(cid)] == [1, 2, 3]
    assert [f["data"] for f in harness.take("other")] == ["x"]


def test_a_gone_connection_is_deleted_with_its_subscriptions(harness: Harness) -> None:
    live_subscriber(harness, "alive")
    live_subscriber(harness, "vanished")
    harness.send("vanished", action="subscribe", channel="runs:9")
    harness.sender.gone.add("vanished")
    publish(harness, "runs:1", 1)
    assert harness.pump() == {"batchItemFailures": []}  # Gone is not a failure
    assert harness.store.get_connection("vanished") is None
    assert [s.connection_id for s in harness.store.subscribers("runs:1")] == ["alive"]
    assert harness.store.subscribers("runs:9") == []
    assert [f["seq"] for f in harness.take("alive")] == [1]


class FlakySender:
    """Throttles or fails the first posts to chosen connections."""

    def __init__(self, inner: Any, throttle: dict[str, int], fail: set[str]) -> None:
        self.inner, self.throttle, self.fail = inner, throttle, fail
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}

    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        with self.lock:
            self.attempts[connection_id] = self.attempts.get(connection_id, 0) + 1
            if self.throttle.get(connection_id, 0) > 0:
                self.throttle[connection_id] -= 1
                raise SendThrottledError("LimitExceededException")
        if connection_id in self.fail:
            raise SendFailedError("InternalServerError (500)")
        self.inner.send(endpoint, connection_id, data)

    def close(self, endpoint: str, connection_id: str) -> None:
        self.inner.close(endpoint, connection_id)


def test_throttled_posts_are_retried_with_backoff(harness: Harness) -> None:
    live_subscriber(harness, "c1")
    flaky = FlakySender(harness.sender, throttle={"c1": 3}, fail=set())
    harness.services.fanout.sender = flaky
    publish(harness, "runs:1", "a")
    assert harness.pump() == {"batchItemFailures": []}
    assert [f["data"] for f in harness.take("c1")] == ["a"]
    assert flaky.attempts["c1"] == 4
    assert len(harness.clock.slept) == 3
    assert harness.clock.slept[0] < harness.clock.slept[2]  # exponential


def test_a_connection_that_keeps_failing_is_dropped_and_fails_no_record(
    harness: Harness,
) -> None:
    live_subscriber(harness, "good")
    live_subscriber(harness, "bad")
    harness.services.fanout.sender = FlakySender(harness.sender, throttle={}, fail={"bad"})
    publish(harness, "runs:1", 1, 2)
    # One socket that cannot keep up must not make the stream retry the batch for everyone
    # (or block the shard): it is dropped, and its client resumes from its offset.
    assert harness.pump() == {"batchItemFailures": []}
    assert [f["seq"] for f in harness.take("good")] == [1, 2]
    assert harness.store.get_connection("bad") is None
    assert [s.connection_id for s in harness.store.subscribers("runs:1")] == ["good"]
    assert harness.sender.closed == ["bad"]  # its socket is closed: the client reconnects


def test_out_of_time_the_fan_out_fails_the_records_it_did_not_send(harness: Harness) -> None:
    live_subscriber(harness, "c1")
    publish(harness, "runs:1", 1, 2)
    stored = harness.store.drain_stream()
    records = [(str(100 + i), m) for i, m in enumerate(stored)]
    report = harness.services.fanout.fan_out(records, deadline_ms=harness.clock.now_ms())
    assert report.failed_records == {"100", "101"} and report.delivered == 0
    assert harness.store.get_connection("c1") is not None


def test_a_frame_api_gateway_would_refuse_is_skipped_not_retried_forever(
    harness: Harness,
) -> None:
    from chalicelib.core.messages import StoredMessage

    live_subscriber(harness, "c1")
    meta = harness.services.channels.get("runs:1")
    huge = StoredMessage("runs:1", meta.epoch, 1, b'"' + b"\\u0000" * 30_000 + b'"', 0, 2**40)
    small = StoredMessage("runs:1", meta.epoch, 2, b'"ok"', 0, 2**40)
    report = harness.services.fanout.fan_out([("100", huge), ("101", small)])
    assert report.failed_records == set()
    assert [f["seq"] for f in harness.take("c1")] == [2]  # 1 is a gap the client fills


def test_replaying_subscribers_are_skipped_by_the_fanout(harness: Harness) -> None:
    from chalicelib.core.subscriptions import Subscription, SubscriptionState

    harness.connect("c1")
    harness.store.subscribe(
        Subscription("runs:1", "c1", "https://x/api", "", 0, SubscriptionState.REPLAYING, 0), 10
    )
    publish(harness, "runs:1", 1)
    harness.pump()
    assert harness.take("c1") == []


def test_non_insert_records_are_ignored(harness: Harness) -> None:
    live_subscriber(harness, "c1")
    event = {"Records": [{"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "5",
                                                              "OldImage": {}}}]}
    assert harness.client.lambda_.invoke("fanout_records", event).payload == {
        "batchItemFailures": []}
    assert harness.take("c1") == []


def test_many_connections_are_posted_to_concurrently(harness: Harness) -> None:
    in_flight = {"now": 0, "max": 0}
    lock = threading.Lock()
    gate = threading.Barrier(4, timeout=5)

    class SlowSender:
        def send(self, endpoint: str, connection_id: str, data: str) -> None:
            with lock:
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])
            gate.wait()  # only passes if four posts are in flight at once
            with lock:
                in_flight["now"] -= 1

        def close(self, endpoint: str, connection_id: str) -> None: ...

    for i in range(8):
        live_subscriber(harness, f"c{i}")
    harness.services.fanout.sender = SlowSender()
    publish(harness, "runs:1", 1)
    assert harness.pump() == {"batchItemFailures": []}
    assert in_flight["max"] >= 4
