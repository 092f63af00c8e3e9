"""switchboard.js in headless Chromium against a real `switchboard dev`: the server's newer
frames. A backlog in batched `messages` frames, a publish over API Gateway's 32 KB frame limit
(sent over HTTP, the socket kept), a 64 KB entry of a Durable Streams byte stream joined from
its slices into `message.bytes`, a lost last message found by a head check, and a replay
paused at the invocation's deadline (a dev server with 3 s Lambda timeouts) continued.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.client.sync import Switchboard as SyncSwitchboard
from tests.browser.chromium import launch, require_chromium
from tests.sdk.devserver import DevServer, run_dev_server
from tests.support.devserver import running

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PAGE = Path(__file__).with_name("client_page.html")

require_chromium()

# Counts the frames the module receives by type (wrapping its dispatcher), then follows a
# channel and collects what the app is handed.
FOLLOW = """async ([channel, options]) => {
  const { Switchboard } = await import("/web/switchboard.js");
  const sb = new Switchboard(location.origin, { backoffInitial: 50, backoffMax: 400, ...options });
  window.frames_ = {};
  window.lose = null; // a predicate: messages the "fan-out" gives up on
  const dispatch = sb._dispatch.bind(sb);
  sb._dispatch = (raw) => {
    const frame = JSON.parse(raw);
    window.frames_[frame.type] = (window.frames_[frame.type] || 0) + 1;
    if (window.lose && frame.type === "message" && window.lose(frame)) return;
    if (window.lose && frame.type === "messages") {
      frame.messages = frame.messages.filter((m) => !window.lose(m));
      dispatch(JSON.stringify(frame));
      return;
    }
    dispatch(raw);
  };
  window.got = [];
  window.sb2 = sb;
  window.sub2 = sb.channel(channel).subscribe({
    from: "-1",
    onMessage: (m) => { window.got.push(m); },
    onError: (e) => { window.failure = String(e); },
  });
}"""


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevServer]:
    with run_dev_server() as server:
        yield server


@contextmanager
def open_page(url: str) -> Iterator[Any]:
    """The test page at ``url``'s origin in headless Chromium."""
    from playwright.sync_api import sync_playwright

    html = PAGE.read_text()
    with sync_playwright() as pw:
        browser = launch(pw, "--disable-features=LocalNetworkAccessChecks")
        try:
            tab = browser.new_page()
            tab.route(f"{url}/test/page*", lambda route: route.fulfill(
                status=200, content_type="text/html", body=html))
            tab.goto(f"{url}/test/page")
            tab.wait_for_function("window.ready === true")
            yield tab
        finally:
            browser.close()


@pytest.fixture
def page(dev_server: DevServer) -> Iterator[Any]:
    with open_page(dev_server.url) as tab:
        yield tab


def wait_until(page: Any, expression: str, timeout: float = 30.0) -> Any:
    page.wait_for_function(expression, timeout=timeout * 1000)
    return page.evaluate(expression)


def test_a_backlog_arrives_in_batched_frames_delivered_one_by_one(
    dev_server: DevServer, page: Any
) -> None:
    channel = f"webbatch:{uuid.uuid4().hex[:10]}"
    with SyncSwitchboard(dev_server.url) as sb:
        for first in range(0, 1000, 500):
            sb.channel(channel).publish_many(({"n": n}, f"n{n}") for n in range(first, first + 500))
    page.evaluate(FOLLOW, [channel, {}])
    wait_until(page, "window.got.length >= 1000")
    got = page.evaluate("window.got.map((m) => m.data.n)")
    frames = page.evaluate("window.frames_")
    assert page.evaluate("window.failure") is None
    assert got == list(range(1000))
    # A thousand ~200-byte messages in frames under 32 KB: a handful of frames.
    assert frames.get("messages", 0) >= 1, frames
    assert frames.get("message", 0) + frames["messages"] < 50, frames
    # A live publish after the backlog arrives too, exactly once.
    with SyncSwitchboard(dev_server.url) as sb:
        sb.channel(channel).publish({"n": 1000})
    wait_until(page, "window.got.length >= 1001")
    page.wait_for_timeout(300)
    assert page.evaluate("window.got.map((m) => m.data.n)") == list(range(1001))


def test_single_frames_when_the_page_turns_batching_off(dev_server: DevServer, page: Any) -> None:
    channel = f"websingle:{uuid.uuid4().hex[:10]}"
    with SyncSwitchboard(dev_server.url) as sb:
        sb.channel(channel).publish_many({"n": n} for n in range(50))
    page.evaluate(FOLLOW, [channel, {"batch": False}])
    wait_until(page, "window.got.length >= 50")
    frames = page.evaluate("window.frames_")
    assert frames.get("messages", 0) == 0 and frames["message"] == 50, frames


