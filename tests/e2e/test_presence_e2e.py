"""Presence against a real ``switchboard dev``: raw WebSocket clients and HTTP, members that
vanish (a TCP abort, a socket the gateway drops without ``$disconnect``, an HTTP backend that
stops heartbeating), many members at once with a watcher joining mid-burst, and hostile
frames. The server runs with a 5 s TTL and a sweep every second so expiry is quick to see."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import WsClient
from tests.support.devserver import DevServerProcess

pytestmark = pytest.mark.e2e

TTL_S = 5


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    process = DevServerProcess.start(
        "--port", "0", "--no-auth", "--no-agent",
        env={"SWITCHBOARD_PRESENCE_TTL_S": str(TTL_S), "SWITCHBOARD_DEV_PRESENCE_SWEEP_S": "1"},
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def channel() -> str:
    return f"pres:{uuid.uuid4().hex[:12]}"


class PresenceClient(WsClient):
    """A raw client that also keeps the ``members`` snapshots (frames without a ref)."""

    def __init__(self, connection: Any) -> None:
        self.snapshots: list[dict[str, Any]] = []
        super().__init__(connection)

    def _keep(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") != "members":
            return False
        self.snapshots.append(frame)
        return True


class Watcher:
    """A subscriber with presence keeping the members as the SDKs do: the snapshot, then the
    presence log's changes above the snapshot's seq, in order."""

    def __init__(self, client: PresenceClient, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.members: dict[str, Any] | None = None
        self.snapshot_seq = 0
        self.applied = 0

    @classmethod
    async def join(cls, url: str, channel: str) -> Watcher:
        client = await PresenceClient.connect(url)
        assert isinstance(client, PresenceClient)
        reply = await client.request("subscribe", channel=channel, presence=True)
        assert reply["type"] == "subscribed", reply
        return cls(client, channel)

    def state(self) -> dict[str, Any] | None:
        """Apply what arrived so far: the members by key (None before the snapshot)."""
        if self.members is None:
            if not self.client.snapshots:
                return None
            (snapshot,) = self.client.snapshots
            self.members = {m["key"]: m["data"] for m in snapshot["members"]}
            self.snapshot_seq = snapshot["seq"]
        log = f"{self.channel}@presence"
        changes = [m for m in self.client.messages if m["channel"] == log]
        seqs = [m["seq"] for m in changes]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
        for change in changes[self.applied:]:
            self.applied += 1
            if change["seq"] <= self.snapshot_seq:
                continue
            event = change["data"]
            if event["headers"]["operation"] == "delete":
                self.members.pop(event["key"], None)
            else:
                self.members[event["key"]] = event["value"]["data"]
        return dict(self.members)

    async def until(self, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state is not None and predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"presence never matched; last seen {state}")
            await asyncio.sleep(0.05)


async def listed(server: DevServerProcess, channel: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get(f"/v1/channels/{channel}/presence")
    assert response.status_code == 200, response.text
    return {m["key"]: m["data"] for m in response.json()["members"]}


async def test_a_member_that_vanishes_is_gone_for_watchers(
    server: DevServerProcess, channel: str
) -> None:
    watcher = await Watcher.join(server.ws, channel)
    crashed = await PresenceClient.connect(server.ws)
    dropped = await PresenceClient.connect(f"{server.ws}?client={channel}")
    try:
        for client, state in ((crashed, "thinking"), (dropped, "writing")):
            reply = await client.request("presence", channel=channel, op="enter",
                                         data={"role": "agent", "state": state})
            assert reply["type"] == "presence" and reply["heartbeat_s"] == 2, reply
        members = await watcher.until(lambda m: len(m) == 2)
        assert sorted(d["state"] for d in members.values()) == ["thinking", "writing"]

        # A crashed process: its TCP connection resets, and $disconnect follows at once.
        started = time.monotonic()
        crashed.abort()
        await watcher.until(lambda m: len(m) == 1, timeout=5)
        assert time.monotonic() - started < 3

        # A socket API Gateway lost without a $disconnect: nobody says so, its heartbeats
        # stop, and the sweeper removes it once its TTL passed.
        async with httpx.AsyncClient(base_url=server.http) as http:
            connections = (await http.get("/_dev/connections")).json()
            (ghost,) = [c["connectionId"] for c in connections
                        if c["query"].get("client") == channel]
            started = time.monotonic()
            assert (await http.post(f"/_dev/connections/{ghost}/drop")).status_code == 204
        await watcher.until(lambda m: m == {}, timeout=TTL_S + 10)
        assert TTL_S - 1 <= time.monotonic() - started < TTL_S + 5
        assert await listed(server, channel) == {}
    finally:
        await watcher.client.close()


async def test_an_http_member_stays_while_it_heartbeats_and_goes_when_it_stops(
    server: DevServerProcess, channel: str
) -> None:
    watcher = await Watcher.join(server.ws, channel)
    path = f"/v1/channels/{channel}/presence/worker-1"
    try:
        async with httpx.AsyncClient(base_url=server.http) as http:
            entered = await http.put(path, json={"data": {"state": "idle"}})
            assert entered.status_code == 200, entered.text
            assert entered.json()["expires_in"] == TTL_S
            for _ in range(int(TTL_S * 1.6)):  # past its TTL, kept alive
                await asyncio.sleep(1)
                assert (await http.put(path)).status_code == 200
            assert list(await listed(server, channel)) == ["anonymous/worker-1"]
            started = time.monotonic()
        await watcher.until(lambda m: m == {}, timeout=TTL_S + 10)
        assert time.monotonic() - started >= TTL_S - 1
        async with httpx.AsyncClient(base_url=server.http) as http:
            again = await http.put(path)
        assert again.status_code == 404 and "enter again" in again.json()["error"]["message"]
    finally:
        await watcher.client.close()


async def test_forty_members_and_a_watcher_joining_mid_burst_agree_with_the_server(
    server: DevServerProcess, channel: str
) -> None:
    members = [await PresenceClient.connect(server.ws) for _ in range(40)]
    early = await Watcher.join(server.ws, channel)
    try:
        async def churn(i: int, client: PresenceClient) -> None:
            await client.request("presence", channel=channel, op="enter", data={"n": i})
            await asyncio.sleep(0.6)  # under 2 updates a second
            await client.request("presence", channel=channel, op="update",
                                 data={"n": i, "state": "busy"})
            if i % 3 == 0:
                await client.request("presence", channel=channel, op="leave")
            if i % 5 == 0:
                client.abort()

        async def heartbeats() -> None:  # as the SDKs do, every heartbeat_s (2 s here), or faster
            while True:
                await asyncio.sleep(1)
                for i, client in enumerate(members):
                    if i % 3 and i % 5:
                        await client.send_raw(json.dumps(
                            {"action": "presence", "channel": channel, "op": "heartbeat"}))

        beating = asyncio.create_task(heartbeats())
        burst = asyncio.gather(*(churn(i, c) for i, c in enumerate(members)))
        await asyncio.sleep(0.3)
        late = await Watcher.join(server.ws, channel)  # during the burst
        await burst
        expected_count = sum(1 for i in range(40) if i % 3 and i % 5)
        for watcher in (early, late):
            state = await watcher.until(lambda m: len(m) == expected_count, timeout=30)
            assert all(d["state"] == "busy" for d in state.values()), state
        truth = await listed(server, channel)
        assert early.state() == late.state() == truth
        assert sorted(d["n"] for d in truth.values()) == [
            i for i in range(40) if i % 3 and i % 5]
        assert not any(c.errors for c in members), [c.errors for c in members if c.errors]
    finally:
        if "beating" in locals():
            beating.cancel()
        for client in [early.client, late.client if "late" in locals() else None, *members]:
            if client is not None:
                client.abort()


async def test_hostile_presence_frames_get_clear_errors_and_change_nothing(
    server: DevServerProcess, channel: str
) -> None:
    client = await PresenceClient.connect(server.ws)
    try:
        cases = [
            ({"op": "enter", "data": "thinking"}, "invalid_request"),
            ({"op": "enter", "data": {"blob": "x" * 2000}}, "too_large"),
            ({"op": "join", "data": {}}, "invalid_frame"),
            ({"op": "heartbeat"}, "not_found"),
            ({"op": "enter", "data": {"a": 1}, "channel": "no spaces"}, "invalid_channel"),
        ]
        for fields, code in cases:
            reply = await client.request("presence", **{"channel": channel, **fields})
            assert reply["type"] == "error" and reply["code"] == code, (fields, reply)
            assert "Traceback" not in reply["message"]
        reply = await client.request("publish", channel=f"{channel}@presence",
                                     data={"type": "presence", "key": "forged",
                                           "headers": {"operation": "insert"}})
        assert reply["code"] == "forbidden"
        # Many updates at once: the excess is rate_limited, the state stays the last accepted.
        await client.request("presence", channel=channel, op="enter", data={"v": 0})
        replies = await asyncio.gather(*(
            client.request("presence", channel=channel, op="update", data={"v": i})
            for i in range(1, 11)))
        limited = [r for r in replies if r["type"] == "error"]
        assert limited and all(r["code"] == "rate_limited" for r in limited)
        assert all(r["detail"]["retry_after_ms"] > 0 for r in limited)
        accepted = [i + 1 for i, r in enumerate(replies) if r["type"] == "presence"]
        truth = await listed(server, channel)
        (data,) = truth.values()
        assert data["v"] in [0, *accepted]
    finally:
        await client.close()
