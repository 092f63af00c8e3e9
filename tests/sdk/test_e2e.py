"""The SDK against a real `switchboard dev`: sockets killed under it while messages flow, and
the server's newer wire features (batched frames, paused replays, request tokens, the 32 KB
frame limit, heads in pongs, byte-stream slices)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from switchboard.client import (
    EpochMismatchError,
    Options,
    Switchboard,
    read_text,
    stream_text,
)
from switchboard.client import sync as sync_client
from tests.support.devserver import running

from .devserver import DevServer

pytestmark = pytest.mark.e2e

OPTIONS = Options(backoff_initial=0.05, backoff_max=0.5, ping_interval=10.0, pong_timeout=5.0)
TOTAL = 2_000
BATCH = 50


def unique(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex[:10]}"


async def test_exactly_once_in_order_while_sockets_are_killed(dev_server: DevServer) -> None:
    name = unique("e2e")
    publisher = Switchboard(dev_server.url, options=OPTIONS)
    reader = Switchboard(dev_server.url, options=OPTIONS)
    received: list[int] = []
    kills = {"client_abort": 0, "gateway_drop": 0}
    try:
        subscription = reader.channel(name).subscribe(from_="-1")
        await subscription.start()

        async def consume() -> None:
            async for message in subscription:
                received.append(message.data["n"])
                if len(received) == TOTAL:
                    return

        consumer = asyncio.create_task(consume())
        channel = publisher.channel(name)
        started = time.monotonic()
        for batch, first in enumerate(range(0, TOTAL, BATCH)):
            await channel.publish_many(
                ({"n": n}, f"m{n}") for n in range(first, min(first + BATCH, TOTAL))
            )
            if batch % 4 == 1:
                # Alternate the two failures: the client's socket dies (network), or the
                # gateway loses every socket without $disconnect (a connection-layer restart).
                if batch % 8 == 1:
                    ws = reader.connection.websocket
                    if ws is not None:
                        ws.transport.abort()
                        kills["client_abort"] += 1
                else:
                    kills["gateway_drop"] += await asyncio.to_thread(
                        dev_server.drop_all_connections
                    )
                await asyncio.sleep(0.05)
        await asyncio.wait_for(consumer, 120)
        elapsed = time.monotonic() - started
    finally:
        await reader.aclose()
        await publisher.aclose()
    expected = list(range(TOTAL))
    losses = len(set(expected) - set(received))
    duplicates = len(received) - len(set(received))
    figures = {
        "messages": TOTAL,
        "received": len(received),
        "losses": losses,
        "duplicates_delivered": duplicates,
        "duplicates_dropped": subscription.stats.duplicates,
        "gaps_filled": subscription.stats.gaps,
        "reconnects_survived": reader.connection_stats.reconnects,
        "kills": kills,
        "seconds": round(elapsed, 1),
    }
    print("\nSDK resume figures:", json.dumps(figures))
    assert received == expected, figures
    assert reader.connection_stats.reconnects >= 8, figures


async def test_token_stream_write_rate_and_reader(dev_server: DevServer) -> None:
    name = unique("tok")

    async def llm(n: int, rate: float) -> AsyncIterator[str]:
        for i in range(n):
            yield f"tok{i} "
            await asyncio.sleep(1 / rate)

    async with Switchboard(dev_server.url, options=OPTIONS) as sb:
        channel = sb.channel(name)
        reader = asyncio.create_task(
            asyncio.wait_for(_join(read_text(channel, stream="answer", from_="-1")), 60)
        )
        started = time.monotonic()
        result = await stream_text(channel, llm(200, 100), stream="answer")
        elapsed = time.monotonic() - started
        text = await reader
    assert text == "".join(f"tok{i} " for i in range(200)) == result.text
    rate = result.messages / elapsed
    print(f"\ntoken streamer: {result.chunks} chunks in {elapsed:.2f} s -> "
          f"{result.messages} writes ({rate:.1f} writes/s)")
    assert rate <= 26


async def _join(chunks: AsyncIterator[str]) -> str:
    return "".join([c async for c in chunks])


async def test_recreated_channel_is_an_epoch_mismatch(dev_server: DevServer) -> None:
    name = unique("ep")
    async with Switchboard(dev_server.url, options=OPTIONS) as sb:
        channel = sb.channel(name)
        ack = await channel.publish("old life")
        await channel.delete()
        await channel.publish("new life")
        with pytest.raises(EpochMismatchError):
            async with channel.subscribe(from_=ack.offset) as subscription:
                await subscription.__anext__()
        # Acting on it: follow the new log from the beginning.
        async with channel.subscribe(from_="-1") as subscription:
            assert (await subscription.__anext__()).data == "new life"


def test_sync_client_round_trip(dev_server: DevServer) -> None:
    name = unique("sync")
    options = dataclasses.replace(OPTIONS)
    with sync_client.Switchboard(dev_server.url, options=options) as sb:
        channel = sb.channel(name)
        first = channel.publish({"step": 1}, id="step-1")
        again = channel.publish({"step": 1}, id="step-1")
        assert again.duplicate and again.seq == first.seq
        with channel.subscribe(from_="-1") as subscription:
            channel.publish({"step": 2})
            assert [next(subscription).data["step"] for _ in range(2)] == [1, 2]
        assert channel.info().head_seq == 2


@pytest.mark.timeout(60)
async def test_a_message_over_32_kb_is_published_over_http_instead_of_the_socket(
    dev_server: DevServer,
) -> None:
    """API Gateway closes a socket (1009) on an inbound frame over 32 KB, and the dev server
    does too: `Channel.publish` sends such a message over HTTP, with the same ack."""
    name = f"sdk:{uuid.uuid4().hex[:10]}"
    async with Switchboard(dev_server.url, options=OPTIONS) as sb, \
            Switchboard(dev_server.url, options=OPTIONS) as reader:
        subscription = reader.channel(name).subscribe(from_="-1")
        await subscription.start()
        channel = sb.channel(name)
        ack = await asyncio.wait_for(channel.publish({"pad": "x" * 40_000}), 15)
        after = await channel.publish({"n": 2})
        assert (ack.seq, ack.duplicate, after.seq) == (1, False, 2)
        assert sb.publishes_over_http == 1
        assert sb.connection_stats.reconnects == 0  # the socket was never closed with 1009
        first = await asyncio.wait_for(subscription.__anext__(), 15)
        assert first.data == {"pad": "x" * 40_000}
        assert (await asyncio.wait_for(subscription.__anext__(), 15)).data == {"n": 2}


async def _frames_out(url: str) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        return sum(c["framesOut"] for c in (await http.get("/_dev/connections")).json())


async def test_a_backlog_replays_in_batched_frames(dev_server: DevServer) -> None:
    name = unique("backlog")
    total = 3_000
    async with Switchboard(dev_server.url, options=OPTIONS) as publisher:
        for first in range(0, total, 500):
            await publisher.channel(name).publish_many(
                ({"n": n, "text": f"token {n} " * 8}, f"m{n}") for n in range(first, first + 500)
            )
    figures: dict[str, dict[str, float]] = {}
    for mode, batch in (("single", False), ("batched", True)):
        options = dataclasses.replace(OPTIONS, batch_frames=batch)
        async with Switchboard(dev_server.url, options=options) as reader:
            before = await _frames_out(dev_server.url)
            started = time.monotonic()
            received = []
            async with reader.channel(name).subscribe(from_="-1") as subscription:
                async for message in subscription:
                    received.append(message.data["n"])
                    if len(received) == total:
                        break
            elapsed = time.monotonic() - started
            frames = await _frames_out(dev_server.url) - before
        assert received == list(range(total)), mode
        figures[mode] = {"seconds": round(elapsed, 2), "frames": frames}
    print("\nbacklog replay of", total, "messages:", json.dumps(figures))
    # ~100-byte messages, frames under 32 KB: a few hundred messages per frame.
    assert figures["single"]["frames"] >= total
    assert figures["batched"]["frames"] <= total // 50


async def test_a_no_id_publish_whose_ack_was_lost_with_a_dropped_socket_is_stored_once(
    dev_server: DevServer,
) -> None:
    """Stored, then the answer is lost and the gateway drops the socket without
    $disconnect: the re-send carries the same token with `retry` and is found."""
    name = unique("token")
    async with Switchboard(dev_server.url, options=OPTIONS) as sb:
        await sb.channel(name).publish({"n": 0})  # connected, channel created
        connection = sb.connection
        sent: list[dict[str, Any]] = []
        request = connection.request

        async def recording(frame: dict[str, Any], timeout: float) -> dict[str, Any]:
            sent.append(frame)
            return await request(frame, timeout)

        dispatch = connection._dispatch
        dropped: list[str] = []

        def losing_the_ack(raw: str | bytes) -> None:
            if not dropped and json.loads(raw).get("type") == "ack":
                dropped.append("ack")  # lost in transit...
                # ...and the gateway loses the socket too (no $disconnect).
                asyncio.get_running_loop().run_in_executor(None, dev_server.drop_all_connections)
                return
            dispatch(raw)

        connection.request = recording  # type: ignore[method-assign]
        connection._dispatch = losing_the_ack  # type: ignore[method-assign]
        ack = await asyncio.wait_for(sb.channel(name).publish({"n": 1}), 30)
        info = await sb.channel(name).info()
    assert dropped == ["ack"]
    assert ack.duplicate is True and ack.seq == 2
    assert info.head_seq == 2  # stored once
    assert len(sent) >= 2 and {f["token"] for f in sent} == {sent[0]["token"]}
    assert "retry" not in sent[0] and all(f["retry"] is True for f in sent[1:])
    assert sb.connection_stats.reconnects >= 1


async def test_an_idle_subscriber_fetches_a_lost_last_message_after_a_head_check(
    dev_server: DevServer,
) -> None:
    """The fan-out's loss is simulated where it shows (the frame never reaches the client);
    the ping with channels, the pong's heads and the history read are the real ones."""
    name = unique("idle")
    options = dataclasses.replace(OPTIONS, idle_check=1.0)
    async with Switchboard(dev_server.url, options=options) as reader, \
            Switchboard(dev_server.url, options=OPTIONS) as publisher:
        subscription = reader.channel(name).subscribe(from_="-1")
        await subscription.start()
        dispatch = reader.connection._dispatch

        def losing_the_third(raw: str | bytes) -> None:
            frame = json.loads(raw)
            if frame.get("type") == "message" and frame.get("data") == {"n": 3}:
                return
            if frame.get("type") == "messages":  # 2 and 3 may share a frame
                frame["messages"] = [m for m in frame["messages"] if m["data"] != {"n": 3}]
                raw = json.dumps(frame)
            dispatch(raw)

        reader.connection._dispatch = losing_the_third  # type: ignore[method-assign]
        for n in (1, 2, 3):
            await publisher.channel(name).publish({"n": n})
        started = time.monotonic()
        got = [(await asyncio.wait_for(subscription.__anext__(), 15)).data["n"]
               for _ in range(3)]
        waited = time.monotonic() - started
        assert got == [1, 2, 3]
        assert subscription.stats.tail_gaps == 1
        assert reader.connection_stats.head_checks >= 1
        assert waited < 8
        await subscription.aclose()


