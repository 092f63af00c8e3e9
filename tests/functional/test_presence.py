"""Presence through the real handlers: enter, update, leave over WebSocket and HTTP, the
members snapshot and the presence log, every way a member goes (leave, $disconnect, a post
that finds the socket Gone, stopped heartbeats), limits and who may do what."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from chalicelib import bootstrap
from chalicelib.adapters.keys import StaticKeyRing
from chalicelib.core.capabilities import ApiKey, Capabilities
from chalicelib.core.offsets import encode
from chalicelib.core.presence import HEARTBEAT_S, MAX_DATA_BYTES
from chalicelib.services.credentials import Authenticator
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness
from tests.support.events import ws_event

LOG = "runs:1@presence"


def events(frames: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """The presence log's changes among a subscriber's frames: (operation, key, data)."""
    out = []
    for f in frames:
        if f["type"] == "message" and f["channel"] == LOG:
            value = f["data"].get("value") or {}
            out.append((f["data"]["headers"]["operation"], f["data"]["key"], value.get("data")))
    return out


def watcher(h: Harness, cid: str = "w") -> dict[str, Any]:
    """A subscriber that asked for presence: returns its members snapshot."""
    h.connect(cid)
    h.send(cid, action="subscribe", ref="s", channel="runs:1", presence=True)
    frames = h.take(cid)
    assert [f["type"] for f in frames] == ["subscribed", "subscribed", "members"]
    assert frames[1]["channel"] == LOG
    return frames[2]


def sweep(h: Harness) -> dict[str, Any]:
    event = h.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    result: dict[str, Any] = h.client.lambda_.invoke("presence_sweeper", event).payload
    return result


def test_enter_update_leave_reach_a_watcher_in_order(harness: Harness) -> None:
    assert watcher(harness)["members"] == []
    harness.connect("agent")
    harness.send("agent", action="presence", ref="e", op="enter", channel="runs:1",
                 data={"role": "agent", "state": "thinking"})
    assert harness.take("agent") == [{"type": "presence", "ref": "e", "channel": "runs:1",
                                      "op": "enter", "member": "anonymous/agent",
                                      "heartbeat_s": HEARTBEAT_S}]
    harness.clock.advance(1)
    harness.send("agent", action="presence", op="update", channel="runs:1",
                 data={"role": "agent", "state": "writing"})
    harness.clock.advance(1)
    harness.send("agent", action="presence", ref="l", op="leave", channel="runs:1")
    harness.pump()
    assert events(harness.take("w")) == [
        ("insert", "anonymous/agent", {"role": "agent", "state": "thinking"}),
        ("update", "anonymous/agent", {"role": "agent", "state": "writing"}),
        ("delete", "anonymous/agent", None),
    ]
    assert harness.services.presence.members("runs:1") == []
    # The application's own log saw none of it.
    assert harness.services.channels.get("runs:1").head == 0


def test_a_late_subscriber_gets_the_members_then_the_changes(harness: Harness) -> None:
    harness.connect("agent")
    harness.send("agent", action="presence", op="enter", channel="runs:1",
                 data={"state": "thinking"})
    harness.pump()
    snapshot = watcher(harness)
    assert [(m["key"], m["data"], m["via"]) for m in snapshot["members"]] == [
        ("anonymous/agent", {"state": "thinking"}, "websocket")]
    # The snapshot says how far into the presence log it reflects: changes at or below
    # its seq are in it, later ones are not.
    epoch = harness.services.channels.get(LOG).epoch
    assert (snapshot["seq"], snapshot["offset"]) == (1, encode(epoch, 1))
    harness.clock.advance(1)
    harness.send("agent", action="presence", op="update", channel="runs:1",
                 data={"state": "done"})
    harness.pump()
    (change,) = [f for f in harness.take("w") if f["type"] == "message"]
    assert change["seq"] == 2 and change["data"]["value"]["data"] == {"state": "done"}


def test_an_update_with_the_same_data_logs_nothing_and_heartbeat_keeps_alive(
    harness: Harness,
) -> None:
    watcher(harness)
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={"s": 1})
    harness.clock.advance(1)
    harness.send("a", action="presence", op="enter", channel="runs:1", data={"s": 1})
    for _ in range(5):
        harness.clock.advance(HEARTBEAT_S)
        harness.send("a", action="presence", ref="hb", op="heartbeat", channel="runs:1")
        assert harness.take("a")[-1]["op"] == "heartbeat"
        sweep(harness)
    harness.pump()
    assert events(harness.take("w")) == [("insert", "anonymous/a", {"s": 1})]
    assert len(harness.services.presence.members("runs:1")) == 1


def test_disconnect_leaves_every_channel_the_connection_was_on(harness: Harness) -> None:
    watcher(harness)
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    harness.send("a", action="presence", op="enter", channel="runs:2", data={})
    harness.disconnect("a")
    harness.pump()
    assert events(harness.take("w")) == [("insert", "anonymous/a", {}),
                                         ("delete", "anonymous/a", None)]
    assert harness.services.presence.members("runs:2") == []


def test_a_member_whose_socket_is_gone_leaves_when_the_fan_out_finds_it(
    harness: Harness,
) -> None:
    watcher(harness)
    harness.connect("a")
    harness.send("a", action="subscribe", channel="runs:1")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={"x": 1})
    harness.pump()
    harness.sender.gone.add("a")  # the socket vanished; no $disconnect came
    harness.post("/v1/channels/runs:1/messages", {"data": "hello"})
    harness.pump()  # posting "hello" to a finds it Gone: the connection ends
    harness.pump()  # ... and its leave, logged meanwhile, reaches the watcher
    assert events(harness.take("w"))[-1] == ("delete", "anonymous/a", None)
    assert harness.services.presence.members("runs:1") == []


def test_a_member_that_stops_heartbeating_is_swept_after_its_ttl(harness: Harness) -> None:
    watcher(harness)
    harness.connect("quiet")
    harness.connect("alive")
    for cid in ("quiet", "alive"):
        harness.send(cid, action="presence", op="enter", channel="runs:1", data={})
    ttl = harness.services.settings.presence_ttl_s
    harness.clock.advance(ttl - 5)
    harness.send("alive", action="presence", op="heartbeat", channel="runs:1")
    assert sweep(harness)["removed"] == 0
    harness.clock.advance(6)
    # Past its expiry the quiet one is no member any more, even before the sweep.
    assert [m.key for m in harness.services.presence.members("runs:1")] == ["anonymous/alive"]
    assert sweep(harness)["removed"] == 1
    assert sweep(harness)["removed"] == 0
    harness.pump()
    assert events(harness.take("w"))[-1] == ("delete", "anonymous/quiet", None)
    harness.take("quiet")
    # A heartbeat after the sweep is told to enter again.
    harness.send("quiet", action="presence", ref="hb", op="heartbeat", channel="runs:1")
    (error,) = harness.take("quiet")
    assert error["type"] == "error" and error["code"] == "not_found"
    assert "enter again" in error["message"]


def test_a_late_sweep_still_finds_members_of_earlier_minutes(harness: Harness) -> None:
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    harness.clock.advance(150)  # the schedule missed two runs
    assert sweep(harness)["removed"] == 1


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("thinking", "invalid_request"),
        ([1, 2], "invalid_request"),
        ({"blob": "x" * MAX_DATA_BYTES}, "too_large"),
    ],
)
def test_bad_presence_data_is_refused_and_nothing_changes(
    harness: Harness, data: Any, code: str
) -> None:
    harness.connect("a")
    harness.send("a", action="presence", ref="e", op="enter", channel="runs:1", data=data)
    (error,) = harness.take("a")
    assert error["type"] == "error" and error["code"] == code and error["ref"] == "e"
    assert harness.services.presence.members("runs:1") == []


def test_an_unknown_op_is_an_invalid_frame(harness: Harness) -> None:
    harness.connect("a")
    harness.send("a", action="presence", ref="e", op="join", channel="runs:1")
    (error,) = harness.take("a")
    assert error["code"] == "invalid_frame" and error["detail"]["allowed"] == [
        "enter", "update", "heartbeat", "leave"]


def test_members_per_channel_and_updates_per_second_are_limited() -> None:
    h = make_harness(Settings(auth_enabled=False, presence_max_members=3,
                              presence_max_updates_per_s=2))
    with h.client:
        for i in range(3):
            h.connect(f"c{i}")
            h.send(f"c{i}", action="presence", op="enter", channel="runs:1", data={})
        h.connect("c3")
        h.send("c3", action="presence", ref="e", op="enter", channel="runs:1", data={})
        (error,) = h.take("c3")
        assert error["code"] == "too_large" and error["detail"]["max_members"] == 3
        assert "leave" in error["message"]
        # Updating an existing member is fine, but not faster than twice a second.
        h.take("c0")
        h.send("c0", action="presence", ref="u", op="update", channel="runs:1", data={"n": 1})
        (error,) = h.take("c0")
        assert error["code"] == "rate_limited" and 0 < error["detail"]["retry_after_ms"] <= 500
        h.clock.advance(0.5)
        h.send("c0", action="presence", ref="u", op="update", channel="runs:1", data={"n": 1})
        assert h.take("c0")[0]["type"] == "presence"
        # A member that left frees its place.
        h.send("c1", action="presence", op="leave", channel="runs:1")
        h.send("c3", action="presence", ref="e", op="enter", channel="runs:1", data={})
        assert h.take("c3")[0]["type"] == "presence"


def test_nobody_publishes_into_a_presence_log(harness: Harness) -> None:
    harness.connect("a")
    harness.send("a", action="publish", ref="p", channel=LOG, data={"type": "presence"})
    (error,) = harness.take("a")
    assert error["code"] == "forbidden" and "presence log" in error["message"]
    response = harness.post(f"/v1/channels/{LOG}/messages", {"data": 1})
    assert response.status_code == 403
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    for method in ("post", "put"):
        response = getattr(harness.client.http, method)(
            f"/v1/stream/{LOG}", body=b'{"a":1}', headers={"content-type": "application/json"})
        assert response.status_code == 403, response.body
    assert harness.services.channels.get(LOG).head == 1  # the enter, nothing else


# -- HTTP -------------------------------------------------------------------------------------


def put(h: Harness, path: str, body: Any = None) -> Any:
    return h.client.http.put(path, body=b"" if body is None else json.dumps(body).encode(),
                             headers={"content-type": "application/json"})


def test_a_backend_enters_heartbeats_and_leaves_over_http(harness: Harness) -> None:
    watcher(harness)
    response = put(harness, "/v1/channels/runs:1/presence/worker-3",
                   {"data": {"role": "agent", "state": "thinking"}})
    assert response.status_code == 200, response.body
    assert json.loads(response.body) == {
        "channel": "runs:1", "member": "anonymous/worker-3", "heartbeat_s": HEARTBEAT_S,
        "expires_in": harness.services.settings.presence_ttl_s}
    harness.clock.advance(HEARTBEAT_S)
    assert put(harness, "/v1/channels/runs:1/presence/worker-3").status_code == 200
    listed = json.loads(harness.client.http.get("/v1/channels/runs:1/presence").body)
    assert [(m["key"], m["data"]["state"], m["via"]) for m in listed["members"]] == [
        ("anonymous/worker-3", "thinking", "http")]
    assert harness.client.http.delete(
        "/v1/channels/runs:1/presence/worker-3").status_code == 204
    assert harness.client.http.delete(
        "/v1/channels/runs:1/presence/worker-3").status_code == 404
    response = put(harness, "/v1/channels/runs:1/presence/worker-3")
    assert response.status_code == 404 and "enter again" in json.loads(response.body)[
        "error"]["message"]
    harness.pump()
    assert [e[0] for e in events(harness.take("w"))] == ["insert", "delete"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/channels/runs:1/presence/a%20b", {"data": {}}, 400, "invalid_request"),
        ("/v1/channels/runs:1/presence/w", {"state": "x"}, 400, "invalid_request"),
        ("/v1/channels/runs:1/presence/w", {"data": "x"}, 400, "invalid_request"),
        ("/v1/channels/runs:1/presence/w", {"data": {"b": "x" * 2000}}, 413, "too_large"),
        ("/v1/channels/bad%20name/presence/w", {"data": {}}, 400, "invalid_channel"),
    ],
)
def test_bad_http_presence_is_a_clear_4xx(
    harness: Harness, path: str, body: Any, status: int, code: str
) -> None:
    response = put(harness, path, body)
    assert response.status_code == status, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == code and error["message"]
    assert harness.services.presence.members("runs:1") == []


def test_durable_streams_readers_see_the_state_protocol_changes(harness: Harness) -> None:
    put(harness, "/v1/channels/runs:1/presence/w1", {"data": {"state": "a"}})
    harness.clock.advance(1)
    put(harness, "/v1/channels/runs:1/presence/w1", {"data": {"state": "b"}})
    harness.client.http.delete("/v1/channels/runs:1/presence/w1")
    response = harness.client.http.get(f"/v1/stream/{LOG}?offset=-1")
    assert response.status_code == 200, response.body
    changes = json.loads(response.body)
    assert changes == [
        {"type": "presence", "key": "anonymous/w1", "headers": {"operation": "insert"},
         "value": {"client_id": None, "data": {"state": "a"}}},
        {"type": "presence", "key": "anonymous/w1", "headers": {"operation": "update"},
         "value": {"client_id": None, "data": {"state": "b"}}},
        {"type": "presence", "key": "anonymous/w1", "headers": {"operation": "delete"}},
    ]


# -- who may --------------------------------------------------------------------------------

KEY = ApiKey("k1", "s" * 43, Capabilities.everything())


def token(h: Harness, caps: dict[str, list[str]], sub: str = "alice") -> str:
    now = h.clock.now_ms() // 1000
    return jwt.encode({"iss": "switchboard", "aud": "switchboard", "sub": sub, "iat": now,
                       "nbf": now,
                       "exp": now + 600, "caps": caps}, KEY.secret, algorithm="HS256",
                      headers={"kid": KEY.id})


def test_entering_needs_the_presence_operation_and_reading_needs_subscribe_or_history() -> None:
    h = make_harness(Settings(auth_enabled=True))
    h.services.auth = Authenticator(StaticKeyRing({KEY.id: KEY}), h.clock)
    with h.client:
        def connect(cid: str, caps: dict[str, list[str]]) -> None:
            event = ws_event("$connect", cid)
            event["queryStringParameters"] = {"token": token(h, caps)}
            assert h.client.lambda_.invoke("connect", event).payload["statusCode"] == 200

        connect("pub", {"runs:1": ["publish", "subscribe", "history"]})
        h.send("pub", action="presence", ref="e", op="enter", channel="runs:1", data={})
        (error,) = h.take("pub")
        assert error["code"] == "forbidden" and "'presence'" in error["message"]

        connect("agent", {"runs:*": ["presence"]})
        h.send("agent", action="presence", op="enter", channel="runs:1", data={"s": "x"})
        assert h.take("agent")[0]["member"] == "alice/agent"
        # Its grant is for runs:*, not for another namespace.
        h.send("agent", action="presence", ref="e", op="enter", channel="chat:1", data={})
        assert h.take("agent")[0]["code"] == "forbidden"
        # Nor may it watch (subscribe) or list (subscribe or history) without those rights.
        h.send("agent", action="subscribe", ref="s", channel="runs:1", presence=True)
        assert h.take("agent")[0]["code"] == "forbidden"

        def get(caps: dict[str, list[str]]) -> int:
            return int(h.client.http.get("/v1/channels/runs:1/presence", headers={
                "authorization": f"Bearer {token(h, caps)}"}).status_code)

        assert get({"runs:1": ["subscribe"]}) == 200
        assert get({"runs:1": ["history"]}) == 200
        assert get({"runs:1": ["presence", "publish"]}) == 403
        assert get({"runs:2": ["*"]}) == 403
        assert h.client.http.get("/v1/channels/runs:1/presence").status_code == 401
        # Over HTTP, one principal's member is not another's to remove.
        headers = {"content-type": "application/json"}
        bob = {**headers, "authorization": f"Bearer {token(h, {'runs:1': ['presence']}, 'bob')}"}
        assert h.client.http.put("/v1/channels/runs:1/presence/w", body=b'{"data":{}}',
                                 headers=bob).status_code == 200
        eve = {**headers, "authorization": f"Bearer {token(h, {'runs:1': ['presence']}, 'eve')}"}
        assert h.client.http.delete("/v1/channels/runs:1/presence/w",
                                    headers=eve).status_code == 404
        assert sorted(m.key for m in h.services.presence.members("runs:1")) == [
            "alice/agent", "bob/w"]
    bootstrap.install(None)


class _MinuteContext:
    """A Lambda context with the sweeper's deployed timeout (60 s) ahead of it."""

    function_name = "switchboard-dev-presence_sweeper"
    aws_request_id = "sweep-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_the_scheduled_sweeper_sweeps_four_times_a_minute_only_while_anyone_is_present(
    harness: Harness,
) -> None:
    from chalicelib.handlers.presence import sweep as scheduled_sweep

    started = harness.clock.now_ms()
    assert scheduled_sweep(_MinuteContext()) == {"removed": 0, "sweeps": 1}
    assert harness.clock.now_ms() == started  # nobody present: it did not wait
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    result = scheduled_sweep(_MinuteContext())
    assert result == {"removed": 1, "sweeps": 4}
    # Every 15 s: the member (TTL 40 s) went at the sweep 45 s in, within 60 s of its
    # last sign of life.
    assert harness.clock.slept == [15, 15, 15]


