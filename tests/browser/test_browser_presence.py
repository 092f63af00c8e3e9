"""switchboard.js presence in headless Chromium against a real `switchboard dev` (5 s TTL,
a sweep every second): `channel.presence.enter/update/leave/members/subscribe`, with
coalesced updates, a replaced socket, a member that expired entering again, HTTP members,
leave on close, and the Python SDK on the other side of the same channel.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.client.sync import Switchboard as SyncSwitchboard
from tests.browser.chromium import launch, require_chromium
from tests.support.devserver import DevServerProcess, running

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PAGE = Path(__file__).with_name("client_page.html")
TTL_S = 5

require_chromium()

# Two clients in the page: `agent` is present, `watcher` watches; every event the watcher is
# handed is kept as [action, key, data].
SETUP = """async (channel) => {
  const { Switchboard } = await import("/web/switchboard.js");
  const options = { backoffInitial: 50, backoffMax: 400 };
  window.agent = new Switchboard(location.origin, options);
  window.watcher = new Switchboard(location.origin, options);
  window.events = [];
  window.watch = window.watcher.channel(channel).presence.subscribe({
    onEvent: (e) => {
      window.events.push([e.action, e.member?.key ?? null, e.member?.data ?? null]);
    },
    onError: (e) => { window.failure = String(e); },
  });
  window.ch = channel;
}"""


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    with running("--no-auth", "--no-agent", env={
        "SWITCHBOARD_ALLOWED_ORIGINS": '["*"]',
        "SWITCHBOARD_PRESENCE_TTL_S": str(TTL_S), "SWITCHBOARD_DEV_PRESENCE_SWEEP_S": "1",
    }) as process:
        yield process


@pytest.fixture
def page(server: DevServerProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    html = PAGE.read_text()
    with sync_playwright() as pw:
        browser = launch(pw, "--disable-features=LocalNetworkAccessChecks")
        try:
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.route(f"{server.http}/test/page*", lambda route: route.fulfill(
                status=200, content_type="text/html", body=html))
            tab.goto(f"{server.http}/test/page")
            tab.wait_for_function("window.ready")
            yield tab
            assert not errors, errors
        finally:
            browser.close()


def until(page: Any, expression: str, timeout: float = 10.0) -> Any:
    page.wait_for_function(expression, timeout=timeout * 1000)
    return page.evaluate(expression)


def members_of(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(
        "Object.fromEntries(Object.values(window.watch.members).map((m) => [m.key, m.data]))"))


def listed(server: DevServerProcess, channel: str) -> dict[str, Any]:
    members = httpx.get(f"{server.http}/v1/channels/{channel}/presence").json()["members"]
    return {m["key"]: m["data"] for m in members}


def test_the_browser_module_is_present_and_watches(server: DevServerProcess, page: Any) -> None:
    channel = f"webpres:{uuid.uuid4().hex[:10]}"
    page.evaluate(SETUP, channel)
    until(page, "window.watch.synced")
    key = page.evaluate("window.agent.channel(window.ch).presence.enter({state: 'idle'})")
    until(page, f"window.events.some((e) => e[0] === 'enter' && e[1] === {key!r})")

    # Five updates at once: the server takes 2 a second; the latest wins, none fails.
    keys = page.evaluate("""Promise.all(['a', 'b', 'c', 'd', 'done'].map(
        (s) => window.agent.channel(window.ch).presence.update({state: s})))""")
    assert set(keys) == {key}
    until(page, f"window.watch.members[{key!r}]?.data.state === 'done'")
    stats = page.evaluate("window.agent.channel(window.ch).presence.membership().stats")
    assert stats["rateLimited"] >= 1 and stats["coalesced"] >= 1, stats
    # members(): the watcher's own snapshot; over HTTP for a client that does not watch.
    from_snapshot = page.evaluate("window.watcher.channel(window.ch).presence.members()")
    over_http = page.evaluate("window.agent.channel(window.ch).presence.members()")
    assert [m["data"] for m in from_snapshot] == [m["data"] for m in over_http] == [
        {"state": "done"}]
    assert over_http[0]["via"] == "websocket"
    assert listed(server, channel) == {key: {"state": "done"}}

    # The agent's socket drops: it enters again on the next one, under its new key.
    page.evaluate("window.agent.socket.close()")
    until(page, f"Object.keys(window.watch.members).length === 1 && !window.watch.members[{key!r}]")
    (second,) = members_of(page)
    assert members_of(page)[second] == {"state": "done"}
    until(page, f"window.agent.channel(window.ch).presence.member === {second!r}")
    stats = page.evaluate("window.agent.channel(window.ch).presence.membership().stats")
    assert stats["reenters"] == 1 and stats["expired"] == 0, "entered again on the new socket"

    # Heartbeats stop (a frozen tab, say): the member expires; once they resume, the first
    # is answered not_found and the module enters again, same key, same data.
    page.evaluate("""(() => {
      const send = window.agent._send.bind(window.agent);
      window.agent._send = (f) => { if (!(window.muted && f.op === 'heartbeat')) send(f); };
      window.muted = true;
    })()""")
    until(page, "Object.keys(window.watch.members).length === 0", timeout=TTL_S + 6)
    page.evaluate("window.muted = false")
    until(page, f"window.watch.members[{second!r}]?.data.state === 'done'", timeout=6)
    stats = page.evaluate("window.agent.channel(window.ch).presence.membership().stats")
    assert stats["reenters"] == 2 and stats["expired"] == 1 and stats["heartbeats"] >= 2, stats

    # close() leaves: the watcher sees it at once, not at the TTL.
    closed = time.monotonic()
    page.evaluate("window.agent.close()")
    until(page, "Object.keys(window.watch.members).length === 0", timeout=3)
    assert time.monotonic() - closed < 2
    actions = [e[0] for e in page.evaluate("window.events")]
    assert actions[:2] == ["sync", "enter"] and actions.count("leave") == 3, actions
    assert page.evaluate("window.failure") is None
    assert page.evaluate("window.watch.stats.snapshots") == 1


def test_http_members_and_the_python_sdk_on_the_same_channel(
    server: DevServerProcess, page: Any
) -> None:
    channel = f"webpres:{uuid.uuid4().hex[:10]}"
    page.evaluate(SETUP, channel)
    until(page, "window.watch.synced")
    with SyncSwitchboard(server.http) as python:
        py_key = python.channel(channel).presence.enter({"role": "agent", "state": "thinking"})
        until(page, f"window.watch.members[{py_key!r}]?.data.state === 'thinking'")
        # A browser member over HTTP under an instance name (no socket needed for it).
        worker = page.evaluate("""window.agent.channel(window.ch).presence.enter(
            {role: 'worker'}, {instance: 'tab-1'})""")
        assert worker.endswith("/tab-1")
        assert page.evaluate("window.agent.stats.connects") == 0
        # The Python SDK watches what the browser does.
        events = python.channel(channel).presence.subscribe()
        seen = {}
        while (event := events.next_event(5)) is not None and event.action != "sync":
            assert event.action == "present" and event.member is not None
            seen[event.member.key] = event.member.data
        assert seen == {py_key: {"role": "agent", "state": "thinking"},
                        worker: {"role": "worker"}}
        page.evaluate("window.agent.channel(window.ch).presence.leave({instance: 'tab-1'})")
        event = events.next_event(5)
        assert event is not None and event.action == "leave" and event.member is not None
        assert event.member.key == worker
        until(page, f"!window.watch.members[{worker!r}]")
        python.channel(channel).presence.update({"role": "agent", "state": "done"})
        until(page, f"window.watch.members[{py_key!r}]?.data.state === 'done'")
        events.close()
    until(page, f"!window.watch.members[{py_key!r}]", timeout=3)  # the Python client left
    # A subscription to the channel's messages joins the presence watch (one route).
    page.evaluate("""(() => {
      window.got = [];
      window.msgs = window.watcher.channel(window.ch).subscribe({
        from: '-1', onMessage: (m) => { window.got.push(m.data); } });
    })()""")
    with SyncSwitchboard(server.http) as python:
        python.channel(channel).publish({"n": 1})
        python.channel(channel).presence.enter({"s": "again"})
        until(page, "window.got.length === 1")
        until(page, "Object.values(window.watch.members).some((m) => m.data.s === 'again')")
    page.evaluate("window.watch.close()")
    with SyncSwitchboard(server.http) as python:
        python.channel(channel).publish({"n": 2})
    until(page, "window.got.length === 2")
    assert page.evaluate("window.got") == [{"n": 1}, {"n": 2}]
