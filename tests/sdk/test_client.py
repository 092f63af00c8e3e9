"""The async client against the in-process fake: resume, dedupe, gap fill, retries."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from switchboard.client import (
    EpochMismatchError,
    NotFoundError,
    OffsetExpiredError,
    Switchboard,
    UnauthorizedError,
)

from .conftest import FAST
from .fake_server import FakeSwitchboard, wait_for

Make = Callable[..., Switchboard]


async def collect(sub, n: int, timeout: float = 10.0) -> list[int]:  # type: ignore[no-untyped-def]
    out: list[int] = []
    async with asyncio.timeout(timeout):
        async for message in sub:
            out.append(message.data)
            if len(out) == n:
                break
    return out


async def test_publish_then_subscribe_from_the_beginning(make_client: Make) -> None:
    sb = make_client()
    ch = sb.channel("runs:a")
    acks = [await ch.publish(i) for i in range(1, 4)]
    assert [a.seq for a in acks] == [1, 2, 3] and not any(a.duplicate for a in acks)
    sub = ch.subscribe(from_="-1")
    assert await collect(sub, 3) == [1, 2, 3]
    assert sub.position == acks[-1].offset
    await sub.aclose()


async def test_resume_from_a_persisted_position_after_a_restart(make_client: Make) -> None:
    first = make_client()
    ch = first.channel("runs:b")
    await ch.publish_many(range(1, 11))
    sub = ch.subscribe(from_="-1")
    assert await collect(sub, 4) == [1, 2, 3, 4]
    saved = sub.position
    await first.aclose()

    second = make_client()  # a new process, from the persisted offset
    assert saved is not None
    assert await collect(second.channel("runs:b").subscribe(from_=saved), 6) == list(
        range(5, 11)
    )


async def test_live_then_killed_sockets_lose_and_duplicate_nothing(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:c")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: fake.connections == 1 and any(fake.subs.values()))
    received: list[int] = []

    async def consume() -> None:
        async for message in sub:
            received.append(message.data)
            if len(received) == 300:
                return

    consumer = asyncio.create_task(consume())
    kills = 0
    for batch in range(10):
        await ch.publish_many(range(batch * 30 + 1, batch * 30 + 31))
        if batch % 2 == 0:
            kills += fake.kill_sockets()
        await asyncio.sleep(0.02)
    await asyncio.wait_for(consumer, 15)
    assert received == list(range(1, 301))
    assert kills >= 4 and sb.connection_stats.reconnects >= 4


async def test_dropped_live_frames_are_filled_from_history(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:d")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: any(fake.subs.values()))
    fake.drop_live = lambda m: m["seq"] in (2, 3, 7)
    for i in range(1, 11):
        await ch.publish(i)
    assert await collect(sub, 10) == list(range(1, 11))
    assert sub.stats.gaps == 2


async def test_duplicated_live_frames_are_dropped(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:e")
    sub = ch.subscribe(from_="now")
    await sub.start()
    await wait_for(lambda: any(fake.subs.values()))
    fake.duplicate_live = True
    await ch.publish_many(range(1, 6))
    assert await collect(sub, 5) == [1, 2, 3, 4, 5]
    fake.duplicate_live = False
    await ch.publish(6)
    assert await collect(sub, 1) == [6]
    assert sub.stats.duplicates == 5


async def test_a_lost_ack_is_retried_without_storing_twice(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    fake.swallow_acks = 2  # stored, ack lost, socket killed; twice
    ack = await sb.channel("runs:f").publish({"n": 1})
    assert ack.duplicate is True and ack.seq == 1
    assert len(fake.channels["runs:f"].messages) == 1
    sent = [f for f in fake.ws_frames if f.get("action") == "publish"]
    # No id: one request token for the logical message, reused on every re-send, and every
    # re-send marked as a retry (the server looks for the token only then).
    assert len(sent) == 3 and {f["token"] for f in sent} == {sent[0]["token"]}
    assert [f.get("retry") for f in sent] == [None, True, True]
    assert not any("id" in f for f in sent)
    assert 1 <= len(sent[0]["token"]) <= 128


async def test_offset_expired_is_raised_with_where_to_resume(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:g")
    acks = await ch.publish_many(range(1, 6))
    fake.channels["runs:g"].earliest = 4  # 1..3 passed the retention
    with pytest.raises(OffsetExpiredError) as info:
        await collect(ch.subscribe(from_=acks[0].offset), 1)
    assert info.value.earliest == acks[2].offset
    # Acting on it: resume from the earliest retained message.
    assert await collect(ch.subscribe(from_=info.value.earliest or "-1"), 2) == [4, 5]


async def test_epoch_mismatch_after_the_channel_is_recreated(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:h")
    ack = await ch.publish("old")
    await ch.delete()
    await ch.publish("new")
    with pytest.raises(EpochMismatchError) as info:
        await collect(ch.subscribe(from_=ack.offset), 1)
    assert info.value.epoch == fake.channels["runs:h"].epoch


async def test_history_pages_and_typed_http_errors(make_client: Make) -> None:
    sb = make_client()
    ch = sb.channel("runs:i")
    await ch.publish_many(range(1, 8))
    page = await ch.history(limit=5)
    assert [m.data for m in page.messages] == [1, 2, 3, 4, 5] and not page.up_to_date
    rest = await ch.history(page.next, limit=5)
    assert [m.data for m in rest.messages] == [6, 7] and rest.up_to_date
    assert [m.data async for m in ch.iter_history(page_size=3)] == list(range(1, 8))
    with pytest.raises(NotFoundError):
        await sb.channel("runs:none").info()


async def test_idle_socket_is_pinged_and_a_silent_one_replaced(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    opts = dataclasses.replace(FAST, ping_interval=0.2, pong_timeout=0.2)
    sb = make_client(options=opts)
    sub = sb.channel("runs:j").subscribe()
    await sub.start()
    await wait_for(lambda: fake.pings >= 2)
    assert sb.connection_stats.reconnects == 0
    fake.answer_pings = False
    await wait_for(lambda: sb.connection_stats.reconnects >= 1)
    fake.answer_pings = True
    await sb.channel("runs:j").publish("after")
    assert await collect(sub, 1) == ["after"]


async def test_sockets_are_rotated_before_the_age_limit_without_loss(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    opts = dataclasses.replace(FAST, max_connection_age=0.3)
    sb = make_client(options=opts)
    ch = sb.channel("runs:k")
    sub = ch.subscribe(from_="-1")
    await sub.start()
    for i in range(1, 41):
        await ch.publish_many([i])
        await asyncio.sleep(0.025)
    assert await collect(sub, 40) == list(range(1, 41))
    assert sb.connection_stats.rotations >= 2


async def test_token_goes_in_the_query_and_the_bearer_header(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token = "t1"
    sb = make_client(token="t1")
    await sb.channel("runs:l").publish(1)
    await sb.channel("runs:l").info()
    assert fake.tokens == ["t1"] and fake.http_auth[-1] == "Bearer t1"


async def test_auth_hook_is_asked_for_a_fresh_token_on_unauthorized(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token = "fresh"
    calls: list[int] = []

    async def renew() -> str:
        calls.append(1)
        return "fresh"

    sb = make_client(token="stale", auth=renew)
    await sb.channel("runs:m").create()
    assert calls and fake.http_auth[-2:] == ["Bearer stale", "Bearer fresh"]
    sb_no_hook = make_client(token="stale")
    with pytest.raises(UnauthorizedError):
        await sb_no_hook.channel("runs:m").info()


async def test_many_channels_share_one_socket(make_client: Make, fake: FakeSwitchboard) -> None:
    sb = make_client()
    subs = [sb.channel(f"runs:n{i}").subscribe(from_="-1") for i in range(5)]
    for i, sub in enumerate(subs):
        await sub.start()
        await sb.channel(f"runs:n{i}").publish(i)
    for i, sub in enumerate(subs):
        assert await collect(sub, 1) == [i]
    assert fake.connections == 1
