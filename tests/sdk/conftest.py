"""Fixtures for SDK tests: an in-process fake server and clients with short timers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from switchboard.client import Options, Switchboard

from .devserver import DevServer, run_dev_server
from .fake_server import FakeSwitchboard

FAST = Options(
    ping_interval=5.0,
    pong_timeout=1.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    request_timeout=2.0,
    publish_deadline=10.0,
    connect_timeout=2.0,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSwitchboard]:
    server = FakeSwitchboard()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_client(fake: FakeSwitchboard) -> AsyncIterator[Callable[..., Switchboard]]:
    clients: list[Switchboard] = []

    def make(**kwargs: Any) -> Switchboard:
        kwargs.setdefault("options", FAST)
        kwargs.setdefault("rng", random.Random(7))
        client = Switchboard(fake.url, http_transport=fake.transport(), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    """One real `switchboard dev` for the SDK's end-to-end tests."""
    with run_dev_server() as server:
        yield server
