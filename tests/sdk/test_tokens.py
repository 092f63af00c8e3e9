"""Token streaming, the text reader and the agent inbox, against the in-process fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from switchboard.client import AgentRun, Switchboard, TextAssembler, read_text, stream_text

from .fake_server import FakeSwitchboard, wait_for

Make = Callable[..., Switchboard]


async def tokens(n: int, rate: float) -> AsyncIterator[str]:
    for i in range(n):
        yield f"t{i} "
        await asyncio.sleep(1 / rate)


async def test_coalescing_caps_writes_at_one_per_window(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    ch = make_client().channel("runs:tok")
    started = time.monotonic()
    result = await stream_text(ch, tokens(100, rate=100), stream="s1")
    elapsed = time.monotonic() - started
    expected = "".join(f"t{i} " for i in range(100))
    assert result.text == expected and result.chunks == 100
    # At most one write per 40 ms window (plus the one that closes the last window).
    assert result.messages <= elapsed / 0.040 + 1
    assert result.messages < 40
    stored = fake.channels["runs:tok"].messages
    assert stored[-1]["data"]["type"] == "done" and stored[-1]["data"]["length"] == len(expected)
    assert len(stored) == result.messages + 1


async def test_reader_reassembles_text_and_a_restarted_producer_duplicates_nothing(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    sb = make_client()
    ch = sb.channel("runs:tok2")
    first = await stream_text(ch, tokens(30, rate=200), stream="s2", window=0.02)
    stored = len(fake.channels["runs:tok2"].messages)
    # The producer restarts and replays the same chunks, all at once (different windows).
    again = await stream_text(ch, tokens(30, rate=10_000), stream="s2", window=0.02)
    assert again.text == first.text
    # The done marker and any message whose window lined up were answered as duplicates.
    assert fake.channels["runs:tok2"].messages[-1]["data"]["type"] != "done" or (
        len(fake.channels["runs:tok2"].messages) == stored
    )
    text = "".join([d async for d in read_text(ch, stream="s2")])
    assert text == first.text


def test_assembler_trims_overlap_by_offset_and_ignores_other_streams() -> None:
    a = TextAssembler("s")
    assert a.feed({"type": "token", "stream": "s", "start": 0, "text": "Hello"}) == "Hello"
    assert a.feed({"type": "token", "stream": "x", "start": 5, "text": "nope"}) == ""
    assert a.feed({"type": "token", "stream": "s", "start": 3, "text": "lo, wor"}) == ", wor"
    assert a.feed({"type": "token", "stream": "s", "start": 20, "text": "hole"}) == ""
    assert a.feed({"type": "token", "stream": "s", "start": 10, "text": "ld"}) == "ld"
    assert a.feed({"type": "done", "stream": "s", "start": 12, "length": 12}) == ""
    assert a.text == "Hello, world" and a.done and a.error is None


async def test_agent_streams_and_receives_instructions_on_one_socket(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    agent_client = make_client()
    user = make_client().channel("runs:agent")
    async with AgentRun(agent_client.channel("runs:agent"), "run-7") as run:

        async def llm() -> AsyncIterator[str]:
            for i in range(20):
                if i == 5:
                    await user.publish({"to": "run-7", "type": "steer", "text": "be brief"})
                    await user.publish({"to": "run-8", "type": "interrupt"})  # not ours
                yield f"w{i} "
                await asyncio.sleep(0.005)

        result = await run.stream(llm(), stream="answer")
        steer = await run.receive(timeout=5)
        assert steer is not None and steer.data["type"] == "steer"
        assert run.inbox_nowait() is None  # the message for run-8 was filtered out
    assert result.text.startswith("w0 w1")
    stored = fake.channels["runs:agent"].messages
    assert all(m["data"].get("from") == "run-7" for m in stored if "to" not in m["data"])
    # The agent's client used one socket for its subscription and its publishes.
    await wait_for(lambda: fake.connections == 2)
    assert agent_client.connection_stats.connects == 1


async def test_a_producer_restarted_mid_stream_continues_with_start(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    ch = make_client().channel("runs:tok3")
    words = [f"w{i} " for i in range(40)]
    # What a producer that died after 15 words left in the log: tokens, no done marker.
    prefix = "".join(words[:15])
    await ch.publish({"type": "token", "stream": "s3", "start": 0, "text": prefix}, id="s3:0")

    async def rest() -> AsyncIterator[str]:
        for word in words[15:]:
            yield word
            await asyncio.sleep(0.002)

    resumed = await stream_text(ch, rest(), stream="s3", window=0.01, start=len(prefix))
    assert resumed.text == "".join(words[15:])
    text = "".join([d async for d in read_text(ch, stream="s3")])
    assert text == "".join(words)
