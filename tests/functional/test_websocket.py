"""The WebSocket API through the real Chalice handlers, with in-memory stores and a recording
sender standing in for DynamoDB and API Gateway."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.core.messages import NewMessage
from chalicelib.core.offsets import encode
from chalicelib.core.subscriptions import Handover, SubscriptionState
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness


def publish_rest(h: Harness, channel: str, *datas: Any) -> None:
    response = h.post(f"/v1/channels/{channel}/messages", [{"data": d} for d in datas])
    assert response.status_code == 201, response.body


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "message"]


def test_subscribe_replays_the_backlog_then_delivers_live(harness: Harness) -> None:
    publish_rest(harness, "runs:1", "a", "b", "c")
    harness.connect("c1")
    harness.send("c1", action="subscribe", ref="r1", channel="runs:1", **{"from": "-1"})
    subscribed, *replayed = harness.take("c1")
    epoch = harness.store.get_channel("runs:1").epoch
    assert subscribed == {"type": "subscribed", "ref": "r1", "channel": "runs:1", "epoch": epoch,
                          "from": encode(epoch, 0), "head": encode(epoch, 3)}
    assert [(f["seq"], f["data"]) for f in replayed] == [(1, "a"), (2, "b"), (3, "c")]
    assert harness.store.subscribers("runs:1")[0].state is SubscriptionState.LIVE
    harness.pump()  # the backlog's stream records: already replayed, not sent again
    assert harness.take("c1") == []
    publish_rest(harness, "runs:1", "d")
    assert harness.pump() == {"batchItemFailures": []}
    assert [(f["seq"], f["data"]) for f in harness.take("c1")] == [(4, "d")]
    assert harness.store.subscribers("runs:1")[0].state is SubscriptionState.LIVE


def test_subscribe_defaults_to_now_and_resumes_from_an_offset(harness: Harness) -> None:
    publish_rest(harness, "runs:1", 1, 2, 3)
    epoch = harness.store.get_channel("runs:1").epoch
    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="runs:1")
    (subscribed,) = harness.take("c1")
    assert subscribed["from"] == encode(epoch, 3) and "ref" not in subscribed
    harness.connect("c2")
    harness.send("c2", action="subscribe", channel="runs:1", **{"from": encode(epoch, 1)})
    assert seqs(harness.take("c2")) == [2, 3]


def test_subscribing_before_anything_exists_creates_the_channel(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="subscribe", ref="r", channel="runs:new", **{"from": "-1"})
    (subscribed,) = harness.take("c1")
    assert subscribed["type"] == "subscribed" and subscribed["head"] == "-1"
    publish_rest(harness, "runs:new", "first")
    harness.pump()
    assert seqs(harness.take("c1")) == [1]


class RacingStore(MemoryStore):
    """Publishes, and runs the fan-out, behind the subscriber's back right before each of its
    attempts to go live."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.outcomes: list[Handover] = []
        self.harness: Harness | None = None

    def go_live(self, subscription: Any, after_seq: int) -> Handover:
        if self.armed and len(self.outcomes) < 3:
            meta = self.get_channel(subscription.channel)
            assert meta is not None and self.harness is not None
            tail = self.last_entry(meta.name, meta.epoch)
            self.append(meta, (tail.seq if tail else 0) + 1, [NewMessage(b'"raced"')], 0, 2**40)
            self.harness.pump()  # the fan-out sees the subscriber replaying: it notes the seq
        outcome = super().go_live(subscription, after_seq)
        self.outcomes.append(outcome)
        return outcome


def test_messages_published_during_the_hand_over_arrive_once_and_in_order() -> None:
    racing = RacingStore()
    h = make_harness(store=racing)
    racing.harness = h
    with h.client:
        publish_rest(h, "runs:1", "a", "b")
        h.connect("c1")
        racing.armed = True
        h.send("c1", action="subscribe", channel="runs:1", **{"from": "-1"})
        racing.armed = False
        assert racing.outcomes == [Handover.BEHIND, Handover.BEHIND, Handover.BEHIND,
                                   Handover.LIVE]
        publish_rest(h, "runs:1", "c")
        h.pump()
        # Exactly once, in order: one sender at a time.
        assert seqs(h.take("c1")) == [1, 2, 3, 4, 5, 6]
        assert h.store.subscribers("runs:1")[0].state is SubscriptionState.LIVE


