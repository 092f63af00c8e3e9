"""The console tells a working agent from a dead or hung one, through presence.

`switchboard dev` runs with its defaults (presence TTL 40 s, sweeps every 5 s) and without its
built-in agent: the test runs the example agent itself, as `python -m examples.agent`, so it
can SIGKILL it (the kernel closes its socket: $disconnect) and SIGSTOP it (the socket stays
open and heartbeats stop: the sweeper expires the member). Both must show "Agent gone" in the
console within 60 s; the measured times are printed (`pytest -s`) and written to
test-artifacts/presence-gone.txt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.chromium import chromium, fresh_pages, require_chromium
from tests.examples.devstack import ROOT, Stack, dev_stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
require_chromium()

GONE_WITHIN_S = 60
ARTIFACT = ROOT / "test-artifacts" / "presence-gone.txt"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with dev_stack("--no-agent") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with fresh_pages(browser) as make:
        yield make()


def start_agent(stack: Stack, speed: float) -> subprocess.Popen[bytes]:
    """The example agent on the console's request channel, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "examples.agent", "--url", stack.url, "--speed", str(speed),
         "--api-key", stack.api_key or ""],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait(10)


def presence(page: Any) -> tuple[str, str]:
    node = page.locator("#agent-presence")
    return str(node.get_attribute("data-state")), str(node.get_attribute("data-agent-state"))


def wait_presence(page: Any, state: str, timeout_s: float = 30) -> float:
    """Wait for the indicator to reach ``state``; returns the seconds it took."""
    started = time.monotonic()
    page.wait_for_function(
        f"document.querySelector('#agent-presence').dataset.state === {state!r}",
        timeout=timeout_s * 1000, polling=100,
    )
    return time.monotonic() - started


def start_run(page: Any, stack: Stack, prompt: str) -> str:
    page.goto(stack.url + "/")
    page.fill("#prompt-input", prompt)
    page.click("#start-run")
    page.wait_for_url("**/?run=*")
    return str(page.evaluate("new URLSearchParams(location.search).get('run')"))


def record(what: str, seconds: float) -> None:
    line = f"{what}: Agent gone {seconds:.1f} s after the signal"
    print(line)
    ARTIFACT.parent.mkdir(exist_ok=True)
    with ARTIFACT.open("a") as out:
        out.write(line + "\n")


def test_a_killed_agent_shows_gone_and_a_restarted_one_online_again(
    stack: Stack, page: Any
) -> None:
    agent = start_agent(stack, speed=0.4)
    try:
        start_run(page, stack, "What happens to a run when its agent dies?")
        wait_presence(page, "online")
        page.wait_for_function(
            "['thinking', 'tool', 'writing'].includes("
            "document.querySelector('#agent-presence').dataset.agentState)", timeout=30_000)
        assert page.inner_text("#agent-presence").startswith("Agent online · ")

        agent.send_signal(signal.SIGKILL)
        took = wait_presence(page, "gone", GONE_WITHIN_S)
        record("SIGKILL", took)
        assert page.inner_text("#agent-presence") == "Agent gone"
        assert page.eval_on_selector("#run-state", "el => el.dataset.state") != "done"

        # A new worker resumes the run: online again, then it finishes and leaves.
        agent = start_agent(stack, speed=6.0)
        wait_presence(page, "online", 30)
        page.wait_for_function(
            "document.querySelector('#run-state').dataset.state === 'done'", timeout=60_000)
        wait_presence(page, "left", 15)
        assert page.inner_text("#agent-presence") == "Agent left"
    finally:
        stop(agent)


def test_a_hung_agent_shows_gone_within_a_minute_and_online_when_it_wakes(
    stack: Stack, page: Any
) -> None:
    agent = start_agent(stack, speed=0.3)
    try:
        start_run(page, stack, "How long until a hung agent counts as gone?")
        wait_presence(page, "online")
        # Frozen: the socket stays open, nothing is sent, heartbeats stop.
        agent.send_signal(signal.SIGSTOP)
        took = wait_presence(page, "gone", GONE_WITHIN_S)
        record("SIGSTOP", took)
        # Thawed, its next heartbeat is answered not_found and it enters again.
        agent.send_signal(signal.SIGCONT)
        wait_presence(page, "online", 30)
    finally:
        stop(agent)


def test_a_page_opened_after_the_agent_died_shows_it_gone(stack: Stack, page: Any) -> None:
    agent = start_agent(stack, speed=0.4)
    try:
        run_id = start_run(page, stack, "Does a late page know the agent is gone?")
        wait_presence(page, "online")
        agent.send_signal(signal.SIGKILL)
        wait_presence(page, "gone", GONE_WITHIN_S)
    finally:
        stop(agent)
    late = page.context.new_page()
    late.goto(f"{stack.url}/?run={run_id}")
    late.wait_for_function(
        "document.querySelector('#agent-presence').dataset.state === 'gone'", timeout=15_000)
    assert presence(late)[0] == "gone"