def test_a_40_kb_publish_goes_over_http_and_keeps_the_socket(
    dev_server: DevServer, page: Any
) -> None:
    channel = f"webbig:{uuid.uuid4().hex[:10]}"
    result = page.evaluate("""async (channel) => {
      const { Switchboard } = await import("/web/switchboard.js");
      const sb = new Switchboard(location.origin, { backoffInitial: 50, backoffMax: 400 });
      const ch = sb.channel(channel);
      const small = await ch.publish({ n: 1 });
      const big = await ch.publish({ pad: "x".repeat(40000) });
      const after = await ch.publish({ n: 3 });
      return { seqs: [small.seq, big.seq, after.seq], duplicate: big.duplicate,
               stats: { ...sb.stats } };
    }""", channel)
    assert result["seqs"] == [1, 2, 3] and result["duplicate"] is False
    stats = result["stats"]
    assert stats["publishesOverHttp"] == 1
    assert stats["connects"] == 1 and stats["reconnects"] == 0  # never closed with 1009
    with SyncSwitchboard(dev_server.url) as sb:
        page_ = sb.channel(channel).history()
    assert page_.messages[1].data == {"pad": "x" * 40_000}
    assert [m.seq for m in page_.messages] == [1, 2, 3]


def test_a_64_kb_byte_stream_entry_is_joined_from_its_slices(
    dev_server: DevServer, page: Any
) -> None:
    channel = f"webbytes:{uuid.uuid4().hex[:10]}"
    payload = os.urandom(64 * 1024)
    stream = f"{dev_server.url}/v1/stream/{channel}"
    octets = {"Content-Type": "application/octet-stream"}
    assert httpx.put(stream, headers=octets).status_code == 201
    assert httpx.post(stream, content=b"first", headers=octets).status_code == 204
    assert httpx.post(stream, content=payload, headers=octets).status_code == 204
    page.evaluate(FOLLOW, [channel, {}])
    wait_until(page, "window.got.length >= 2")
    got = page.evaluate("""window.got.map((m) => ({
      seq: m.seq, encoding: m.encoding, bytes: Array.from(m.bytes),
      dataIsBase64Text: typeof m.data === "string",
    }))""")
    assert page.evaluate("window.failure") is None
    assert [m["seq"] for m in got] == [1, 2]
    assert bytes(got[0]["bytes"]) == b"first"
    assert got[1]["encoding"] == "base64" and got[1]["dataIsBase64Text"]
    assert bytes(got[1]["bytes"]) == payload
    # The entry crossed the socket as slices (each frame under 32 KB), not whole.
    assert page.evaluate("window.frames_.message") >= 4
    # The same entry over HTTP history: whole, with its bytes.
    history = page.evaluate("""async (channel) => {
      const page = await window.sb2.channel(channel).history();
      return page.messages.map((m) => Array.from(m.bytes ?? []).length);
    }""", channel)
    assert history == [5, 64 * 1024]


def test_an_idle_page_fetches_a_lost_last_message_after_a_head_check(
    dev_server: DevServer, page: Any
) -> None:
    """The loss is simulated where it shows (the frame never reaches the module); the ping
    with channels, the pong's heads and the history read are the real ones."""
    channel = f"webidle:{uuid.uuid4().hex[:10]}"
    page.evaluate(FOLLOW, [channel, {"idleCheck": 1000}])
    page.evaluate("() => { window.lose = (f) => f.data && f.data.n === 3; }")
    wait_until(page, "window.sub2._live === true")
    with SyncSwitchboard(dev_server.url) as sb:
        for n in (1, 2, 3):
            sb.channel(channel).publish({"n": n})
    got = wait_until(page, "window.got.length >= 3 && window.got.map((m) => m.data.n)", 15)
    assert got == [1, 2, 3]
    assert page.evaluate("window.sub2.stats.tailGaps") == 1
    assert page.evaluate("window.sb2.stats.headChecks") >= 1


@pytest.fixture(scope="module")
def short_lambdas() -> Iterator[DevServer]:
    """Functions time out after 3 s: a replay stops after about 2 s and says where."""
    with running("--no-auth", "--no-agent", env={
        "SWITCHBOARD_ALLOWED_ORIGINS": '["*"]', "SWITCHBOARD_DEV_LAMBDA_TIMEOUT_S": "3",
    }) as server:
        yield server


@pytest.mark.timeout(180)
def test_a_paused_replay_continues_unseen_by_the_page(short_lambdas: DevServer) -> None:
    channel = f"webpaused:{uuid.uuid4().hex[:10]}"
    total = 3_000
    with SyncSwitchboard(short_lambdas.url) as sb:
        for first in range(0, total, 100):
            sb.channel(channel).publish_many(
                ({"n": n}, f"n{n}") for n in range(first, first + 100))
    with open_page(short_lambdas.url) as tab:
        tab.evaluate(FOLLOW, [channel, {"batch": False}])
        wait_until(tab, f"window.got.length >= {total} || window.failure", timeout=120)
        assert tab.evaluate("window.failure") is None
        assert tab.evaluate("window.got.map((m) => m.data.n)") == list(range(total))
        stats = tab.evaluate("({...window.sb2.stats, ...window.sub2.stats})")
    assert stats["replayResumes"] >= 1 and stats["reconnects"] == 0, stats
    assert stats["duplicates"] == 0 and stats["gaps"] == 0, stats
