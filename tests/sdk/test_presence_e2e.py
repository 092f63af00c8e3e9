"""Presence through the Python SDK (async and blocking) against a real `switchboard dev`.

The server runs with a 5 s TTL (the least it takes; members are told to heartbeat every 2 s)
and sweeps every second, so what takes 40-55 s by default takes a few seconds here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from switchboard.client import Options, PresenceSubscription, Switchboard
from switchboard.client import sync as sync_client
from tests.support.devserver import DevServerProcess, running

pytestmark = pytest.mark.e2e

TTL_S = 5
OPTIONS = Options(backoff_initial=0.05, backoff_max=0.5, ping_interval=10.0, pong_timeout=5.0)


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    with running("--no-auth", "--no-agent", env={
        "SWITCHBOARD_PRESENCE_TTL_S": str(TTL_S), "SWITCHBOARD_DEV_PRESENCE_SWEEP_S": "1",
    }) as process:
        yield process


@pytest.fixture
def channel() -> str:
    return f"pres:{uuid.uuid4().hex[:10]}"


async def until(sub: PresenceSubscription, predicate: Callable[[dict[str, Any]], bool],
                timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        members = {key: m.data for key, m in sub.members.items()}
        if sub.synced and predicate(members):
            return members
        if time.monotonic() > deadline:
            raise AssertionError(f"presence never matched; last seen {members}")
        await sub.next_event(0.1)


def listed(server: DevServerProcess, channel: str) -> dict[str, Any]:
    members = httpx.get(f"{server.http}/v1/channels/{channel}/presence").json()["members"]
    return {m["key"]: m["data"] for m in members}


async def test_an_agent_followed_through_updates_lost_sockets_and_close(
    server: DevServerProcess, channel: str
) -> None:
    watcher = Switchboard(server.http, options=OPTIONS)
    agent = Switchboard(server.http, options=OPTIONS)
    try:
        sub = watcher.channel(channel).presence.subscribe()
        await until(sub, lambda m: m == {})
        presence = agent.channel(channel).presence
        first = await presence.enter({"role": "agent", "state": "idle"})
        # Faster than the server's 2 changes a second: the latest state wins, nobody fails.
        states = ["thinking", "tool", "writing", "writing more", "done"]
        await asyncio.gather(*(presence.update({"role": "agent", "state": s}) for s in states))
        await until(sub, lambda m: m == {first: {"role": "agent", "state": "done"}})
        membership = presence.membership()
        assert membership is not None and membership.stats.rate_limited >= 1
        assert membership.heartbeat_s == 2

        # The agent's socket dies (its TCP connection resets: $disconnect at once). The SDK
        # enters again on the next socket with the last state, under a new key.
        ws = agent.connection.websocket
        assert ws is not None
        ws.transport.abort()
        members = await until(sub, lambda m: len(m) == 1 and first not in m, timeout=5)
        (second,) = members
        assert members[second] == {"role": "agent", "state": "done"}
        assert membership.stats.expired == 0, "entered again because of the new socket"

        # The gateway loses the socket without $disconnect: the SDK is back at once under a
        # third key; the server forgets the second when its heartbeats stop (TTL + sweep).
        async with httpx.AsyncClient(base_url=server.http) as http:
            for connection in (await http.get("/_dev/connections")).json():
                if second.endswith("/" + connection["connectionId"]):
                    await http.post(f"/_dev/connections/{connection['connectionId']}/drop")
        dropped = time.monotonic()
        members = await until(sub, lambda m: len(m) == 1 and second not in m,
                              timeout=TTL_S + 8)
        assert time.monotonic() - dropped >= TTL_S - 1.5, "the ghost went at its TTL"
        assert list(members.values()) == [{"role": "agent", "state": "done"}]
        assert membership.stats.reenters == 2 and membership.stats.heartbeats >= 2
        assert listed(server, channel) == members

        # Closing the client leaves: watchers see it at once, not after a TTL.
        closed = time.monotonic()
        await agent.aclose()
        await until(sub, lambda m: m == {}, timeout=3)
        assert time.monotonic() - closed < 2
        assert sub.stats.snapshots == 1 and sub.stats.gaps == 0
    finally:
        await agent.aclose()
        await watcher.aclose()


async def test_a_member_that_expired_enters_again_on_its_next_heartbeat(
    server: DevServerProcess, channel: str
) -> None:
    watcher = Switchboard(server.http, options=OPTIONS)
    agent = Switchboard(server.http, options=OPTIONS)
    try:
        sub = watcher.channel(channel).presence.subscribe()
        key = await agent.channel(channel).presence.enter({"state": "thinking"})
        membership = agent.channel(channel).presence.membership()
        assert membership is not None
        transport = membership.transport
        beat = transport.heartbeat

        async def silent() -> None:  # a process too busy to heartbeat, say
            return None

        transport.heartbeat = silent  # type: ignore[method-assign]
        await until(sub, lambda m: key in m)
        await until(sub, lambda m: m == {}, timeout=TTL_S + 6)  # expired and swept
        transport.heartbeat = beat  # type: ignore[method-assign]
        # The next heartbeat is answered not_found: the SDK enters again, same key, same data.
        members = await until(sub, lambda m: m != {}, timeout=5)
        assert members == {key: {"state": "thinking"}}
        assert membership.stats.reenters == 1 and membership.stats.expired == 1
    finally:
        await agent.aclose()
        await watcher.aclose()


def test_the_blocking_client_enters_watches_lists_and_leaves(
    server: DevServerProcess, channel: str
) -> None:
    with sync_client.Switchboard(server.http, options=OPTIONS) as watcher, \
            sync_client.Switchboard(server.http, options=OPTIONS) as agent:
        events = watcher.channel(channel).presence.subscribe()
        assert events.next_event(5).action == "sync"  # type: ignore[union-attr]
        key = agent.channel(channel).presence.enter({"role": "agent", "state": "idle"})
        event = events.next_event(5)
        assert event is not None and event.action == "enter" and event.member is not None
        assert event.member.key == key and event.member.data["state"] == "idle"
        # A backend without a socket: present over HTTP under an instance name.
        worker = agent.channel(channel).presence.enter({"role": "worker"}, instance="w-1")
        assert worker.endswith("/w-1")
        time.sleep(TTL_S + 1)  # past the TTL: both are heartbeated by the background loop
        assert {m.key: m.via for m in agent.channel(channel).presence.members()} == {
            key: "websocket", worker: "http"}
        assert agent.channel(channel).presence.update({"role": "agent", "state": "done"}) == key
        seen = [events.next_event(5) for _ in range(2)]
        assert [(e.action, e.member.key) for e in seen if e and e.member] == [
            ("enter", worker), ("update", key)]
        # The watcher lists from its own snapshot, now up to date.
        assert {m.key: m.data for m in watcher.channel(channel).presence.members()} == {
            key: {"role": "agent", "state": "done"}, worker: {"role": "worker"}}
        agent.channel(channel).presence.leave(instance="w-1")
        agent.channel(channel).presence.leave()
        assert listed(server, channel) == {}
        seen = [events.next_event(5) for _ in range(2)]
        assert sorted((e.action, e.member.key) for e in seen if e and e.member) == sorted(
            [("leave", worker), ("leave", key)])
        assert events.next_event(0.3) is None
        events.close()