@pytest.mark.timeout(90)
async def test_a_64_kb_byte_stream_entry_arrives_whole_replayed_and_live(
    dev_server: DevServer,
) -> None:
    name = unique("bytes")
    replayed_payload, live_payload = os.urandom(64 * 1024), os.urandom(50_000)
    octets = {"Content-Type": "application/octet-stream"}
    async with httpx.AsyncClient(base_url=dev_server.url) as http:
        assert (await http.put(f"/v1/stream/{name}", headers=octets)).status_code == 201
        posted = await http.post(f"/v1/stream/{name}", content=replayed_payload, headers=octets)
        assert posted.status_code == 204
        async with Switchboard(dev_server.url, options=OPTIONS) as sb:
            subscription = sb.channel(name).subscribe(from_="-1")
            entry = await asyncio.wait_for(subscription.__anext__(), 20)
            assert entry.encoding == "base64" and entry.bytes == replayed_payload
            posted = await http.post(f"/v1/stream/{name}", content=live_payload, headers=octets)
            assert posted.status_code == 204
            live = await asyncio.wait_for(subscription.__anext__(), 20)
            assert live.seq == 2 and live.bytes == live_payload
            assert subscription.stats.gaps == 0  # joined from slices, not read from history
            page = await sb.channel(name).history()
            assert [m.bytes for m in page.messages] == [replayed_payload, live_payload]
            await subscription.aclose()


