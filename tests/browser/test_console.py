"""The agent console in headless Chromium, against `switchboard dev` running the example agent.

`switchboard dev` is started exactly as `make dev` starts it (the agent included), only on a
free port and with the fake model 1.5x faster than real time to keep the suite short. The
expected answers come from the fake model itself (a pure function of prompt and steers), so
"the same text" means character for character.

Screenshots of the main states land in test-artifacts/screenshots/ (named in the README).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from examples.agent.models import Steer, full_text
from switchboard.client.sync import Switchboard
from tests.browser.chromium import chromium, fresh_pages, require_chromium
from tests.examples.devstack import ROOT, Stack, dev_stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SHOTS = ROOT / "test-artifacts" / "screenshots"
SPEED = "1.5"
TIMEOUT_MS = 30_000

require_chromium()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with dev_stack(env={"SWITCHBOARD_AGENT_SPEED": SPEED}) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh contexts: each has its own sessionStorage, like a new tab."""
    with fresh_pages(browser) as make:
        yield make


def shot(page: Any, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def answer(page: Any) -> str:
    return str(page.eval_on_selector("#answer", "el => el.textContent"))


def wait_answer_longer_than(page: Any, chars: int) -> None:
    page.wait_for_function(
        f"document.querySelector('#answer').textContent.length > {chars}", timeout=TIMEOUT_MS
    )


def wait_state(page: Any, *states: str) -> None:
    page.wait_for_function(
        f"{list(states)!r}.includes(document.querySelector('#run-state').dataset.state)",
        timeout=TIMEOUT_MS,
    )


def start_run(page: Any, stack: Stack, prompt: str) -> str:
    page.goto(stack.url + "/")
    page.fill("#prompt-input", prompt)
    page.click("#start-run")
    page.wait_for_url("**/?run=*")
    return str(page.evaluate("new URLSearchParams(location.search).get('run')"))


def unique_prompt(topic: str) -> str:
    return f"{topic} (test {uuid.uuid4().hex[:6]})"


def test_a_run_streams_status_thinking_tool_calls_and_the_answer(
    stack: Stack, new_page: Any
) -> None:
    page = new_page()
    page.goto(stack.url + "/")
    page.wait_for_selector("#conn-state[data-state='connected']", timeout=TIMEOUT_MS)
    shot(page, "01-empty")
    prompt = unique_prompt("How do durable channels work?")
    start_run(page, stack, prompt)
    wait_answer_longer_than(page, 20)
    assert page.eval_on_selector("#run-state", "el => el.dataset.state") == "writing"
    assert page.locator(".item.thinking").count() >= 1
    assert "search_docs(" in page.inner_text(".item.tool")
    assert page.inner_text(".item.prompt .prompt-text") == prompt
    shot(page, "02-streaming")
    wait_state(page, "done")
    assert answer(page) == full_text(prompt)
    assert page.locator(".item.thinking").count() == 2
    assert "Answered in" in page.inner_text("#final")
    latency = page.eval_on_selector("#latency", "el => el.dataset.ms")
    assert latency is not None and 0 <= int(latency) < 2_000
    shot(page, "03-done", full_page=True)


def test_reload_mid_stream_and_a_second_tab_show_exactly_the_same_text(
    stack: Stack, new_page: Any
) -> None:
    page = new_page()
    prompt = unique_prompt("Can I reload while the agent writes?")
    run_id = start_run(page, stack, prompt)
    wait_answer_longer_than(page, 60)
    before = answer(page)
    assert before != full_text(prompt), "the reload must happen mid-stream"
    page.reload()
    # Drawn from the snapshot at once, then resumed from its offset, not replayed.
    assert answer(page).startswith(before)
    page.wait_for_selector("#conn-state[data-state='resumed']", timeout=TIMEOUT_MS)
    assert "resumed at seq" in page.inner_text("#conn-text")
    shot(page, "04-resumed-after-reload")

    second = new_page()  # a new context: no sessionStorage, so it replays from the start
    second.goto(f"{stack.url}/?run={run_id}")
    wait_state(page, "done")
    wait_state(second, "done")
    expected = full_text(prompt)
    assert answer(page) == expected
    assert answer(second) == expected
    assert second.inner_text("#timeline") == page.inner_text("#timeline")
    # And the log itself holds the text once: token messages tile the answer exactly.
    with Switchboard(stack.url, api_key=stack.api_key) as sb:
        starts = [
            (m.data["start"], len(m.data["text"]))
            for m in sb.channel(f"runs:{run_id}").iter_history("-1")
            if m.data.get("type") == "token"
        ]
    assert [s for s, _ in starts] == [sum(n for _, n in starts[:i]) for i in range(len(starts))]


def test_interrupt_stops_the_stream_and_shows_the_status(stack: Stack, new_page: Any) -> None:
    page = new_page()
    prompt = unique_prompt("Tell me everything about offsets")
    start_run(page, stack, prompt)
    wait_answer_longer_than(page, 40)
    page.click("#interrupt")
    wait_state(page, "interrupted")
    stopped = answer(page)
    assert 40 < len(stopped) < len(full_text(prompt))
    assert full_text(prompt).startswith(stopped)
    assert "Stopped at your request" in page.inner_text("#final")
    assert page.locator("#controls").is_hidden()
    shot(page, "05-interrupted")
    page.wait_for_timeout(800)
    assert answer(page) == stopped, "no text after the interrupted status"


def test_steering_changes_what_the_agent_writes_next(stack: Stack, new_page: Any) -> None:
    page = new_page(color_scheme="dark")
    prompt = unique_prompt("Explain idempotent publishing")
    start_run(page, stack, prompt)
    wait_answer_longer_than(page, 30)
    page.fill("#steer-input", "explain it to a pirate")
    page.click("#steer-send")
    page.wait_for_selector("#answer .steered", timeout=TIMEOUT_MS)
    shot(page, "06-steered-dark")
    wait_state(page, "done")
    text = answer(page)
    marks = page.evaluate("window.consoleState().marks")
    assert [m["text"] for m in marks] == ["explain it to a pirate"]
    at = marks[0]["at"]
    assert text == full_text(prompt, [Steer(at, "explain it to a pirate")])
    assert text[:at] == full_text(prompt)[:at], "what was written before the steer stays"
    assert "“explain it to a pirate”" in text[at:]
    assert "pirate" not in full_text(prompt)
    assert page.inner_text("#answer .steered").strip().startswith("Changing course")


def test_the_inspector_pages_through_history_and_publishes(stack: Stack, new_page: Any) -> None:
    channel = f"inspect:{uuid.uuid4().hex[:8]}"
    with Switchboard(stack.url, api_key=stack.api_key) as sb:
        sb.channel(channel).publish_many(({"n": n, "type": "note"}, f"n{n}") for n in range(120))
    page = new_page()
    page.goto(stack.url + "/")
    page.fill("#inspect-channel", channel)
    page.click("#inspect-open")
    page.wait_for_selector("#inspect-list .msg[data-seq='120']", timeout=TIMEOUT_MS)
    seqs = page.eval_on_selector_all("#inspect-list .msg", "els => els.map(e => +e.dataset.seq)")
    assert seqs == list(range(71, 121)), "the latest page first"
    assert page.inner_text("#inspect-head").endswith("_0000000000000120")
    page.click("#inspect-older")
    page.wait_for_selector("#inspect-list .msg[data-seq='21']", timeout=TIMEOUT_MS)
    page.click("#inspect-older")
    page.wait_for_selector("#inspect-list .msg[data-seq='1']", timeout=TIMEOUT_MS)
    seqs = page.eval_on_selector_all("#inspect-list .msg", "els => els.map(e => +e.dataset.seq)")
    assert seqs == list(range(1, 121))
    assert page.locator("#inspect-older").is_hidden()
    assert '"n":0' in page.inner_text("#inspect-list .msg[data-seq='1'] .msg-data")

    page.fill("#publish-data", "{not json")
    page.click("#publish-send")
    assert "not valid JSON" in page.inner_text("#publish-result")
    page.fill("#publish-data", '{"type": "note", "text": "from the console"}')
    page.fill("#publish-id", "console-note-1")
    page.click("#publish-send")
    page.wait_for_selector("#inspect-list .msg[data-seq='121']", timeout=TIMEOUT_MS)
    assert page.inner_text("#publish-result") == "Stored as seq 121."
    page.click("#publish-send")  # the same id again: stored once
    page.wait_for_function(
        "document.querySelector('#publish-result').textContent.startsWith('Already stored')"
    )
    assert page.inner_text("#inspect-head").endswith("_0000000000000121")
    shot(page, "07-inspector")

    page.fill("#inspect-channel", "no spaces allowed")
    page.click("#inspect-open")
    page.wait_for_selector("#toast:not([hidden])")
    assert "is not a channel name" in page.inner_text("#toast")


def test_the_console_fits_a_phone_screen(stack: Stack, new_page: Any) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                    is_mobile=True, has_touch=True)
    prompt = unique_prompt("Short question")
    start_run(page, stack, prompt)
    wait_answer_longer_than(page, 30)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    assert page.locator("#interrupt").is_visible() and page.locator("#steer-input").is_visible()
    shot(page, "08-phone")
    wait_state(page, "done")


