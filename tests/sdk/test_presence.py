"""Presence in the Python SDK: the member map kept from a snapshot and the presence log's
changes (pure state), and members that heartbeat, enter again, coalesce rate-limited updates
and leave, against the in-process fake server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from switchboard.client import (
    Message,
    PresenceEvent,
    Switchboard,
    TooLargeError,
)
from switchboard.client._presence import PresenceState

from .fake_server import FakeSwitchboard, wait_for

Make = Callable[..., Switchboard]
EPOCH = "00000000000000aa"
CH = "room:1"
LOG = f"{CH}@presence"


# -- the member map (no I/O) --------------------------------------------------------------


def change(seq: int, key: str, operation: str, data: dict[str, Any] | None = None) -> Message:
    event: dict[str, Any] = {"type": "presence", "key": key, "headers": {"operation": operation}}
    if operation != "delete":
        event["value"] = {"client_id": key.split("/")[0], "data": data or {}}
    return Message(LOG, seq, f"{EPOCH}_{seq:016d}", EPOCH, event, ts=1000 + seq)


def member(key: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "client_id": key.split("/")[0], "data": data, "entered": 1,
            "updated": 1, "via": "websocket"}


def snapshot_at(seq: int) -> str:
    return f"{EPOCH}_{seq:016d}"


def actions(events: list[PresenceEvent]) -> list[tuple[str, str | None]]:
    return [(e.action, e.member.key if e.member else None) for e in events]


def data_of(state: PresenceState) -> dict[str, Any]:
    return {key: m.data for key, m in state.members.items()}


def test_a_snapshot_then_its_changes_in_order() -> None:
    state = PresenceState(CH)
    state.expect_snapshot()
    events = state.snapshot([member("a/1", {"s": "idle"}), member("b/2", {"s": "x"})],
                            snapshot_at(7))
    assert actions(events) == [("present", "a/1"), ("present", "b/2"), ("sync", None)]
    assert dict(events[-1].members).keys() == {"a/1", "b/2"}
    assert actions(state.change(change(8, "a/1", "update", {"s": "thinking"}))) == [
        ("update", "a/1")]
    assert actions(state.change(change(9, "c/3", "insert", {"s": "new"}))) == [("enter", "c/3")]
    leave = state.change(change(10, "b/2", "delete"))
    assert actions(leave) == [("leave", "b/2")]
    assert leave[0].member is not None and leave[0].member.data == {"s": "x"}
    assert "b/2" not in leave[0].members
    assert data_of(state) == {"a/1": {"s": "thinking"}, "c/3": {"s": "new"}}
    assert state.members["c/3"].entered == 1009 and state.stats.changes == 3


def test_changes_before_the_snapshot_at_or_below_its_seq_are_dropped_later_ones_applied() -> None:
    state = PresenceState(CH)
    state.expect_snapshot()
    # Seqs 5 and 6 are already reflected in the snapshot (seq 6): x entered and left. Seq 7
    # came after the snapshot's head was read: it applies on top of it.
    for message in (change(5, "x/1", "insert", {"s": "a"}), change(6, "x/1", "delete"),
                    change(7, "a/1", "update", {"s": "writing"})):
        assert state.change(message) == []  # held until the snapshot
    events = state.snapshot([member("a/1", {"s": "thinking"})], snapshot_at(6))
    assert actions(events) == [("present", "a/1"), ("update", "a/1"), ("sync", None)]
    assert data_of(state) == {"a/1": {"s": "writing"}}
    assert state.stats.duplicates == 2 and state.stats.changes == 1


def test_changes_out_of_order_wait_for_the_missing_one() -> None:
    state = PresenceState(CH)
    state.expect_snapshot()
    state.snapshot([member("a/1", {"v": 0})], snapshot_at(3))
    assert state.change(change(5, "a/1", "update", {"v": 2})) == []
    gap = state.gap()
    assert gap is not None and (gap.after_seq, gap.until_seq) == (3, 4)
    assert data_of(state) == {"a/1": {"v": 0}}
    events = state.change(change(4, "a/1", "update", {"v": 1}))
    assert [e.member.data for e in events if e.member] == [{"v": 1}, {"v": 2}]
    assert state.gap() is None and data_of(state) == {"a/1": {"v": 2}}
    assert state.change(change(5, "a/1", "update", {"v": 2})) == []  # seen: dropped
    assert state.stats.duplicates == 1


def test_a_new_snapshot_after_a_reconnect_reports_what_changed_meanwhile() -> None:
    state = PresenceState(CH)
    state.expect_snapshot()
    state.snapshot([member("a/1", {"s": "x"}), member("b/2", {"s": "y"})], snapshot_at(2))
    state.expect_snapshot()  # the socket was replaced: subscribed again
    assert not state.synced
    assert state.change(change(3, "a/1", "update", {"s": "late"})) == []  # held
    events = state.snapshot([member("b/2", {"s": "y2"}), member("c/3", {"s": "z"})],
                            snapshot_at(9))
    assert actions(events) == [("leave", "a/1"), ("update", "b/2"), ("enter", "c/3"),
                               ("sync", None)]
    assert data_of(state) == {"b/2": {"s": "y2"}, "c/3": {"s": "z"}} and state.synced


def test_an_empty_channel_still_syncs_and_unknown_deletes_are_ignored() -> None:
    state = PresenceState(CH)
    state.expect_snapshot()
    assert actions(state.snapshot([], snapshot_at(0))) == [("sync", None)]
    assert state.change(change(1, "ghost/1", "delete")) == []
    assert state.change(change(2, "a/1", "insert", {"n": 1})) != []
    assert state.change(change(3, "a/1", "insert", {"n": 1})) == []  # same data: no event


# -- members against the fake server -----------------------------------------------------------


async def next_events(sub: Any, count: int, timeout: float = 5.0) -> list[PresenceEvent]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await sub.__anext__())
    return out


async def until_members(sub: Any, predicate: Callable[[dict[str, Any]], bool],
                        timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        members = {k: m.data for k, m in sub.members.items()}
        if sub.synced and predicate(members):
            return members
        if time.monotonic() > deadline:
            raise AssertionError(f"members never matched: {members}")
        await sub.next_event(0.05)


def sent(fake: FakeSwitchboard, op: str | None = None) -> list[dict[str, Any]]:
    return [f for _t, f, _k in fake.presence_frames if op is None or f.get("op") == op]


async def test_enter_update_leave_as_a_watcher_sees_them(make_client: Make,
                                                         fake: FakeSwitchboard) -> None:
    agent, watcher = make_client(), make_client()
    sub = watcher.channel(CH).presence.subscribe()
    assert actions(await next_events(sub, 1)) == [("sync", None)]
    key = await agent.channel(CH).presence.enter({"role": "agent", "state": "idle"})
    assert key == agent.channel(CH).presence.member and key.startswith("anonymous/conn")
    event = (await next_events(sub, 1))[0]
    assert event.action == "enter" and event.member is not None
    assert event.member.data == {"role": "agent", "state": "idle"}
    await asyncio.sleep(0.6)
    await agent.channel(CH).presence.update({"role": "agent", "state": "thinking"})
    assert [e.action for e in await next_events(sub, 1)] == ["update"]
    # members(): from the watcher's own snapshot; over HTTP for a client that does not watch.
    gets = len([a for a in fake.http_auth])
    watched = await watcher.channel(CH).presence.members()
    assert len(fake.http_auth) == gets, "a watching client lists members without a request"
    listed = await agent.channel(CH).presence.members()
    assert len(fake.http_auth) == gets + 1
    assert [m.data for m in watched] == [m.data for m in listed] == [
        {"role": "agent", "state": "thinking"}]
    assert listed[0].via == "websocket" and listed[0].key == key
    await agent.channel(CH).presence.leave()
    assert [e.action for e in await next_events(sub, 1)] == ["leave"]
    assert agent.channel(CH).presence.member is None and fake.members[CH] == {}
    assert sent(fake, "leave") and sub.stats.snapshots == 1
    await sub.aclose()


async def test_changes_arriving_before_the_snapshot(make_client: Make,
                                                    fake: FakeSwitchboard) -> None:
    await fake.enter_member(CH, "anonymous/early", {"s": "a"})

    async def before_head() -> None:  # in the snapshot, at or below its seq
        await fake.enter_member(CH, "anonymous/blip", {"s": "b"})
        await fake.remove_member(CH, "anonymous/blip")

    async def after_head() -> None:  # above its seq (and in the snapshot as well)
        await fake.enter_member(CH, "anonymous/early", {"s": "c"})
        await fake.enter_member(CH, "anonymous/late", {"s": "d"})

    fake.before_snapshot_head, fake.before_snapshot_members = before_head, after_head
    sub = make_client().channel(CH).presence.subscribe()
    events = await next_events(sub, 3)
    assert actions(events) == [("present", "anonymous/early"), ("present", "anonymous/late"),
                               ("sync", None)]
    assert {k: m.data for k, m in sub.members.items()} == {
        "anonymous/early": {"s": "c"}, "anonymous/late": {"s": "d"}}
    assert await sub.next_event(0.3) is None, "the changes in the snapshot add no event"
    assert sub.stats.duplicates == 2  # blip's enter and leave
    early_frames = [f for f in fake.sent_frames if f.get("channel") == LOG]
    assert early_frames and fake.sent_frames.index(early_frames[0]) < next(
        i for i, f in enumerate(fake.sent_frames) if f.get("type") == "members"), \
        "the changes really reached the client before the snapshot"


async def test_heartbeats_every_heartbeat_s_without_a_ref(make_client: Make,
                                                          fake: FakeSwitchboard) -> None:
    fake.heartbeat_s = 0.2
    sb = make_client()
    await sb.channel(CH).presence.enter({"s": 1})
    await asyncio.sleep(1.1)
    beats = [(t, f) for t, f, _k in fake.presence_frames if f["op"] == "heartbeat"]
    assert 3 <= len(beats) <= 7, beats
    assert all("ref" not in f for _t, f in beats)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(beats)]
    assert all(0.15 <= g <= 0.6 for g in gaps), gaps
    membership = sb.channel(CH).presence.membership()
    assert membership is not None and membership.heartbeat_s == 0.2
    await sb.channel(CH).presence.leave()
    count = len(sent(fake, "heartbeat"))
    await asyncio.sleep(0.5)
    assert len(sent(fake, "heartbeat")) == count, "no heartbeat after leaving"


async def test_a_new_socket_enters_again_with_the_last_data(make_client: Make,
                                                            fake: FakeSwitchboard) -> None:
    agent, watcher = make_client(), make_client()
    sub = watcher.channel(CH).presence.subscribe()
    await next_events(sub, 1)
    first = await agent.channel(CH).presence.enter({"state": "idle"})
    await asyncio.sleep(0.6)
    await agent.channel(CH).presence.update({"state": "writing"})
    await until_members(sub, lambda m: m == {first: {"state": "writing"}})
    ws = agent.connection.websocket
    assert ws is not None
    ws.transport.abort()  # the network drops the agent's socket; the server sees it close
    members = await until_members(sub, lambda m: len(m) == 1 and first not in m)
    (second,) = members
    assert members[second] == {"state": "writing"} and second != first
    # (the fake logs the enter before it answers it)
    await wait_for(lambda: agent.channel(CH).presence.member == second)
    membership = agent.channel(CH).presence.membership()
    assert membership is not None and membership.stats.reenters == 1
    enters = sent(fake, "enter")
    assert [f["data"] for f in enters] == [{"state": "idle"}, {"state": "writing"}]


async def test_a_heartbeat_answered_not_found_enters_again(make_client: Make,
                                                           fake: FakeSwitchboard) -> None:
    fake.heartbeat_s = 0.2
    sb = make_client()
    ch = sb.channel(CH)
    messages = ch.subscribe(from_="now")  # a subscription on the same channel survives it
    await messages.start()
    key = await ch.presence.enter({"state": "thinking"})
    await fake.remove_member(CH, key)  # expired on the server (missed heartbeats, a sweep)
    await wait_for(lambda: key in fake.members.get(CH, {}), timeout=3)
    assert fake.members[CH][key]["data"] == {"state": "thinking"}
    membership = ch.presence.membership()
    assert membership is not None
    # (the fake stores the enter before it answers; the client counts it on the answer)
    await wait_for(lambda: membership.stats.reenters == 1, timeout=3)
    assert membership.stats.expired == 1
    await ch.publish({"n": 1})
    got = await messages.next_message(3)
    assert got is not None and got.data == {"n": 1}, "the not_found did not end it"


async def test_rate_limited_updates_send_only_the_latest_after_the_delay(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    presence = sb.channel(CH).presence
    await presence.enter({"v": 0})
    fake.rate_limit_presence, fake.presence_retry_after_ms = 1, 300
    started = time.monotonic()
    first = asyncio.create_task(presence.update({"v": 1}))
    await wait_for(lambda: len(sent(fake)) == 2)  # v1 went out and was refused
    rest = [asyncio.create_task(presence.update({"v": v})) for v in (2, 3, 4)]
    keys = await asyncio.gather(first, *rest)
    elapsed = time.monotonic() - started
    assert len(set(keys)) == 1
    assert [f.get("data") for f in sent(fake)] == [{"v": 0}, {"v": 1}, {"v": 4}]
    assert 0.3 <= elapsed < 1.5, elapsed
    assert fake.members[CH][keys[0]]["data"] == {"v": 4}
    membership = presence.membership()
    assert membership is not None
    assert membership.stats.rate_limited == 1 and membership.stats.coalesced >= 2


async def test_data_the_server_refuses_raises_and_the_member_keeps_its_state(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    presence = sb.channel(CH).presence
    with pytest.raises(TooLargeError):
        await presence.enter({"blob": "x" * 2000})
    assert presence.membership() is None, "a refused first enter is no membership"
    key = await presence.enter({"s": "ok"})
    await asyncio.sleep(0.6)
    with pytest.raises(TooLargeError):
        await presence.update({"blob": "x" * 2000})
    assert fake.members[CH][key]["data"] == {"s": "ok"}
    assert presence.member == key


async def test_closing_the_client_leaves(make_client: Make, fake: FakeSwitchboard) -> None:
    fake.disconnect_leaves = False  # only an explicit leave removes the member
    agent, watcher = make_client(), make_client()
    sub = watcher.channel(CH).presence.subscribe()
    await next_events(sub, 1)
    await agent.channel(CH).presence.enter({"s": 1})
    await agent.channel("room:2").presence.enter({"s": 2})
    assert [e.action for e in await next_events(sub, 1)] == ["enter"]
    await agent.aclose()
    assert [e.action for e in await next_events(sub, 1)] == ["leave"]
    assert len(sent(fake, "leave")) == 2
    assert fake.members[CH] == {} and fake.members["room:2"] == {}


async def test_a_backend_without_a_socket_is_present_over_http(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.heartbeat_s = 0.2
    sb = make_client()
    presence = sb.channel(CH).presence
    key = await presence.enter({"role": "worker"}, instance="worker-3")
    assert key == "anonymous/worker-3" and fake.connections == 0
    await asyncio.sleep(0.55)
    beats = [r for r in fake.http_presence if r[0] == "PUT" and r[2] is None]
    assert len(beats) >= 2
    await fake.remove_member(CH, key)  # expired: the next heartbeat is a 404
    await wait_for(lambda: key in fake.members.get(CH, {}), timeout=3)
    assert fake.members[CH][key]["data"] == {"role": "worker"}
    assert fake.members[CH][key]["via"] == "http"
    fake.rate_limit_presence = 1
    await asyncio.sleep(0.6)
    await presence.update({"role": "worker", "state": "busy"}, instance="worker-3")
    assert fake.members[CH][key]["data"] == {"role": "worker", "state": "busy"}
    await presence.leave(instance="worker-3")
    assert fake.members[CH] == {} and fake.http_presence[-1][0] == "DELETE"
    assert fake.connections == 0, "no socket was ever opened"


async def test_messages_and_presence_share_one_subscription(make_client: Make,
                                                            fake: FakeSwitchboard) -> None:
    sb, other = make_client(), make_client()
    ch = sb.channel(CH)
    messages = ch.subscribe(from_="-1")
    await ch.publish({"n": 1})
    assert (await messages.next_message(3)).data == {"n": 1}  # type: ignore[union-attr]
    watch = ch.presence.subscribe()
    assert actions(await next_events(watch, 1)) == [("sync", None)]
    await other.channel(CH).presence.enter({"s": 1})
    await ch.publish({"n": 2})
    assert [e.action for e in await next_events(watch, 1)] == ["enter"]
    assert (await messages.next_message(3)).data == {"n": 2}  # type: ignore[union-attr]
    assert messages.stats.duplicates >= 0 and messages.position is not None
    # Messages stop; presence goes on (on the same route, without the messages).
    await messages.aclose()
    await asyncio.sleep(0.6)
    await other.channel(CH).presence.update({"s": 2})
    assert [e.action for e in await next_events(watch, 1)] == ["update"]
    # And a subscription started now joins the presence watch instead of conflicting.
    again = ch.subscribe(from_="now")
    await again.start()
    await ch.publish({"n": 3})
    assert (await again.next_message(3)).data == {"n": 3}  # type: ignore[union-attr]
    await watch.aclose()

    def unsubscribed() -> list[str]:
        return [f["channel"] for f in fake.ws_frames if f.get("action") == "unsubscribe"]

    await wait_for(lambda: unsubscribed() != [])
    await asyncio.sleep(0.1)
    assert unsubscribed() == [LOG]
    await ch.publish({"n": 4})
    assert (await again.next_message(3)).data == {"n": 4}  # type: ignore[union-attr]


async def test_a_change_lost_on_the_way_is_read_from_the_presence_log(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    watcher = make_client()
    sub = watcher.channel(CH).presence.subscribe()
    await next_events(sub, 1)
    fake.drop_live = lambda m: m["channel"] == LOG and m["data"].get("key") == "anonymous/b"
    await fake.enter_member(CH, "anonymous/b", {"s": "lost"})
    fake.drop_live = lambda m: False
    await fake.enter_member(CH, "anonymous/c", {"s": "next"})
    events = await next_events(sub, 2)
    assert actions(events) == [("enter", "anonymous/b"), ("enter", "anonymous/c")]
    assert sub.stats.gaps == 1


async def test_two_watchers_on_one_client_each_get_every_event(make_client: Make,
                                                               fake: FakeSwitchboard) -> None:
    sb = make_client()
    await fake.enter_member(CH, "anonymous/x", {"s": 1})
    first = sb.channel(CH).presence.subscribe()
    assert [e.action for e in await next_events(first, 2)] == ["present", "sync"]
    second = sb.channel(CH).presence.subscribe()  # joins the synced watch: told at once
    assert [e.action for e in await next_events(second, 2)] == ["present", "sync"]
    await fake.remove_member(CH, "anonymous/x")
    for sub in (first, second):
        assert [e.action for e in await next_events(sub, 1)] == ["leave"]
    subscribes = [f for f in fake.ws_frames if f.get("action") == "subscribe"]
    assert len(subscribes) == 1 and subscribes[0]["presence"] is True
