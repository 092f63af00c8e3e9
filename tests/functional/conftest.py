"""Functional tests: the real Chalice app through chalice.test.Client, with fakes behind it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.dynamodb import message_item
from chalicelib.adapters.memory import MemoryStore, RecordingSender
from chalicelib.settings import Settings
from tests.support.events import frame, stream_event, ws_event
from tests.support.fakes import FakeClock


@dataclass
class Harness:
    client: Client
    store: MemoryStore
    sender: RecordingSender
    clock: FakeClock
    services: bootstrap.Services

    def connect(self, connection_id: str) -> dict[str, Any]:
        return self.client.lambda_.invoke("connect", ws_event("$connect", connection_id)).payload

    def disconnect(self, connection_id: str) -> None:
        self.client.lambda_.invoke("disconnect", ws_event("$disconnect", connection_id))

    def send(self, connection_id: str, body: str | None = None, **fields: Any) -> None:
        self.client.lambda_.invoke(
            "message", ws_event("$default", connection_id, body if body is not None
                                else frame(**fields))
        )

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.sender.sent.get(connection_id, [])]

    def take(self, connection_id: str) -> list[dict[str, Any]]:
        """Frames received since the last take."""
        out = self.frames(connection_id)
        self.sender.sent[connection_id] = []
        return out

    def pump(self) -> dict[str, Any]:
        """Deliver what was appended since the last pump, as the stream trigger would."""
        items = [message_item(m) for m in self.store.drain_stream()]
        if not items:
            return {"batchItemFailures": []}
        result: dict[str, Any] = self.client.lambda_.invoke(
            "fanout_records", stream_event(items)
        ).payload
        return result

    def post(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.http.post(
            path, body=body if isinstance(body, str | bytes) else json.dumps(body),
            headers={"content-type": "application/json", **headers},
        )


def make_harness(settings: Settings | None = None, store: MemoryStore | None = None) -> Harness:
    store, sender, clock = store or MemoryStore(), RecordingSender(), FakeClock()
    # Authentication has its own tests (test_auth.py); elsewhere everyone may do anything.
    services = bootstrap.build(
        settings or Settings(auth_enabled=False), store, store, sender, clock,
        rng=random.Random(7),
    )
    bootstrap.install(services)
    return Harness(Client(app_module.app), store, sender, clock, services)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = make_harness()
    with h.client:
        yield h
    bootstrap.install(None)
