"""Durable Streams forks through the Chalice app (memory store): reads, offsets, WebSocket
delivery, soft delete and collection. The public conformance suite covers the protocol on
DynamoDB; these pin down Switchboard's own choices (offset aliases, WebSocket view, pruning)."""

from __future__ import annotations

import json

from tests.functional.conftest import Harness

JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


def _fork(harness: Harness, name: str, source: str, **headers: str) -> int:
    response = harness.client.http.put(
        f"/v1/stream/{name}", headers={"stream-forked-from": f"/v1/stream/{source}", **headers}
    )
    return int(response.status_code)


def test_a_fork_reads_the_source_prefix_then_its_own_log_with_continuing_offsets(
    harness: Harness,
) -> None:
    http = harness.client.http
    http.put("/v1/stream/src", headers=TEXT, body="A")
    at_a = http.post("/v1/stream/src", headers=TEXT, body="B").headers["Stream-Next-Offset"]
    assert _fork(harness, "fork", "src") == 201
    http.post("/v1/stream/src", headers=TEXT, body="x")  # after the fork: not inherited
    http.post("/v1/stream/fork", headers=TEXT, body="C")
    whole = http.get("/v1/stream/fork?offset=-1")
    assert whole.body == b"ABC"
    source, fork = harness.store.channels["src"], harness.services.channels.get("fork")
    assert fork.epoch != source.epoch and fork.head == 3
    assert whole.headers["Stream-Next-Offset"] == f"{fork.epoch}_{3:016d}"
    # The source's offset of the fork point is valid on the fork (the prefix is shared)...
    assert http.get(f"/v1/stream/fork?offset={at_a}").body == b"C"
    # ...an offset of the source past the fork point is not.
    past = f"{source.epoch}_{3:016d}"
    assert http.get(f"/v1/stream/fork?offset={past}").status_code == 409
    # Nothing was copied: the fork's own log holds only its own message.
    assert [m.body for m in harness.store.logs[("fork", fork.epoch)].values()] == [b"C"]


def test_sub_offsets_count_bytes_or_json_messages(harness: Harness) -> None:
    http = harness.client.http
    zero = "0000000000000000_0000000000000000"
    http.put("/v1/stream/bytes", headers=TEXT, body="hello")
    assert _fork(harness, "b2", "bytes", **{
        "stream-fork-offset": zero, "stream-fork-sub-offset": "3"}) == 201
    assert http.get("/v1/stream/b2?offset=-1").body == b"hel"
    b2 = harness.store.channels["b2"]
    # The partial entry is the fork's first own message (seq 1); the source keeps "hello".
    assert [m.body for m in harness.store.logs[("b2", b2.epoch)].values()] == [b"hel"]
    http.put("/v1/stream/events", headers=JSON, body='[{"a":1},{"b":2},{"c":3}]')
    assert _fork(harness, "e2", "events", **{
        "stream-fork-offset": zero, "stream-fork-sub-offset": "2"}) == 201
    assert json.loads(http.get("/v1/stream/e2?offset=-1").body) == [{"a": 1}, {"b": 2}]
    assert harness.services.channels.get("e2").head == 2
    assert _fork(harness, "e3", "events", **{
        "stream-fork-offset": zero, "stream-fork-sub-offset": "4"}) == 400


def test_websocket_subscribers_of_a_fork_replay_it_as_its_own_and_get_its_appends(
    harness: Harness,
) -> None:
    http = harness.client.http
    http.put("/v1/stream/src", headers=JSON, body='[{"n":1},{"n":2}]')
    _fork(harness, "fork", "src")
    fork_epoch = harness.store.channels["fork"].epoch
    harness.connect("c1")
    harness.connect("c2")
    harness.send("c1", action="subscribe", ref="r1", channel="fork", **{"from": "-1"})
    harness.send("c2", action="subscribe", ref="r2", channel="src", **{"from": "now"})
    subscribed, *replayed = harness.take("c1")
    assert subscribed["type"] == "subscribed" and subscribed["epoch"] == fork_epoch
    # The inherited prefix is the fork's history: its channel, epoch and offsets.
    assert [(m["channel"], m["epoch"], m["seq"], m["data"]) for m in replayed] == [
        ("fork", fork_epoch, 1, {"n": 1}), ("fork", fork_epoch, 2, {"n": 2}),
    ]
    harness.take("c2")
    http.post("/v1/stream/fork", headers=JSON, body='{"n":3}')
    http.post("/v1/stream/src", headers=JSON, body='{"s":3}')
    harness.pump()
    assert [(m["channel"], m["seq"], m["data"]) for m in harness.take("c1")] == [
        ("fork", 3, {"n": 3}),
    ]
    assert [(m["channel"], m["data"]) for m in harness.take("c2")] == [("src", {"s": 3})]


def test_deleting_a_source_with_forks_soft_deletes_it_until_the_chain_is_gone(
    harness: Harness,
) -> None:
    http = harness.client.http
    http.put("/v1/stream/l0", headers=TEXT, body="A")
    _fork(harness, "l1", "l0")
    http.post("/v1/stream/l1", headers=TEXT, body="B")
    _fork(harness, "l2", "l1")
    assert http.delete("/v1/stream/l0").status_code == 204
    assert http.delete("/v1/stream/l1").status_code == 204
    for method in ("get", "head", "delete"):
        assert getattr(http, method)("/v1/stream/l0").status_code == 410
    assert http.post("/v1/stream/l1", headers=TEXT, body="late").status_code == 410
    assert http.put("/v1/stream/l1", headers=TEXT).status_code == 409
    assert _fork(harness, "l3", "l1") == 409
    assert http.get("/v1/stream/l2?offset=-1").body == b"AB"
    error = json.loads(http.get("/v1/stream/l0").body)["error"]
    assert error["code"] == "gone"
    assert http.delete("/v1/stream/l2").status_code == 204
    # The last fork gone: both soft-deleted ancestors are collected, and the names are free.
    assert http.head("/v1/stream/l1").status_code == 404
    assert http.head("/v1/stream/l0").status_code == 404
    assert http.put("/v1/stream/l0", headers=TEXT).status_code == 201


def test_an_expired_fork_releases_its_soft_deleted_source(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/src", headers=TEXT, body="A")
    _fork(harness, "fork", "src", **{"stream-ttl": "5"})
    http.delete("/v1/stream/src")
    assert http.head("/v1/stream/src").status_code == 410
    harness.clock.advance(6)
    assert http.head("/v1/stream/fork").status_code == 404
    # Nobody deleted the fork; the next look at the source finds it expired and collects.
    assert http.head("/v1/stream/src").status_code == 404
    assert "src" not in harness.store.channels


def test_fork_creation_errors(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/src", headers=TEXT, body="abc")
    assert _fork(harness, "f", "missing") == 404
    assert _fork(harness, "f", "src", **{"content-type": "application/json"}) == 409
    assert _fork(harness, "f", "src", **{"stream-fork-offset": "nope"}) == 400
    assert _fork(harness, "f", "src", **{"stream-fork-sub-offset": "1"}) == 400
    assert http.put("/v1/stream/g", headers={"stream-fork-sub-offset": "0"}).status_code == 400
    assert _fork(harness, "f", "src") == 201
    assert _fork(harness, "f", "src") == 200
    assert http.put("/v1/stream/f", headers=TEXT).status_code == 409  # not a plain stream
    assert "src" in harness.store.channels and "f" in harness.store.channels