def test_publish_acks_with_seq_and_repeats_are_duplicates(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="publish", ref="p1", channel="runs:1", data={"x": 1}, id="k1")
    harness.send("c1", action="publish", ref="p2", channel="runs:1", data={"x": 1}, id="k1")
    harness.send("c1", action="publish", ref="p3", channel="runs:1", data={"x": 2})
    acks = harness.take("c1")
    assert [(a["ref"], a["seq"], a["duplicate"]) for a in acks] == [
        ("p1", 1, False), ("p2", 1, True), ("p3", 2, False)]
    assert acks[0]["offset"].endswith("_0000000000000001")
    assert harness.services.channels.get("runs:1").head == 2


def test_ping_pong_and_unsubscribe(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="ping", ref="p")
    harness.send("c1", action="subscribe", channel="runs:1")
    harness.send("c1", action="unsubscribe", ref="u", channel="runs:1")
    frames = harness.take("c1")
    assert frames[0] == {"type": "pong", "ref": "p"}
    assert frames[2] == {"type": "unsubscribed", "ref": "u", "channel": "runs:1"}
    publish_rest(harness, "runs:1", "after")
    harness.pump()
    assert harness.take("c1") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "invalid_frame"),
        ('"just a string"', "invalid_frame"),
        ('{"action":"shout","ref":"r"}', "invalid_frame"),
        ('{"action":"publish","ref":"r","channel":"runs:1"}', "invalid_frame"),
        ('{"action":"publish","ref":"r","channel":"no spaces","data":1}', "invalid_channel"),
        ('{"action":"publish","ref":"r","channel":"runs:1","data":1,"id":7}', "invalid_frame"),
        ('{"action":"subscribe","ref":"r","channel":"runs:1","from":"x_y"}', "invalid_offset"),
        ('{"action":"subscribe","ref":"r","channel":"runs:1","from":3}', "invalid_offset"),
        ('{"action":"publish","ref":"r","channel":"runs:1","data":"' + "x" * 70000 + '"}',
         "too_large"),
    ],
)
def test_bad_frames_get_error_frames_and_the_connection_stays_usable(
    harness: Harness, body: str, code: str
) -> None:
    harness.connect("c1")
    harness.send("c1", body)
    harness.send("c1", action="ping", ref="after")
    error, pong = harness.take("c1")
    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert "Traceback" not in error["message"]
    if body.startswith("{\"action\""):
        assert error["ref"] == "r"
    assert pong == {"type": "pong", "ref": "after"}
    assert harness.store.get_channel("runs:1") is None or (
        harness.services.channels.get("runs:1").head == 0
    )


def test_too_large_frames_are_rejected_before_parsing() -> None:
    h = make_harness(Settings(auth_enabled=False, max_frame_bytes=2048))
    with h.client:
        h.connect("c1")
        h.send("c1", '{"action":"ping","ref":"big","pad":"' + "x" * 3000 + '"}')
        (error,) = h.take("c1")
        assert error["code"] == "too_large" and error["ref"] == "big"


def test_subscription_limit_is_a_clear_error() -> None:
    h = make_harness(Settings(auth_enabled=False, max_subscriptions_per_connection=2))
    with h.client:
        h.connect("c1")
        for name in ("a:1", "a:2", "a:3"):
            h.send("c1", action="subscribe", ref=name, channel=name)
        frames = h.take("c1")
        assert [f["type"] for f in frames] == ["subscribed", "subscribed", "error"]
        assert frames[2]["code"] == "too_large" and frames[2]["detail"]["max_subscriptions"] == 2


def test_resuming_before_the_retained_log_is_offset_expired(harness: Harness) -> None:
    publish_rest(harness, "runs:1", 1, 2)
    epoch = harness.store.get_channel("runs:1").epoch
    harness.clock.advance(86400 + 1)  # past the default 24 h retention
    publish_rest(harness, "runs:1", 3)
    harness.connect("c1")
    harness.send("c1", action="subscribe", ref="r", channel="runs:1",
                 **{"from": encode(epoch, 0)})
    (error,) = harness.take("c1")
    assert error["code"] == "offset_expired" and error["detail"]["earliest"] == encode(epoch, 2)
    assert harness.store.subscribers("runs:1") == []
    earliest = error["detail"]["earliest"]
    harness.send("c1", action="subscribe", channel="runs:1", **{"from": earliest})
    assert seqs(harness.take("c1")) == [3]


