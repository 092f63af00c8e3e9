"""switchboard.js against the default `switchboard dev` (auth on): a missing, forged or
refused credential reaches the page in under 5 s as UnauthorizedError / ForbiddenError with
the server's message, through onError and the rejected publish; the socket is not retried
in a loop.

A browser is not told why a WebSocket handshake failed; the module asks the HTTP API with
the same credentials, as the Python SDK does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.chromium import chromium, require_chromium
from tests.support.devserver import DevServerProcess, running

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
require_chromium()

LIMIT_MS = 5_000
FORGED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2lnbmF0dXJl"
PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><script type="module">
import { Switchboard, UnauthorizedError, ForbiddenError } from "/web/switchboard.js";
const params = new URLSearchParams(location.search);
const options = { backoffInitial: 50, backoffMax: 400 };
if (params.get("token")) options.token = params.get("token");
if (params.get("auth") === "throws") {
  options.auth = async () => {
    throw new UnauthorizedError("The backend would not issue a token.");
  };
}
const started = performance.now();
const sb = new Switchboard(location.origin, options);
window.result = {};
const record = (kind) => (e) => {
  window.result[kind] = {
    name: e.name, code: e.code, message: e.message, status: e.status ?? null,
    unauthorized: e instanceof UnauthorizedError, forbidden: e instanceof ForbiddenError,
    ms: performance.now() - started,
  };
};
sb.onState((state) => { if (state === "failed") window.result.failed = true; });
const channel = sb.channel(params.get("channel"));
channel.subscribe({ from: "-1", onMessage: () => {}, onError: record("subscribe") });
channel.publish({ n: 1 }).then(() => { window.result.publish = "ok"; }, record("publish"));
</script></body></html>"""


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    with running("--no-agent", env={"SWITCHBOARD_ALLOWED_ORIGINS": '["*"]'}) as started:
        assert started.api_key
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium("--disable-features=LocalNetworkAccessChecks") as running:
        yield running


def open_page(browser: Any, server: DevServerProcess, **params: str) -> Any:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route(f"{server.http}/test/credentials*",
               lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE))
    page.goto(f"{server.http}/test/credentials?{urlencode(params)}")
    page.wait_for_function(
        "window.result && window.result.subscribe && window.result.publish",
        timeout=LIMIT_MS + 5_000,
    )
    result = page.evaluate("window.result")
    assert not errors, f"uncaught errors in the page: {errors}"
    page.close()
    return result


def refusals(server: DevServerProcess) -> int:
    return sum("refused by the authorizer" in line for line in server.lines)


def issue(server: DevServerProcess, caps: dict[str, list[str]]) -> str:
    response = httpx.post(f"{server.http}/v1/tokens", json={
        "client_id": "page", "capabilities": caps, "ttl": 600},
        headers={"Authorization": f"Bearer {server.api_key}"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def channel() -> str:
    return f"webauth:{uuid.uuid4().hex[:8]}"


def test_no_credentials(browser: Any, server: DevServerProcess) -> None:
    before = refusals(server)
    result = open_page(browser, server, channel=channel())
    for kind in ("subscribe", "publish"):
        error = result[kind]
        assert error["unauthorized"] and error["name"] == "UnauthorizedError", error
        assert error["message"].startswith("unauthorized: Credentials are required")
        assert "pass { token }" in error["message"]
        assert error["ms"] < LIMIT_MS
    assert result["failed"] is True
    assert refusals(server) - before == 1, "one refused socket, no reconnect loop"


def test_a_forged_token(browser: Any, server: DevServerProcess) -> None:
    result = open_page(browser, server, channel=channel(), token=FORGED)
    for kind in ("subscribe", "publish"):
        assert result[kind]["unauthorized"], result
        assert result[kind]["message"] == (
            "unauthorized: The token was not issued by a known key.")
        assert result[kind]["status"] == 401 and result[kind]["ms"] < LIMIT_MS


def test_an_auth_callback_that_cannot_get_a_token(browser: Any, server: DevServerProcess) -> None:
    result = open_page(browser, server, channel=channel(), auth="throws")
    for kind in ("subscribe", "publish"):
        assert result[kind]["unauthorized"], result
        assert result[kind]["message"] == "unauthorized: The backend would not issue a token."
        assert result[kind]["ms"] < LIMIT_MS


def test_a_token_for_another_channel_is_forbidden(browser: Any, server: DevServerProcess) -> None:
    name = channel()
    token = issue(server, {"webauth:other": ["subscribe", "publish"]})
    result = open_page(browser, server, channel=name, token=token)
    for kind in ("subscribe", "publish"):
        error = result[kind]
        assert error["forbidden"] and error["name"] == "ForbiddenError", error
        assert name in error["message"] and error["ms"] < LIMIT_MS


def test_the_right_token_works(browser: Any, server: DevServerProcess) -> None:
    name = channel()
    token = issue(server, {name: ["subscribe", "publish"]})
    page = browser.new_page()
    page.route(f"{server.http}/test/credentials*",
               lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE))
    page.goto(f"{server.http}/test/credentials?{urlencode({'channel': name, 'token': token})}")
    page.wait_for_function("window.result && window.result.publish === 'ok'",
                           timeout=LIMIT_MS * 2)
    assert "subscribe" not in page.evaluate("window.result")
    page.close()
