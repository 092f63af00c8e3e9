"""The example agent: its fake model (pure), and the worker against a real `switchboard dev`.

The worker runs as its own process (``python -m examples.agent``) so that a crash is a real
SIGKILL, and the run's channel log is the only thing a restarted worker can learn from.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from examples.agent.models import (
    FakeModel,
    Steer,
    _Pace,
    answer_text,
    full_text,
    tokens_of,
)
from switchboard.client import Message, TextAssembler
from switchboard.client.sync import Switchboard
from tests.examples.devstack import ROOT, Stack, dev_stack, wait_for

PROMPT = "How does a browser resume a run after a reload?"


# -- the fake model (no I/O) ------------------------------------------------------------


def test_the_answer_is_a_pure_function_of_the_prompt_and_the_steers() -> None:
    assert full_text(PROMPT) == answer_text(PROMPT) == full_text(PROMPT)
    assert full_text(PROMPT) != full_text(PROMPT + "?")
    steered = full_text(PROMPT, [Steer(120, "explain it to a pirate")])
    prefix = "".join(tokens_of(answer_text(PROMPT)))
    cut = len(next(t for t in _prefixes(prefix) if len(t) >= 120))
    assert steered[:cut] == prefix[:cut], "text before the steer point must not change"
    assert "“explain it to a pirate”" in steered[cut:]
    assert "“explain it to a pirate”" not in full_text(PROMPT)


def _prefixes(text: str) -> Iterator[str]:
    acc = ""
    for token in tokens_of(text):
        acc += token
        yield acc


async def test_streaming_after_text_already_written_yields_exactly_the_rest() -> None:
    model = FakeModel(speed=1000)
    steers = [Steer(0, "be brief")]
    whole = "".join([t async for t in model.stream(PROMPT, "", steers)])
    assert whole == full_text(PROMPT, steers)
    for cut in (1, 57, len(whole) // 2, len(whole) - 1):
        rest = "".join([t async for t in model.stream(PROMPT, whole[:cut], steers)])
        assert whole[:cut] + rest == whole


def test_the_pace_is_30_to_80_tokens_per_second_in_bursts() -> None:
    pace = _Pace(1.0, random.Random(7))
    delays = [pace.next() for _ in range(2_000)]
    rate = len(delays) / sum(delays)
    assert 30 <= rate <= 80, rate
    assert max(delays) > 4 * min(delays), "bursty: stalls between fast runs of tokens"
    faster = _Pace(4.0, random.Random(7))
    assert sum(faster.next() for _ in range(2_000)) == pytest.approx(sum(delays) / 4)


# -- the worker against switchboard dev -----------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with dev_stack("--no-agent") as running:
        yield running


def start_worker(stack: Stack, requests: str, speed: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.agent", "--url", stack.url, "--requests", requests,
         "--speed", str(speed), "--api-key", stack.api_key or ""],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def request_run(sb: Switchboard, requests: str, prompt: str) -> str:
    run_id = f"t{uuid.uuid4().hex[:10]}"
    sb.channel(f"runs:{run_id}").publish({"type": "prompt", "text": prompt}, id=f"{run_id}:prompt")
    sb.channel(requests).publish({"run": run_id, "prompt": prompt}, id=f"{run_id}:request")
    return run_id


def log_of(sb: Switchboard, run_id: str) -> list[Message]:
    return list(sb.channel(f"runs:{run_id}").iter_history("-1"))


def answer_of(messages: list[Message], run_id: str) -> TextAssembler:
    assembler = TextAssembler(f"{run_id}:answer")
    for message in messages:
        assembler.feed(message.data)
    return assembler


def final_state(messages: list[Message]) -> str | None:
    for message in messages:
        data: Any = message.data
        if data.get("type") == "status" and data.get("state") in ("done", "interrupted",
                                                                    "failed"):
            return str(data["state"])
    return None


def assert_no_text_published_twice(messages: list[Message], run_id: str) -> None:
    """Token messages tile the answer: each starts where the previous one ended."""
    expected_start = 0
    for message in messages:
        data: Any = message.data
        if data.get("type") == "token" and data.get("stream") == f"{run_id}:answer":
            assert data["start"] == expected_start, (message.seq, data, expected_start)
            expected_start += len(data["text"])
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids)), "every step is stored once"


@pytest.mark.e2e
def test_a_killed_worker_resumes_its_run_without_repeating_a_character(stack: Stack) -> None:
    requests = f"agents:t{uuid.uuid4().hex[:8]}"
    worker = start_worker(stack, requests, speed=1.0)
    try:
        with Switchboard(stack.url, api_key=stack.api_key) as sb:
            run_id = request_run(sb, requests, PROMPT)
            # Kill it mid-answer, at a moment the test does not choose precisely.
            wait_for(lambda: len(answer_of(log_of(sb, run_id), run_id).text) >= 150, 40)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            at_crash = log_of(sb, run_id)
            written = answer_of(at_crash, run_id).text
            assert final_state(at_crash) is None and not answer_of(at_crash, run_id).done
            # The user steers while no worker is running: the restarted one must act on it.
            sb.channel(f"runs:{run_id}").publish(
                {"to": run_id, "type": "steer", "text": "talk like a ship's captain"})

            worker = start_worker(stack, requests, speed=4.0)
            wait_for(lambda: final_state(log_of(sb, run_id)), 60)
            messages = log_of(sb, run_id)
    finally:
        stop(worker)

    assert final_state(messages) == "done"
    answer = answer_of(messages, run_id)
    assert answer.done and answer.text.startswith(written)
    steers = [Steer(m.data["at"], m.data["text"]) for m in messages
              if m.data.get("type") == "steered"]
    assert [s.text for s in steers] == ["talk like a ship's captain"]
    assert steers[0].at >= len(written), "the steer applies after what was already written"
    assert answer.text == full_text(PROMPT, steers)
    assert "“talk like a ship's captain”" in answer.text[len(written):]
    assert_no_text_published_twice(messages, run_id)
    steps = [m.id for m in messages if m.id and ":tool:" in m.id]
    assert steps == [f"{run_id}:tool:1:call", f"{run_id}:tool:1:result"]


@pytest.mark.e2e
def test_interrupt_stops_the_answer_within_one_token_window(stack: Stack) -> None:
    requests = f"agents:t{uuid.uuid4().hex[:8]}"
    worker = start_worker(stack, requests, speed=1.0)
    try:
        with Switchboard(stack.url, api_key=stack.api_key) as sb:
            run_id = request_run(sb, requests, PROMPT)
            wait_for(lambda: len(answer_of(log_of(sb, run_id), run_id).text) >= 60, 40)
            ack = sb.channel(f"runs:{run_id}").publish({"to": run_id, "type": "interrupt"})
            wait_for(lambda: final_state(log_of(sb, run_id)), 20)
            messages = log_of(sb, run_id)
    finally:
        stop(worker)

    assert final_state(messages) == "interrupted"
    interrupt = next(m for m in messages if m.seq == ack.seq)
    late = [m for m in messages if m.seq > ack.seq and m.data.get("type") == "token"]
    # Tokens keep coming while the interrupt travels to the agent (the stream hop, ~50-150 ms
    # on the dev server) plus the one window open when it arrives; then the stream closes.
    last = max((m.ts or 0) for m in late) if late else interrupt.ts or 0
    assert last - (interrupt.ts or 0) < 500, [(m.seq, m.ts) for m in late]
    done = next(m for m in messages if m.data.get("type") == "done")
    assert all(m.seq < done.seq for m in late), "no token after the stream's done marker"
    answer = answer_of(messages, run_id)
    assert answer.done and len(answer.text) < len(full_text(PROMPT))
    assert_no_text_published_twice(messages, run_id)


@pytest.mark.e2e
async def test_the_worker_serves_runs_requested_before_it_started(stack: Stack) -> None:
    from examples.agent import FakeModel as Model
    from examples.agent import Worker

    requests = f"agents:t{uuid.uuid4().hex[:8]}"
    with Switchboard(stack.url, api_key=stack.api_key) as sb:
        run_id = request_run(sb, requests, "Say hello")
    worker = asyncio.create_task(
        Worker(stack.url, requests=requests, model=Model(50), api_key=stack.api_key).run()
    )
    try:
        async def finished() -> list[Message]:
            while True:
                messages = await asyncio.to_thread(lambda: log_of(sb, run_id))
                if final_state(messages):
                    return messages
                await asyncio.sleep(0.1)

        with Switchboard(stack.url, api_key=stack.api_key) as sb:
            messages = await asyncio.wait_for(finished(), 30)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert final_state(messages) == "done"
    assert answer_of(messages, run_id).text == full_text("Say hello")
    kinds = [m.data.get("type") for m in messages]
    assert kinds.index("thinking") < kinds.index("tool_call") < kinds.index("token")
