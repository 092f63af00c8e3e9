"""Credentials the server refuses surface at once, as typed errors with the server's reason;
nothing reconnects for ever, nothing is left as an unretrieved task exception. The client
reads its URL and credentials from the environment when it is given none.

The fake refuses the WebSocket handshake with a bare status, as API Gateway's authorizer
does; its HTTP API answers the contract's JSON error body.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from switchboard.client import (
    ForbiddenError,
    InvalidOffsetError,
    Switchboard,
    UnauthorizedError,
)
from switchboard.client import sync as sync_client

from .conftest import FAST
from .fake_server import FakeSwitchboard

Make = Callable[..., Switchboard]
#: What the issue asks for; on the fake it takes milliseconds.
LIMIT_S = 5.0


@pytest.fixture
def unretrieved() -> Iterator[list[dict[str, Any]]]:
    """Every exception the event loop would report as 'never retrieved' during the test."""
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_event_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield reported
    gc.collect()  # unretrieved task exceptions are reported when the task is collected
    loop.set_exception_handler(previous)


async def test_a_refused_socket_without_credentials_fails_fast_with_the_reason(
    make_client: Make, fake: FakeSwitchboard, unretrieved: list[dict[str, Any]]
) -> None:
    fake.require_token, fake.refuse_status = "t1", 401
    sb = make_client(token=None)
    started = time.monotonic()
    with pytest.raises(UnauthorizedError) as raised:
        await sb.channel("runs:c1").publish({"n": 1})
    assert time.monotonic() - started < LIMIT_S
    # The server's words (from its HTTP API), then what to do about having none.
    assert raised.value.message.startswith("bad token.")
    assert "SWITCHBOARD_API_KEY" in raised.value.message
    await asyncio.sleep(0.3)
    assert fake.refused == 1, "no reconnect loop on a credential error"
    gc.collect()
    await asyncio.sleep(0)
    assert not unretrieved


async def test_a_subscription_with_a_wrong_token_ends_with_unauthorized(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token, fake.refuse_status = "t1", 401
    sb = make_client(token="wrong")
    started = time.monotonic()
    with pytest.raises(UnauthorizedError) as raised:
        async for _ in sb.channel("runs:c2").subscribe(from_="-1"):
            pass
    assert time.monotonic() - started < LIMIT_S
    assert raised.value.message == "bad token", "a token was given: no hint about none"
    assert fake.tokens == [] and fake.refused == 1


async def test_a_forbidden_handshake_is_a_forbidden_error(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token, fake.refuse_status = "t1", 403
    sb = make_client(token="t1-but-wrong")
    with pytest.raises(ForbiddenError) as raised:
        await sb.channel("runs:c3").publish(1)
    # The HTTP API says 401 for this token, not 403: its words do not explain a 403, so
    # the client says what it knows.
    assert "HTTP 403" in raised.value.message and raised.value.status == 403


async def test_an_auth_callback_gets_one_chance_to_fix_a_refused_token(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token, fake.refuse_status = "fresh", 401
    tokens = iter(["fresh"])

    def renew() -> str:
        return next(tokens)

    sb = make_client(token="stale", auth=renew)
    ack = await sb.channel("runs:c4").publish(1)
    assert ack.seq == 1 and fake.refused == 1

    always_bad = make_client(token="stale", auth=lambda: "still-wrong")
    with pytest.raises(UnauthorizedError):
        await always_bad.channel("runs:c4").publish(2)
    assert fake.refused == 3, "the stale token, then one fresh one, then give up"


async def test_a_wrong_api_key_fails_the_publish_and_the_subscription_fast(
    make_client: Make, fake: FakeSwitchboard, unretrieved: list[dict[str, Any]]
) -> None:
    fake.api_key, fake.require_token, fake.refuse_status = "k1:right", "minted", 401
    sb = make_client(api_key="k1:wrong")
    started = time.monotonic()
    with pytest.raises(UnauthorizedError, match="Unknown API key or wrong secret"):
        await sb.channel("runs:c5").publish(1)
    with pytest.raises(UnauthorizedError, match="Unknown API key or wrong secret"):
        async for _ in sb.channel("runs:c5").subscribe():
            pass
    assert time.monotonic() - started < LIMIT_S
    assert fake.refused == 0 and fake.connections == 0, "the key itself never went out"
    gc.collect()
    await asyncio.sleep(0)
    assert not unretrieved

    good = make_client(api_key="k1:right")
    assert (await good.channel("runs:c5").publish(1)).seq == 1
    assert fake.tokens == ["minted"]


async def test_a_failure_is_not_sticky_once_the_credentials_are_fixed(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.require_token, fake.refuse_status = "t1", 401
    current = {"token": "wrong"}
    sb = make_client(token="wrong", auth=lambda: current["token"])
    with pytest.raises(UnauthorizedError):
        await sb.channel("runs:c6").publish(1)
    current["token"] = "t1"
    assert (await sb.channel("runs:c6").publish(1)).seq == 1


async def test_issue_token_uses_the_api_key_the_client_was_built_with(
    make_client: Make, fake: FakeSwitchboard
) -> None:
    fake.api_key, fake.require_token = "k1:right", "minted"
    sb = make_client(api_key="k1:right")
    await sb.channel("runs:c7").publish(1)  # the client minted a token for itself first
    issued = await sb.issue_token("user-42", {"runs:c7": ["subscribe"]}, 600)
    assert issued["client_id"] == "user-42"
    assert fake.http_auth[-1] == "Bearer k1:right"
    assert fake.issued[-1] == {"client_id": "user-42",
                               "capabilities": {"runs:c7": ["subscribe"]}, "ttl": 600}

    as_token = make_client(token="k1:right")  # an API key passed as `token` is a key too
    await as_token.issue_token("user-43", {"*": ["subscribe"]})
    assert fake.issued[-1]["client_id"] == "user-43"

    without_key = make_client(token="minted")
    fake.require_token = None
    with pytest.raises(UnauthorizedError, match="api_key="):
        await without_key.issue_token("user-44", {"*": ["subscribe"]})


async def test_url_and_credentials_come_from_the_environment(
    fake: FakeSwitchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.api_key, fake.require_token, fake.refuse_status = "env:key", "minted", 401
    monkeypatch.setenv("SWITCHBOARD_URL", fake.url)
    monkeypatch.setenv("SWITCHBOARD_API_KEY", "env:key")
    async with Switchboard(options=FAST, http_transport=fake.transport()) as sb:
        assert sb.url == fake.url
        assert (await sb.channel("runs:c8").publish(1)).seq == 1
    assert fake.http_auth[0] == "Bearer env:key" and fake.tokens == ["minted"]

    monkeypatch.delenv("SWITCHBOARD_API_KEY")
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "minted")  # a token from the environment
    async with Switchboard(options=FAST, http_transport=fake.transport()) as sb:
        assert (await sb.channel("runs:c8").publish(2)).seq == 2
    assert fake.tokens == ["minted", "minted"]

    # Explicit arguments win over the environment.
    async with Switchboard(fake.url, token="explicit", options=FAST,
                           http_transport=fake.transport()) as sb:
        with pytest.raises(UnauthorizedError):
            await sb.channel("runs:c8").publish(3)
    assert fake.refused == 1


async def test_the_blocking_client_raises_the_same_errors(fake: FakeSwitchboard) -> None:
    fake.require_token, fake.refuse_status = "t1", 401

    def blocking() -> None:  # on a thread: the fake serves on this test's loop
        with sync_client.Switchboard(fake.url, token="wrong", options=FAST,
                                     http_transport=fake.transport()) as sb:
            with pytest.raises(UnauthorizedError, match="bad token"):
                sb.channel("runs:c9").publish(1)
            with pytest.raises(UnauthorizedError, match="bad token"):
                next(iter(sb.channel("runs:c9").subscribe(from_="-1")))

    started = time.monotonic()
    await asyncio.to_thread(blocking)
    assert time.monotonic() - started < LIMIT_S


async def test_a_position_that_is_not_an_offset_is_refused_with_what_to_use(
    make_client: Make,
) -> None:
    sb = make_client()
    with pytest.raises(InvalidOffsetError) as raised:
        sb.channel("runs:c10").subscribe(from_="bogus")
    assert "'now'" in raised.value.message and "'-1'" in raised.value.message