@pytest.fixture(scope="module")
def short_lambdas() -> Iterator[DevServer]:
    """A dev server whose functions time out after 3 s: a replay stops after about 2 s
    (the invocation's deadline less the margin kept to answer) and says where it paused."""
    with running("--no-auth", "--no-agent",
                 env={"SWITCHBOARD_DEV_LAMBDA_TIMEOUT_S": "3"}) as server:
        yield server


@pytest.mark.timeout(180)
async def test_a_replay_paused_at_the_invocation_deadline_continues_unseen(
    short_lambdas: DevServer,
) -> None:
    name = unique("paused")
    total = 3_000
    async with Switchboard(short_lambdas.url, options=OPTIONS) as publisher:
        for first in range(0, total, 100):
            await publisher.channel(name).publish_many(
                ({"n": n}, f"m{n}") for n in range(first, first + 100)
            )
    options = dataclasses.replace(OPTIONS, batch_frames=False)  # the slower replay
    async with Switchboard(short_lambdas.url, options=options) as reader:
        received = []
        started = time.monotonic()
        async with reader.channel(name).subscribe(from_="-1") as subscription:
            async for message in subscription:
                received.append(message.data["n"])
                if len(received) == total:
                    break
        elapsed = time.monotonic() - started
        stats = reader.connection_stats
    print(f"\nreplay of {total} messages with 3 s invocations: {elapsed:.1f} s, "
          f"{stats.replay_resumes} pauses resumed")
    assert received == list(range(total))
    assert stats.replay_resumes >= 1 and stats.reconnects == 0
    assert subscription.stats.duplicates == 0 and subscription.stats.gaps == 0
