"""The client against the fake server's newer wire features: batched frames, paused replays,
rate limits, request tokens, the 32 KB frame limit, heads in pongs, byte-stream slices."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from switchboard.client import Message, RateLimitedError, Subscription, Switchboard
from switchboard.client._connection import ConnectionLostError

from .conftest import FAST
from .fake_server import FakeSwitchboard, wait_for

Make = Callable[..., Switchboard]


async def take(sub: Subscription, n: int, timeout: float = 10.0) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(timeout):
        async for message in sub:
            out.append(message)
            if len(out) == n:
                break
    return out


def frames_of(fake: FakeSwitchboard, kind: str, channel: str) -> list[dict[str, Any]]:
    return [f for f in fake.sent_frames if f.get("type") == kind and f.get("channel") == channel]


# -- batched frames -----------------------------------------------------------------------


async def test_a_backlog_and_live_batches_arrive_in_messages_frames_one_by_one(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("batch:a")
    await ch.publish_many({"n": n, "pad": "x" * 200} for n in range(500))
    sub = ch.subscribe(from_="-1")
    assert [m.data["n"] for m in await take(sub, 500)] == list(range(500))
    (subscribe,) = [f for f in fake.ws_frames if f.get("action") == "subscribe"]
    assert subscribe["batch"] is True
    backlog = frames_of(fake, "messages", "batch:a")
    # 500 messages of ~300 bytes in frames under 32 KB: a few frames, not 500.
    assert 4 <= len(backlog) <= 10 and not frames_of(fake, "message", "batch:a")
    assert all(len(json.dumps(f, separators=(",", ":"))) < 32 * 1024 for f in backlog)
    # Live: one stream batch of 20 arrives as one frame; delivered in order, one by one.
    await ch.publish_many({"n": n} for n in range(500, 520))
    assert [m.data["n"] for m in await take(sub, 20)] == list(range(500, 520))
    assert len(frames_of(fake, "messages", "batch:a")) == len(backlog) + 1
    assert sub.stats.delivered == 520 and sub.stats.duplicates == 0
    await sub.aclose()


async def test_batched_frames_keep_dedupe_and_gap_filling(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("batch:b")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: any(fake.subs.values()))
    fake.duplicate_live = True  # every live frame twice
    await ch.publish_many(range(1, 11))
    assert [m.data for m in await take(sub, 10)] == list(range(1, 11))
    fake.duplicate_live = False
    fake.drop_live = lambda m: 12 <= m["data"] <= 14  # lost from a batch: a hole
    await ch.publish_many(range(11, 21))
    assert [m.data for m in await take(sub, 10)] == list(range(11, 21))
    assert sub.stats.duplicates == 10 and sub.stats.gaps == 1
    assert len(frames_of(fake, "messages", "batch:b")) == 3  # twice the first, once the second


async def test_single_frames_when_batching_is_turned_off(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client(options=dataclasses.replace(FAST, batch_frames=False))
    ch = sb.channel("batch:c")
    await ch.publish_many(range(30))
    assert [m.data for m in await take(ch.subscribe(from_="-1"), 30)] == list(range(30))
    (subscribe,) = [f for f in fake.ws_frames if f.get("action") == "subscribe"]
    assert "batch" not in subscribe
    assert len(frames_of(fake, "message", "batch:c")) == 30
    assert not frames_of(fake, "messages", "batch:c")


# -- replay paused ------------------------------------------------------------------------


async def test_a_paused_replay_continues_from_the_offset_without_an_error(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("replay:a")
    acks = await ch.publish_many(range(1, 351))
    fake.pause_replay_after = 100
    sub = ch.subscribe(from_="-1")
    got: list[int] = []
    async with asyncio.timeout(10):
        async for message in sub:
            got.append(message.data)
            if len(got) <= 30:
                # A slow application: the resubscribes overtake it, and what it has not
                # taken yet must be kept, not dropped and not asked for again.
                await asyncio.sleep(0.005)
            if len(got) == 350:
                break
    assert got == list(range(1, 351))
    assert fake.paused_replays == 3 and sb.connection_stats.replay_resumes == 3
    froms = [f["from"] for f in fake.ws_frames if f.get("action") == "subscribe"]
    assert froms == ["-1", acks[99].offset, acks[199].offset, acks[299].offset]
    assert sub.stats.duplicates == 0 and sub.stats.gaps == 0
    assert sb.connection_stats.reconnects == 0


# -- rate_limited -------------------------------------------------------------------------


async def test_rate_limited_publishes_wait_the_time_asked_and_store_once(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    fake.rate_limit_publishes, fake.retry_after_ms = 3, 150
    started = time.monotonic()
    ack = await sb.channel("rl:a").publish({"n": 1})
    elapsed = time.monotonic() - started
    assert ack.seq == 1 and not ack.duplicate
    attempts = fake.publish_attempts
    assert len(attempts) == 4
    # The backoff of FAST is at most 50 ms: these waits are the server's 150 ms.
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(attempts))
    assert 0.44 <= elapsed < 2
    sent = [f for f in fake.ws_frames if f.get("action") == "publish"]
    assert {f["token"] for f in sent} == {sent[0]["token"]}
    assert [f.get("retry") for f in sent] == [None, True, True, True]
    assert len(fake.channels["rl:a"].messages) == 1


async def test_rate_limited_surfaces_only_once_the_publish_deadline_passed(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client(options=dataclasses.replace(FAST, publish_deadline=0.7))
    fake.rate_limit_publishes, fake.retry_after_ms = 1000, 200
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        await sb.channel("rl:b").publish({"n": 1}, id="k1")
    elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 1.2
    assert info.value.retry_after == 0.2
    assert 3 <= len(fake.publish_attempts) <= 5  # one every 200 ms, not a hot loop
    assert "rl:b" not in fake.channels or not fake.channels["rl:b"].messages


# -- retries of publishes without an id ---------------------------------------------------


async def test_a_no_id_publish_over_http_whose_answer_was_lost_is_stored_once(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    fake.lose_http_answers = 2
    ack = await sb.channel("tok:a").publish({"pad": "y" * 40_000})
    assert ack.duplicate is True and ack.seq == 1
    assert len(fake.channels["tok:a"].messages) == 1
    bodies = [body for body, _ in fake.http_publishes]
    assert len(bodies) == 3 and {b["token"] for b in bodies} == {bodies[0]["token"]}
    assert not any("id" in b for b in bodies)
    assert [retry for _, retry in fake.http_publishes] == [None, "true", "true"]


async def test_without_the_retry_flag_the_token_alone_would_store_twice(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    """The fake looks a token up only on a retry, as the server does: this is what the
    client's retry flag prevents."""
    sb = make_client()
    frame = {"action": "publish", "channel": "tok:b", "data": 1, "token": "t-1"}
    await sb.connection.request(frame, 2)
    assert not (await sb.connection.request(frame, 2))["duplicate"]
    assert (await sb.connection.request({**frame, "retry": True}, 2))["duplicate"]
    assert len(fake.channels["tok:b"].messages) == 2