def test_resuming_across_delete_and_recreate_is_epoch_mismatch(harness: Harness) -> None:
    publish_rest(harness, "runs:1", 1)
    old_epoch = harness.store.get_channel("runs:1").epoch
    assert harness.client.http.delete("/v1/channels/runs:1").status_code == 204
    harness.clock.advance(1)
    publish_rest(harness, "runs:1", "new life")
    harness.connect("c1")
    harness.send("c1", action="subscribe", ref="r", channel="runs:1",
                 **{"from": encode(old_epoch, 1)})
    (error,) = harness.take("c1")
    new_epoch = harness.store.get_channel("runs:1").epoch
    assert error["code"] == "epoch_mismatch" and error["detail"]["epoch"] == new_epoch != old_epoch


def test_live_subscribers_of_a_recreated_channel_are_told_and_dropped(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="runs:1")
    harness.take("c1")
    harness.client.http.delete("/v1/channels/runs:1")
    harness.clock.advance(1)
    publish_rest(harness, "runs:1", "new life")
    harness.pump()
    (error,) = harness.take("c1")
    assert error["type"] == "error" and error["code"] == "epoch_mismatch"
    assert error["channel"] == "runs:1"
    assert error["detail"]["epoch"] == harness.store.get_channel("runs:1").epoch
    assert harness.store.subscribers("runs:1") == []


def test_disconnect_removes_the_connection_and_its_subscriptions(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="runs:1")
    harness.send("c1", action="subscribe", channel="runs:2")
    harness.disconnect("c1")
    assert harness.store.get_connection("c1") is None
    assert harness.store.subscribers("runs:1") == harness.store.subscribers("runs:2") == []


def test_connect_stores_the_management_endpoint_of_the_api(harness: Harness) -> None:
    assert harness.connect("c1") == {"statusCode": 200}
    connection = harness.store.get_connection("c1")
    assert connection is not None
    assert connection.endpoint == "https://abc123.execute-api.us-east-1.amazonaws.com/api"


def test_an_unexpected_failure_is_an_internal_error_frame_without_details(
    harness: Harness,
) -> None:
    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals")

    harness.connect("c1")
    harness.store.append = explode  # type: ignore[method-assign]
    harness.send("c1", action="publish", ref="p", channel="runs:1", data=1)
    (error,) = harness.take("c1")
    assert error["code"] == "internal" and error["ref"] == "p"
    assert "secret" not in error["message"]