def watch_console(page: Any) -> list[str]:
    """Every error or warning the page logs, and every HTTP error it receives."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 else None)
    return problems


def inspector_numbers(page: Any) -> tuple[int, int, int]:
    """(MESSAGES count, seq of HEAD, rows listed) as the inspector shows them."""
    return page.evaluate("""() => [
        Number(document.querySelector('#inspect-count').textContent),
        Number(document.querySelector('#inspect-head').textContent.split('_')[1] ?? NaN),
        document.querySelectorAll('#inspect-list .msg').length]""")


def test_a_first_run_counts_right_and_logs_nothing_wrong(stack: Stack, new_page: Any) -> None:
    page = new_page()
    problems = watch_console(page)
    prompt = unique_prompt("What does a newcomer see?")
    run_id = start_run(page, stack, prompt)
    wait_state(page, "done")
    # The inspector follows the new run's channel: its count is the head, live, no reload.
    page.wait_for_function(
        "document.querySelector('#inspect-head').textContent.endsWith("
        "'_' + String(document.querySelectorAll('#inspect-list .msg').length).padStart(16, '0'))",
        timeout=TIMEOUT_MS,
    )
    count, head, rows = inspector_numbers(page)
    assert count == head == rows > 10
    with Switchboard(stack.url, api_key=stack.api_key) as sb:
        assert sb.channel(f"runs:{run_id}").info().head_seq == head

    page.reload()
    page.wait_for_selector("#conn-state[data-state='resumed']", timeout=TIMEOUT_MS)
    page.wait_for_function(f"document.querySelectorAll('#inspect-list .msg').length >= "
                           f"{min(head, 50)}", timeout=TIMEOUT_MS)
    count, head_after, _ = inspector_numbers(page)
    assert count == head_after == head
    assert page.input_value("#prompt-input") == prompt, "the run's question, not the default"

    second = new_page()  # the run's link in a new tab shows its question too
    second.goto(f"{stack.url}/?run={run_id}")
    second.wait_for_function(
        f"document.querySelector('#prompt-input').value === {prompt!r}", timeout=TIMEOUT_MS)
    assert problems == [], problems


def test_the_prompt_box_on_a_phone_shows_whole_lines(stack: Stack, new_page: Any) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                    is_mobile=True, has_touch=True)
    page.goto(stack.url + "/")
    page.click("#start-run")  # the default question: two lines at this width
    page.wait_for_url("**/?run=*")
    box = page.evaluate("""() => {
        const t = document.querySelector('#prompt-input');
        const s = getComputedStyle(t);
        const inner = t.clientHeight - parseFloat(s.paddingTop) - parseFloat(s.paddingBottom);
        return {inner, line: parseFloat(s.lineHeight), scroll: t.scrollHeight,
                client: t.clientHeight};
    }""")
    lines = box["inner"] / box["line"]
    assert abs(lines - round(lines)) < 0.1, f"{lines:.2f} lines"
    assert round(lines) >= 2 and box["scroll"] <= box["client"] + 1, box
    shot(page, "09-phone-prompt")


def test_toasts_show_commands_as_code_not_backticks(stack: Stack, new_page: Any) -> None:
    page = new_page()
    # A run nobody requested: no agent picks it up, and the page says how to start one.
    page.goto(f"{stack.url}/?run=nobody-{uuid.uuid4().hex[:6]}")
    page.wait_for_selector("#toast:not([hidden])", timeout=TIMEOUT_MS)
    assert "No agent has picked this run up yet" in page.inner_text("#toast")
    assert "`" not in page.eval_on_selector("#toast", "el => el.textContent")
    codes = page.eval_on_selector_all("#toast code", "els => els.map(e => e.textContent)")
    assert codes == ["make dev", "python -m examples.agent"]