# -- the 32 KB frame limit ----------------------------------------------------------------


async def test_a_message_over_the_frame_limit_goes_over_http_with_the_same_ack(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("big:a")
    small = await ch.publish({"pad": "x" * 31_000})  # under 32 KB: the socket
    big = await ch.publish({"pad": "x" * 40_000})
    accented = await ch.publish({"pad": "é" * 17_000})  # 34 KB of UTF-8, 17,000 characters
    under = await ch.publish({"pad": "é" * 15_000})  # 30 KB of UTF-8: still the socket
    assert [a.seq for a in (small, big, accented, under)] == [1, 2, 3, 4]
    assert sb.publishes_over_http == 2 and len(fake.http_publishes) == 2
    socket_sizes = [len(json.dumps(f, ensure_ascii=False).encode())
                    for f in fake.ws_frames if f.get("action") == "publish"]
    assert len(socket_sizes) == 2 and max(socket_sizes) < 32_000
    assert fake.closed_too_big == 0 and sb.connection_stats.reconnects == 0
    stored = [m["data"]["pad"] for m in fake.channels["big:a"].messages]
    assert stored == ["x" * 31_000, "x" * 40_000, "é" * 17_000, "é" * 15_000]


async def test_the_fake_closes_a_socket_on_a_frame_over_32_kb(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    """The fake enforces API Gateway's limit, so the test above can fail."""
    sb = make_client()
    await sb.channel("big:b").publish(1)
    frame = {"action": "publish", "channel": "big:b", "data": {"pad": "x" * 40_000}}
    with pytest.raises((ConnectionLostError, TimeoutError)):
        await sb.connection.request(frame, 2)
    await wait_for(lambda: fake.closed_too_big == 1)


# -- a lost last message ------------------------------------------------------------------


async def test_an_idle_subscriber_finds_a_lost_last_message_through_pong_heads(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client(options=dataclasses.replace(FAST, idle_check=0.3))
    ch = sb.channel("lost:a")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: any(fake.subs.values()))
    fake.drop_live = lambda m: m["data"] == 3  # the fan-out gives up on the last one
    for n in (1, 2, 3):
        await ch.publish(n)
    started = time.monotonic()
    assert [m.data for m in await take(sub, 3, timeout=5)] == [1, 2, 3]
    assert time.monotonic() - started < 2
    assert sub.stats.tail_gaps == 1 and sb.connection_stats.head_checks >= 1
    asked = [f for f in fake.ws_frames if f.get("action") == "ping" and f.get("channels")]
    assert asked[0]["channels"] == ["lost:a"]
    # Quiet and complete: one more check after the fetch at most, not a ping every tick.
    pings = fake.pings
    await asyncio.sleep(1.2)
    assert fake.pings - pings <= 1
    assert sub.stats.tail_gaps == 1


async def test_an_idle_check_that_finds_nothing_missing_fetches_nothing(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client(options=dataclasses.replace(FAST, idle_check=0.2))
    ch = sb.channel("lost:b")
    sub = ch.subscribe(from_="-1")
    await ch.publish_many([1, 2])
    assert [m.data for m in await take(sub, 2)] == [1, 2]
    gets = len(fake.http_auth)
    await wait_for(lambda: sb.connection_stats.head_checks >= 1)
    await asyncio.sleep(0.2)
    assert len(fake.http_auth) == gets  # no history read
    assert sub.stats.tail_gaps == 0 and sub.stats.gaps == 0


async def test_idle_checks_can_be_turned_off(make_client: Make, fake: FakeSwitchboard) -> None:
    sb = make_client(options=dataclasses.replace(FAST, idle_check=0, ping_interval=0.2))
    sub = sb.channel("lost:c").subscribe()
    await sub.start()
    await wait_for(lambda: fake.pings >= 2)
    assert sb.connection_stats.head_checks == 0
    assert not any(f.get("channels") for f in fake.ws_frames if f.get("action") == "ping")


# -- byte streams -------------------------------------------------------------------------


async def test_a_64_kb_byte_stream_entry_is_joined_from_its_slices(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("bytes:a")
    payload = os.urandom(64 * 1024)
    await ch.publish({"before": True})
    await fake.append_bytes("bytes:a", payload)
    await ch.publish({"after": True})
    replayed = await take(ch.subscribe(from_="-1"), 3)
    assert [m.seq for m in replayed] == [1, 2, 3]
    entry = replayed[1]
    assert entry.encoding == "base64" and entry.bytes == payload
    assert entry.data == base64.b64encode(payload).decode()
    assert replayed[0].bytes is None and replayed[0].data == {"before": True}
    assert entry.to_dict()["encoding"] == "base64" and "encoding" not in replayed[0].to_dict()
    slices = [f["slice"] for f in frames_of(fake, "message", "bytes:a") if "slice" in f]
    assert slices == [[0, 3], [1, 3], [2, 3]]
    # Over HTTP history the entry is whole, with the same encoding.
    page = await ch.history()
    assert page.messages[1].bytes == payload and page.messages[1].encoding == "base64"


async def test_live_slices_are_joined_and_a_lost_slice_is_read_from_history(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("bytes:b")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: any(fake.subs.values()))
    first, second = os.urandom(50_000), os.urandom(70_000)
    await fake.append_bytes("bytes:b", first)
    (got,) = await take(sub, 1)
    assert got.bytes == first
    fake.drop_sent = lambda f: f.get("slice") == [1, 4]
    await fake.append_bytes("bytes:b", second)
    await ch.publish("next")  # reveals the hole
    entry, after = await take(sub, 2)
    assert entry.bytes == second and after.data == "next"
    assert sub.stats.gaps == 1


async def test_a_late_error_about_another_request_leaves_the_subscription_alone(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    """An error frame that names the channel but the ref of something else (a publish whose
    caller stopped waiting, an earlier subscribe) is not about the subscription."""
    sb = make_client()
    ch = sb.channel("late:a")
    sub = ch.subscribe(from_="-1")
    await ch.publish(1)
    assert [m.data for m in await take(sub, 1)] == [1]
    for code in ("too_large", "rate_limited", "unavailable"):
        sb.connection._dispatch(json.dumps({
            "type": "error", "ref": "c424242", "channel": "late:a", "code": code,
            "message": "about a publish nobody waits for", "detail": {},
        }))
    await ch.publish(2)
    assert [m.data for m in await take(sub, 1)] == [2]
    assert [f["from"] for f in fake.ws_frames if f.get("action") == "subscribe"] == ["-1"]