def test_a_member_that_heartbeated_within_its_minute_then_stopped_is_still_swept(
    harness: Harness,
) -> None:
    # Its heartbeats kept its expiry inside the minute it entered in: the minute's list
    # names it once, due at its first expiry, when it was still alive.
    harness.clock.advance(60 - (harness.clock.now_ms() // 1000) % 60)  # a minute starts
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})  # due 40
    harness.clock.advance(10)
    harness.send("a", action="presence", op="heartbeat", channel="runs:1")  # expires 50
    harness.clock.advance(5)
    harness.send("a", action="presence", op="heartbeat", channel="runs:1")  # expires 55
    harness.clock.advance(26)
    assert sweep(harness)["removed"] == 0  # due at 40, but alive until 55
    harness.clock.advance(15)
    assert sweep(harness)["removed"] == 1
    assert harness.services.presence.members("runs:1") == []


def test_sweeps_read_each_ended_minute_once(harness: Harness) -> None:
    store = harness.services.presence.store
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    for _ in range(12):
        harness.clock.advance(15)
        harness.send("a", action="presence", op="heartbeat", channel="runs:1")
        sweep(harness)
    now_minute = harness.clock.now_ms() // 1000 // 60
    assert store.swept_bucket() == now_minute
    assert len(harness.services.presence.members("runs:1")) == 1


def test_after_a_sweeper_outage_the_next_sweeps_catch_up(harness: Harness) -> None:
    sweep(harness)  # the sweeper ran once, then stopped for three hours
    harness.connect("a")
    harness.send("a", action="presence", op="enter", channel="runs:1", data={})
    harness.clock.advance(3 * 3600)
    removed = [sweep(harness)["removed"] for _ in range(4)]
    assert sum(removed) == 1 and harness.services.presence.members("runs:1") == []