class BusyStore(MemoryStore):
    """A channel written on every read of its log (while armed): faster than a replay."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.armed = False

    def read(self, name: str, epoch: str, *args: Any, **kwargs: Any) -> Any:
        if self.armed and self.races:
            self.races -= 1
            meta = self.get_channel(name)
            assert meta is not None
            tail = self.last_entry(name, epoch)
            self.append(meta, (tail.seq if tail else 0) + 1, [NewMessage(b'"busy"')], 0, 2**40)
        return super().read(name, epoch, *args, **kwargs)


def test_a_subscriber_catches_up_with_a_channel_that_keeps_publishing() -> None:
    busy = BusyStore(races=60)
    h = make_harness(store=busy)
    with h.client:
        publish_rest(h, "runs:1", "a")
        h.connect("c1")
        busy.armed = True
        h.send("c1", action="subscribe", channel="runs:1", **{"from": "-1"})
        busy.armed = False
        frames = h.take("c1")
        assert frames[0]["type"] == "subscribed"
        assert all(f["type"] == "message" for f in frames[1:]), frames[-1]
        h.pump()
        publish_rest(h, "runs:1", "z")
        h.pump()
        frames += h.take("c1")
        assert seqs(frames) == list(range(1, h.services.channels.get("runs:1").head + 1))
        assert h.store.subscribers("runs:1")[0].state is SubscriptionState.LIVE


def test_a_batching_subscriber_gets_its_backlog_and_live_batches_in_few_frames(
    harness: Harness,
) -> None:
    publish_rest(harness, "runs:1", *range(1, 21))
    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="runs:1", batch=True, **{"from": "-1"})
    subscribed, *replayed = harness.take("c1")
    assert subscribed["type"] == "subscribed"
    assert [f["type"] for f in replayed] == ["messages"]
    assert [m["seq"] for m in replayed[0]["messages"]] == list(range(1, 21))
    harness.pump()  # the backlog's records: replayed already
    publish_rest(harness, "runs:1", "a", "b", "c")
    harness.pump()
    (live,) = harness.take("c1")
    assert live["type"] == "messages" and [m["data"] for m in live["messages"]] == [
        "a", "b", "c"]
    # A subscriber that did not ask keeps one message per frame.
    harness.connect("c2")
    harness.send("c2", action="subscribe", channel="runs:1")
    publish_rest(harness, "runs:1", "d", "e")
    harness.pump()
    assert [f["type"] for f in harness.take("c2")[1:]] == ["message", "message"]


def test_a_retried_publish_without_an_id_is_recognised_by_its_token(harness: Harness) -> None:
    harness.connect("c1")
    harness.send("c1", action="publish", ref="a", channel="runs:t", data=1, token="tok-1")
    harness.send("c1", action="publish", ref="b", channel="runs:t", data=2)
    # The answer to "a" was lost: the client retries it, saying so.
    harness.send("c1", action="publish", ref="a2", channel="runs:t", data=1, token="tok-1",
                 retry=True)
    # A token never stored, retried: stored now.
    harness.send("c1", action="publish", ref="c", channel="runs:t", data=3, token="tok-3",
                 retry=True)
    # Without the retry flag a token is not looked for (first attempts cost one write).
    harness.send("c1", action="publish", ref="d", channel="runs:t", data=1, token="tok-1")
    acks = {a["ref"]: (a["seq"], a["duplicate"]) for a in harness.take("c1")}
    assert acks == {"a": (1, False), "b": (2, False), "a2": (1, True), "c": (3, False),
                    "d": (4, False)}
    messages = harness.services.channels.read_after(harness.services.channels.get("runs:t"),
                                                    0, 10)
    assert [m.data() for m in messages] == [1, 2, 3, 1]
    assert "token" not in messages[0].to_dict()  # stored, never delivered


def test_deeply_nested_json_gets_an_invalid_frame_error_at_once(harness: Harness) -> None:
    import time

    harness.connect("c1")
    deep = '{"action":"publish","ref":"deep","channel":"runs:1","data":' + "[" * 5000 + (
        "]" * 5000) + "}"
    started = time.monotonic()
    harness.send("c1", deep)
    (error,) = harness.take("c1")
    assert time.monotonic() - started < 1
    assert error["code"] == "invalid_frame" and "nested" in error["message"]
    nested_data = {"action": "publish", "ref": "d2", "channel": "runs:1"}
    harness.send("c1", json.dumps(nested_data)[:-1] + ',"data":' + "[" * 3000 + "]" * 3000 + "}")
    (error,) = harness.take("c1")
    assert error["code"] == "invalid_frame"
    response = harness.post("/v1/channels/runs:1/messages", "[" * 5000 + "]" * 5000)
    assert response.status_code == 400


def test_an_unsubscribe_handled_after_a_later_subscribe_leaves_it_alone(harness: Harness) -> None:
    from tests.support.events import frame, ws_event

    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="runs:1")
    unsubscribe = ws_event("$default", "c1", frame(action="unsubscribe", ref="u",
                                                    channel="runs:1"))
    resubscribe = ws_event("$default", "c1", frame(action="subscribe", ref="s",
                                                    channel="runs:1"))
    # The client sent unsubscribe, then subscribe; API Gateway ran them concurrently and the
    # subscribe finished first.
    unsubscribe["requestContext"]["requestTimeEpoch"] = 1_764_430_500_000
    resubscribe["requestContext"]["requestTimeEpoch"] = 1_764_430_500_001
    harness.client.lambda_.invoke("message", resubscribe)
    harness.client.lambda_.invoke("message", unsubscribe)
    replies = {f.get("ref"): f["type"] for f in harness.take("c1")}
    assert replies["s"] == "subscribed" and replies["u"] == "unsubscribed"
    (live,) = harness.store.subscribers("runs:1")
    assert live.since_ms == 1_764_430_500_001
    publish_rest(harness, "runs:1", "still here")
    harness.pump()
    assert [f["data"] for f in harness.take("c1")] == ["still here"]


def test_a_pong_carries_the_heads_a_client_asks_for(harness: Harness) -> None:
    publish_rest(harness, "runs:1", "a", "b")
    harness.connect("c1")
    harness.send("c1", action="ping", ref="p", channels=["runs:1", "runs:empty"])
    (pong,) = harness.take("c1")
    head = harness.services.channels.get("runs:1").head_offset
    assert pong == {"type": "pong", "ref": "p", "heads": {"runs:1": head, "runs:empty": "-1"}}
    harness.send("c1", action="ping", ref="q")
    assert harness.take("c1") == [{"type": "pong", "ref": "q"}]
    harness.send("c1", action="ping", ref="r", channels="runs:1")
    (error,) = harness.take("c1")
    assert error["code"] == "invalid_frame"
