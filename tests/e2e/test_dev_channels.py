"""Channels end to end: real WebSocket and HTTP clients against `switchboard dev`.

Every message here goes through the real path: handler -> DynamoDB (moto) -> stream ->
pump -> fan-out handler -> Management API -> WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import httpx
import pytest

from .conftest import DevServerProcess, WsClient, moto_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FRAME_LIMIT = 32 * 1024  # API Gateway's WebSocket frame limit


def seqs(messages: list[dict[str, object]]) -> list[int]:
    return [int(str(m["seq"])) for m in messages]


async def test_subscribe_and_publish_across_connections(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    subscribers = [await WsClient.connect(dev_server.ws) for _ in range(3)]
    publisher = await WsClient.connect(dev_server.ws)
    try:
        for client in subscribers:
            reply = await client.request("subscribe", channel=unique_channel, **{"from": "-1"})
            assert reply["type"] == "subscribed"
            assert reply["head"] == "-1"
        acks = [
            await publisher.request("publish", channel=unique_channel, data={"n": n})
            for n in range(5)
        ]
        assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]
        async with httpx.AsyncClient(base_url=dev_server.http) as http:
            response = await http.post(
                f"/v1/channels/{unique_channel}/messages", json={"data": {"n": 5}}
            )
        assert response.status_code in (200, 201), response.text
        for client in subscribers:
            received = await client.wait_messages(6)
            assert seqs(received) == [1, 2, 3, 4, 5, 6]
            assert [m["data"] for m in received] == [{"n": n} for n in range(6)]
            assert all(m["channel"] == unique_channel for m in received)
        # The publisher did not subscribe: it gets acks, never the messages.
        assert publisher.messages == []
    finally:
        for client in [*subscribers, publisher]:
            await client.close()


async def test_resume_after_abrupt_close_loses_and_duplicates_nothing(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    total = 60
    publisher = await WsClient.connect(dev_server.ws)
    first = await WsClient.connect(dev_server.ws)
    await first.request("subscribe", channel=unique_channel, **{"from": "-1"})

    async def publish_all() -> None:
        for n in range(total):
            await publisher.request("publish", channel=unique_channel, data={"n": n})

    publishing = asyncio.create_task(publish_all())
    await first.wait_messages(10)
    first.abort()  # no closing handshake: the client crashed mid-stream
    seen = list(first.messages)
    last_offset = seen[-1]["offset"]

    second = await WsClient.connect(dev_server.ws)
    try:
        reply = await second.request("subscribe", channel=unique_channel, **{"from": last_offset})
        assert reply["from"] == last_offset
        await publishing
        remaining = total - len(seen)
        await second.wait_messages(remaining)
        await asyncio.sleep(0.3)  # give any duplicate from the replay/live overlap time
        combined = {int(m["seq"]): m for m in [*seen, *second.messages]}
        assert sorted(combined) == list(range(1, total + 1))
        assert [combined[s]["data"] for s in sorted(combined)] == [{"n": n} for n in range(total)]
        # Nothing at or before the resume offset is delivered again.
        assert min(seqs(second.messages)) == int(seen[-1]["seq"]) + 1
        # Per subscription, seqs only go up (duplicates only at the replay/live boundary).
        resumed = seqs(second.messages)
        assert all(b >= a for a, b in itertools.pairwise(resumed))
    finally:
        await second.close()
        await publisher.close()


async def test_backlog_of_1000_replays_in_order_in_frames_under_32_kb(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    big = "x" * 40_000  # over one frame: these messages must arrive fragmented
    batch = [
        {"data": {"n": n, "pad": big if n % 250 == 0 else ""}} for n in range(1000)
    ]
    async with httpx.AsyncClient(base_url=dev_server.http, timeout=60) as http:
        for start in range(0, 1000, 250):
            response = await http.post(
                f"/v1/channels/{unique_channel}/messages", json=batch[start : start + 250]
            )
            assert response.status_code in (200, 201), response.text
    client = await WsClient.connect(dev_server.ws)
    try:
        reply = await client.request("subscribe", channel=unique_channel, **{"from": "-1"})
        assert reply["head"].endswith("1000")
        received = await client.wait_messages(1000, timeout=60)
        assert seqs(received) == list(range(1, 1001))
        assert [m["data"]["n"] for m in received] == list(range(1000))
        assert len(received[0]["data"]["pad"]) == 40_000
        assert client.frame_sizes, "no frames recorded"
        assert max(client.frame_sizes) <= FRAME_LIMIT
        # The 40 KB messages really were split (and reassembled above).
        assert len(client.frame_sizes) > 1000 + 1
    finally:
        await client.close()


async def test_concurrent_publishers_get_unique_gapless_seqs(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    publishers, each = 5, 20
    subscriber = await WsClient.connect(dev_server.ws)
    await subscriber.request("subscribe", channel=unique_channel, **{"from": "-1"})
    clients = [await WsClient.connect(dev_server.ws) for _ in range(publishers)]
    try:

        async def run(index: int, client: WsClient) -> list[int]:
            acks = []
            for i in range(each):
                while True:
                    reply = await client.request(
                        "publish", channel=unique_channel, data={"p": index, "i": i}
                    )
                    if reply.get("code") != "rate_limited":  # the contract's "retry later"
                        break
                    await asyncio.sleep(reply["detail"]["retry_after_ms"] / 1000)
                assert reply["type"] == "ack", reply
                acks.append(reply)
            return [int(a["seq"]) for a in acks]

        results = await asyncio.gather(*(run(i, c) for i, c in enumerate(clients)))
        all_seqs = sorted(s for r in results for s in r)
        assert all_seqs == list(range(1, publishers * each + 1))
        for r in results:  # one publisher's messages keep their order
            assert r == sorted(r)
        received = await subscriber.wait_messages(publishers * each)
        assert seqs(received)[: publishers * each] == list(range(1, publishers * each + 1))
    finally:
        for client in [*clients, subscriber]:
            await client.close()


async def test_a_vanished_client_is_cleaned_up_when_fanout_gets_gone(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    tag = unique_channel.split(":")[1]
    ghost = await WsClient.connect(f"{dev_server.ws}?client={tag}")
    watcher = await WsClient.connect(dev_server.ws)
    publisher = await WsClient.connect(dev_server.ws)
    try:
        await ghost.request("subscribe", channel=unique_channel, **{"from": "now"})
        await watcher.request("subscribe", channel=unique_channel, **{"from": "now"})
        async with httpx.AsyncClient(base_url=dev_server.http) as http:
            listing = (await http.get("/_dev/connections")).json()
            (ghost_id,) = [c["connectionId"] for c in listing if c["query"].get("client") == tag]
            # The gateway loses the socket and, like API Gateway at times, sends no $disconnect.
            assert (await http.post(f"/_dev/connections/{ghost_id}/drop")).status_code == 204
        dynamodb = moto_client(dev_server)
        key = {"pk": {"S": f"sub#{unique_channel}"}, "sk": {"S": ghost_id}}
        table = _connections_table(dynamodb)
        assert "Item" in dynamodb.get_item(TableName=table, Key=key)

        await publisher.request("publish", channel=unique_channel, data="after the ghost left")
        await watcher.wait_messages(1)
        # The fan-out's post got 410 GoneException and removed the stale subscription.
        dev_server.wait_for_line(rf"@connections POST {ghost_id} 410")
        for _ in range(50):
            if "Item" not in dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True):
                break
            await asyncio.sleep(0.1)
        assert "Item" not in dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        conn_key = {"pk": {"S": f"conn#{ghost_id}"}, "sk": {"S": "conn"}}
        assert "Item" not in dynamodb.get_item(TableName=table, Key=conn_key)
        # Later publishes no longer try the ghost.
        gone_posts = _count(dev_server, f"@connections POST {ghost_id} 410")
        await publisher.request("publish", channel=unique_channel, data="again")
        await watcher.wait_messages(2)
        assert _count(dev_server, f"@connections POST {ghost_id} 410") == gone_posts
    finally:
        for client in (watcher, publisher):
            await client.close()


async def test_malformed_frames_get_error_frames_and_the_connection_stays_usable(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    client = await WsClient.connect(dev_server.ws)
    try:
        bad = [
            "not json",
            "[1, 2]",
            "{}",
            json.dumps({"action": "fly"}),
            json.dumps({"action": "publish", "channel": unique_channel}),
            b"\x00\x01binary",
        ]
        for frame in bad:
            await client.send_raw(frame)
        deadline = asyncio.get_running_loop().time() + 15
        while len(client.errors) < len(bad) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert len(client.errors) == len(bad), client.errors
        assert {e["code"] for e in client.errors} == {"invalid_frame"}
        assert all(e["message"] for e in client.errors)
        reply = await client.request("subscribe", channel="bad channel!", **{"from": "-1"})
        assert (reply["type"], reply["code"]) == ("error", "invalid_channel")
        # Still usable: ping, subscribe, publish, receive.
        assert (await client.request("ping"))["type"] == "pong"
        await client.request("subscribe", channel=unique_channel, **{"from": "-1"})
        ack = await client.request("publish", channel=unique_channel, data="fine")
        assert ack["type"] == "ack"
        assert [m["data"] for m in await client.wait_messages(1)] == ["fine"]
    finally:
        await client.close()


def _connections_table(dynamodb: object) -> str:
    names = dynamodb.list_tables()["TableNames"]  # type: ignore[attr-defined]
    (name,) = [n for n in names if n.endswith("connections")]
    return str(name)


def _count(server: DevServerProcess, text: str) -> int:
    return sum(text in line for line in list(server.lines))
