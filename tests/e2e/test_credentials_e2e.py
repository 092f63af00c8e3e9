"""A missing or wrong credential against the default `switchboard dev` (auth on) surfaces in
under 5 s as UnauthorizedError / ForbiddenError with the server's message: in the async SDK,
the blocking SDK and the CLI. (The browser module: tests/browser/test_browser_client.py.)

Nothing hangs, nothing reconnects for ever, and no "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.client import ForbiddenError, Switchboard, UnauthorizedError
from switchboard.client import sync as sync_client
from tests.support.devserver import DevServerProcess, running

pytestmark = pytest.mark.e2e
LIMIT_S = 5.0
CLI = str(Path(sys.executable).with_name("switchboard"))
FORGED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZSJ9.c2lnbmF0dXJl"  # a JWT no key signed


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    with running("--no-agent") as started:
        assert started.api_key
        yield started


@pytest.fixture
async def unretrieved() -> AsyncIterator[list[dict[str, Any]]]:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield reported
    gc.collect()
    await asyncio.sleep(0)
    assert not reported, reported


class Clock:
    def __enter__(self) -> Clock:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started
        assert self.elapsed < LIMIT_S, f"took {self.elapsed:.1f} s"


async def test_no_credentials(server: DevServerProcess, unretrieved: list[Any]) -> None:
    async with Switchboard(server.http) as sb:
        with Clock(), pytest.raises(UnauthorizedError) as published:
            await sb.channel("cred:none").publish({"n": 1})
        with Clock(), pytest.raises(UnauthorizedError) as subscribed:
            async for _ in sb.channel("cred:none").subscribe(from_="-1"):
                pass
        with Clock(), pytest.raises(UnauthorizedError) as read:
            await sb.channel("cred:none").history()
    for error in (published.value, subscribed.value, read.value):
        assert error.message.startswith("Credentials are required")  # the server's words
        assert "SWITCHBOARD_API_KEY" in error.message  # and what to do about it


async def test_a_forged_token(server: DevServerProcess, unretrieved: list[Any]) -> None:
    async with Switchboard(server.http, token=FORGED) as sb:
        with Clock(), pytest.raises(UnauthorizedError) as subscribed:
            async for _ in sb.channel("cred:forged").subscribe():
                pass
        with Clock(), pytest.raises(UnauthorizedError) as published:
            await sb.channel("cred:forged").publish(1)
    for error in (subscribed.value, published.value):
        assert error.message == "The token was not issued by a known key."


async def test_a_wrong_api_key(server: DevServerProcess, unretrieved: list[Any]) -> None:
    async with Switchboard(server.http, api_key="dev:not-the-secret") as sb:
        with Clock(), pytest.raises(UnauthorizedError, match="Unknown API key or wrong secret"):
            await sb.channel("cred:key").publish(1)
        with Clock(), pytest.raises(UnauthorizedError, match="Unknown API key or wrong secret"):
            async for _ in sb.channel("cred:key").subscribe():
                pass


async def test_an_issued_token_is_limited_to_its_channel(server: DevServerProcess) -> None:
    async with Switchboard(server.http, api_key=server.api_key) as backend:
        issued = await backend.issue_token("user-7", {"cred:mine": ["subscribe", "publish"]})
        assert issued["client_id"] == "user-7"
    async with Switchboard(server.http, token=issued["token"]) as user:
        assert (await user.channel("cred:mine").publish("hi")).seq == 1
        with Clock(), pytest.raises(ForbiddenError) as forbidden:
            await user.channel("cred:theirs").publish("hi")
        assert "cred:theirs" in forbidden.value.message
        with pytest.raises(UnauthorizedError, match="api_key="):
            await user.issue_token("user-8", {"*": ["subscribe"]})


def test_the_blocking_client(server: DevServerProcess) -> None:
    with sync_client.Switchboard(server.http, token=FORGED) as sb:
        with Clock(), pytest.raises(UnauthorizedError, match="not issued by a known key"):
            sb.channel("cred:sync").publish(1)
        with Clock(), pytest.raises(UnauthorizedError, match="not issued by a known key"):
            next(iter(sb.channel("cred:sync").subscribe(from_="-1")))


def test_a_script_with_a_wrong_key_reports_no_stray_task_errors(
    server: DevServerProcess,
) -> None:
    script = (
        "import asyncio\n"
        "from switchboard.client import Switchboard, UnauthorizedError\n"
        "async def main():\n"
        "    async with Switchboard() as sb:\n"
        "        try:\n"
        "            await sb.channel('cred:script').publish(1)\n"
        "        except UnauthorizedError as e:\n"
        "            print(type(e).__name__, e.message)\n"
        "asyncio.run(main())\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=30,
        env={**environ, "SWITCHBOARD_URL": server.http, "SWITCHBOARD_API_KEY": "dev:wrong"},
    )
    assert done.stdout == "UnauthorizedError Unknown API key or wrong secret.\n"
    assert "never retrieved" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "cred:cli"], "Credentials are required"),
        (["tail", "cred:cli", "--token", FORGED], "The token was not issued by a known key."),
        (["tail", "cred:cli", "--api-key", "dev:wrong"], "Unknown API key or wrong secret."),
        (["publish", "cred:cli", "1", "--token", FORGED],
         "The token was not issued by a known key."),
        (["history", "cred:cli", "--api-key", "dev:wrong"], "Unknown API key or wrong secret."),
    ],
)
def test_the_cli(server: DevServerProcess, args: list[str], message: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    started = time.monotonic()
    done = subprocess.run([CLI, *args, "--url", server.http], capture_output=True, text=True,
                          timeout=30, env=environ)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.startswith(f"switchboard: error: unauthorized: {message}"), done.stderr
    assert done.stderr.count("\n") == 1
    assert elapsed < LIMIT_S + 2, f"{elapsed:.1f} s, interpreter start included"


def test_the_server_was_asked_once_per_failure_not_in_a_loop(
    server: DevServerProcess,
) -> None:
    # Every refused socket above is one line in the log; a reconnect loop would add more.
    before = sum("refused by the authorizer" in line for line in server.lines)
    with sync_client.Switchboard(server.http, token=FORGED) as sb, \
            pytest.raises(UnauthorizedError):
        sb.channel("cred:once").publish(1)
    time.sleep(1.0)
    after = sum("refused by the authorizer" in line for line in server.lines)
    assert after - before == 1
    assert httpx.get(f"{server.http}/v1/health").status_code == 200
