"""The whole path on emulated AWS: handlers -> DynamoDB (moto) -> its stream -> fan-out.

The API Gateway side is the recording sender: moto's Management API accepts any id and
concatenates posts, so it cannot show per-frame delivery or GoneException.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.memory import RecordingSender
from chalicelib.settings import Settings
from tests.support.aws import MotoStreamReader, dynamo_store, moto_dynamodb
from tests.support.events import frame, ws_event

pytestmark = pytest.mark.integration


class Stack:
    def __init__(self, client: Client, sender: RecordingSender, store: Any) -> None:
        self.client, self.sender, self.store = client, sender, store
        self.stream = MotoStreamReader()

    def ws(self, cid: str, route: str = "$default", **fields: Any) -> None:
        name = {"$connect": "connect", "$disconnect": "disconnect"}.get(route, "message")
        self.client.lambda_.invoke(name, ws_event(route, cid, frame(**fields) if fields else None))

    def frames(self, cid: str) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.sender.sent.pop(cid, [])]

    def pump(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.lambda_.invoke(
            "fanout_records", self.stream.next_event()).payload
        return result

    def publish(self, channel: str, items: list[dict[str, Any]]) -> Any:
        return self.client.http.post(f"/v1/channels/{channel}/messages", body=json.dumps(items),
                                     headers={"content-type": "application/json"})


@pytest.fixture
def stack() -> Iterator[Stack]:
    with moto_dynamodb() as ddb:
        store = dynamo_store(ddb)
        sender = RecordingSender()
        bootstrap.install(bootstrap.build(Settings(auth_enabled=False), store, store, sender,
                                          SystemClock(), rng=random.Random(3)))
        try:
            with Client(app_module.app) as client:
                yield Stack(client, sender, store)
        finally:
            bootstrap.install(None)


def test_publish_subscribe_replay_and_live_delivery(stack: Stack) -> None:
    backlog = [{"data": i, "id": f"m{i}"} for i in range(3)]
    assert stack.publish("runs:1", backlog).status_code == 201
    stack.ws("c1", "$connect")
    stack.ws("c1", action="subscribe", ref="s", channel="runs:1", **{"from": "-1"})
    stack.ws("c2", "$connect")
    stack.ws("c2", action="subscribe", channel="runs:1")
    assert [f.get("seq") for f in stack.frames("c1")] == [None, 1, 2, 3]
    assert [f["type"] for f in stack.frames("c2")] == ["subscribed"]
    assert stack.pump() == {"batchItemFailures": []}  # the backlog: nobody needs it again
    assert stack.frames("c1") == stack.frames("c2") == []
    stack.ws("c2", action="publish", ref="p", channel="runs:1", data={"from": "c2"}, id="m9")
    (ack,) = stack.frames("c2")
    assert ack["seq"] == 4 and ack["duplicate"] is False
    assert stack.pump() == {"batchItemFailures": []}
    for cid in ("c1", "c2"):
        (message,) = stack.frames(cid)
        assert message["seq"] == 4 and message["data"] == {"from": "c2"} and message["id"] == "m9"


def test_idempotent_publish_on_dynamodb(stack: Stack) -> None:
    first = json.loads(stack.publish("runs:1", [{"data": 1, "id": "k"}]).body)
    again = json.loads(stack.publish("runs:1", [{"data": 1, "id": "k"}, {"data": 2}]).body)
    assert first[0]["seq"] == again[0]["seq"] == 1 and again[0]["duplicate"] is True
    assert again[1]["seq"] == 2
    history = json.loads(stack.client.http.get("/v1/channels/runs:1/messages").body)
    assert [m["data"] for m in history["messages"]] == [1, 2]


def test_gone_connections_are_cleaned_from_dynamodb(stack: Stack) -> None:
    stack.ws("c1", "$connect")
    stack.ws("c1", action="subscribe", channel="runs:1")
    stack.sender.gone.add("c1")
    stack.publish("runs:1", [{"data": 1}])
    assert stack.pump() == {"batchItemFailures": []}
    assert stack.store.get_connection("c1") is None
    assert stack.store.subscribers("runs:1") == []


def test_concurrent_publishers_get_unique_gapless_seqs(stack: Stack) -> None:
    seqs: list[int] = []
    lock = threading.Lock()
    errors: list[Any] = []

    def publisher(n: int) -> None:
        for i in range(8):
            response = stack.publish("runs:busy", [{"data": [n, i]}])
            if response.status_code != 201:
                errors.append(response.body)
                continue
            with lock:
                seqs.append(json.loads(response.body)[0]["seq"])

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(seqs) == list(range(1, 33))
    history = json.loads(stack.client.http.get("/v1/channels/runs:busy/messages").body)
    assert [m["seq"] for m in history["messages"]] == list(range(1, 33))


def test_disconnect_cleans_dynamodb(stack: Stack) -> None:
    stack.ws("c1", "$connect")
    stack.ws("c1", action="subscribe", channel="runs:1")
    stack.ws("c1", action="subscribe", channel="runs:2")
    stack.ws("c1", "$disconnect")
    assert stack.store.get_connection("c1") is None
    assert stack.store.subscribers("runs:1") == stack.store.subscribers("runs:2") == []
