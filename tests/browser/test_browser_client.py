"""switchboard.js in headless Chromium against a real `switchboard dev`.

The test page (client_page.html) is served at the dev server's origin by intercepting one
URL, so the module, fetch and the WebSocket all reach the real server. Reloads, killed
sockets and gateway-dropped connections happen mid-stream; the page must end with every
message exactly once, in order, and the token text intact.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.client import Switchboard, stream_text
from switchboard.client.sync import Switchboard as SyncSwitchboard
from tests.browser.chromium import launch, require_chromium
from tests.sdk.devserver import DevServer, run_dev_server

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PAGE = Path(__file__).with_name("client_page.html")

require_chromium()


@pytest.fixture(scope="module")
def dev_server() -> Iterator[DevServer]:
    with run_dev_server() as server:
        yield server


@pytest.fixture
def page(dev_server: DevServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    html = PAGE.read_text()
    with sync_playwright() as pw:
        browser = launch(
            pw,
            # The test page is served by request interception, which Chromium counts as a
            # public origin; its Local Network Access checks would then block the loopback
            # WebSocket.
            "--disable-features=LocalNetworkAccessChecks",
        )
        try:
            tab = browser.new_page()
            tab.route(f"{dev_server.url}/test/page*", lambda route: route.fulfill(
                status=200, content_type="text/html", body=html))
            yield tab
        finally:
            browser.close()


def wait_until(page: Any, expression: str, timeout: float = 30.0) -> Any:
    page.wait_for_function(expression, timeout=timeout * 1000)
    return page.evaluate(expression)


def test_reload_and_killed_sockets_mid_stream_lose_and_duplicate_nothing(
    dev_server: DevServer, page: Any
) -> None:
    channel = f"web:{uuid.uuid4().hex[:10]}"
    page.goto(f"{dev_server.url}/test/page?channel={channel}")
    wait_until(page, "window.ready && window.sb.stats.connects >= 1")
    with SyncSwitchboard(dev_server.url) as sb:
        ch = sb.channel(channel)

        def publish(first: int, count: int = 100) -> None:
            ch.publish_many(({"n": n}, f"n{n}") for n in range(first, first + count))

        publish(0)
        wait_until(page, "window.seen.length >= 20")
        publish(100)
        page.reload()  # mid-stream: the page resumes from the offset in sessionStorage
        publish(200)
        wait_until(page, "window.ready && window.loads === 2 && window.seen.length >= 150")
        page.evaluate("window.sb.socket && window.sb.socket.close()")  # the network drops it
        publish(300)
        dev_server.drop_all_connections()  # the gateway loses it, no $disconnect
        publish(400)
        seen = wait_until(page, "window.seen.length >= 500 && window.seen", timeout=60)
    time.sleep(0.3)  # anything extra (a duplicate) would arrive now
    seen = page.evaluate("window.seen")
    stats = page.evaluate("({...window.sb.stats, ...window.sub.stats})")
    assert page.evaluate("window.failure") is None
    assert seen == list(range(500)), stats
    assert page.evaluate("window.loads") == 2 and stats["reconnects"] >= 2


def test_token_stream_reader_survives_a_reload(dev_server: DevServer, page: Any) -> None:
    channel = f"webtok:{uuid.uuid4().hex[:10]}"
    page.goto(f"{dev_server.url}/test/page?tokens={channel}&stream=answer")
    wait_until(page, "window.ready")

    async def produce() -> str:
        async def llm() -> AsyncIterator[str]:
            for i in range(150):
                yield f"w{i} "
                await asyncio.sleep(0.01)

        async with Switchboard(dev_server.url) as sb:
            return (await stream_text(sb.channel(channel), llm(), stream="answer")).text

    result: dict[str, str] = {}
    producer = threading.Thread(target=lambda: result.update(text=asyncio.run(produce())))
    producer.start()
    try:
        wait_until(page, "(window.partialText || '').length > 100")
        page.reload()
        text = wait_until(page, "window.finalText", timeout=60)
    finally:
        producer.join(60)
    assert text == result["text"] == "".join(f"w{i} " for i in range(150))
    assert page.evaluate("window.loads") == 2
