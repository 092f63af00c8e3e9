"""Durable Streams on /v1/stream/{channel} through the Chalice app, with the memory store."""

from __future__ import annotations

import json
import time

import pytest

from chalicelib.core.messages import NewMessage
from chalicelib.services.appends import AppendRequest
from tests.functional.conftest import Harness

JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}


def _producer(epoch: int, seq: int, producer_id: str = "p1") -> dict[str, str]:
    return {"producer-id": producer_id, "producer-epoch": str(epoch), "producer-seq": str(seq)}


def test_json_stream_keeps_message_boundaries_and_shares_websocket_offsets(
    harness: Harness,
) -> None:
    http = harness.client.http
    created = http.put("/v1/stream/runs:1", headers=JSON, body='[{"a":1}]')
    assert created.status_code == 201
    assert created.headers["Location"].endswith("/v1/stream/runs:1")
    appended = http.post("/v1/stream/runs:1", headers=JSON, body='[{"b":2},[3]]')
    assert appended.status_code == 204
    read = http.get("/v1/stream/runs:1?offset=-1")
    assert json.loads(read.body) == [{"a": 1}, {"b": 2}, [3]]
    assert read.headers["Stream-Up-To-Date"] == "true"
    assert read.headers["Stream-Next-Offset"] == appended.headers["Stream-Next-Offset"]
    assert read.headers["X-Content-Type-Options"] == "nosniff"
    # The same log as the WebSocket and /v1/channels: seq 3 is the last message.
    assert harness.services.channels.get("runs:1").head == 3
    middle = harness.store.logs[("runs:1", harness.store.channels["runs:1"].epoch)][1].offset
    rest = http.get(f"/v1/stream/runs:1?offset={middle}")
    assert json.loads(rest.body) == [{"b": 2}, [3]]


def test_idempotent_producer_duplicate_stale_epoch_and_gap(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/p", headers=TEXT)
    first = http.post("/v1/stream/p", headers={**TEXT, **_producer(0, 0)}, body="a")
    assert first.status_code == 200
    assert (first.headers["Producer-Epoch"], first.headers["Producer-Seq"]) == ("0", "0")
    duplicate = http.post("/v1/stream/p", headers={**TEXT, **_producer(0, 0)}, body="a")
    assert duplicate.status_code == 204
    gap = http.post("/v1/stream/p", headers={**TEXT, **_producer(0, 5)}, body="x")
    assert gap.status_code == 409
    assert gap.headers["Producer-Expected-Seq"] == "1"
    assert gap.headers["Producer-Received-Seq"] == "5"
    assert http.post("/v1/stream/p", headers={**TEXT, **_producer(1, 0)}, body="b").status_code
    stale = http.post("/v1/stream/p", headers={**TEXT, **_producer(0, 1)}, body="zombie")
    assert stale.status_code == 403
    assert stale.headers["Producer-Epoch"] == "1"
    assert http.get("/v1/stream/p?offset=-1").body == b"ab"
    partial = http.post(
        "/v1/stream/p", headers={**TEXT, "producer-id": "p1", "producer-seq": "0"}, body="x"
    )
    assert partial.status_code == 400


def test_stream_seq_must_grow_bytewise(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/s", headers=TEXT)
    assert http.post("/v1/stream/s", headers={**TEXT, "stream-seq": "2"}, body="x").status_code
    regress = http.post("/v1/stream/s", headers={**TEXT, "stream-seq": "10"}, body="y")
    assert regress.status_code == 409
    assert http.get("/v1/stream/s?offset=-1").body == b"x"


def test_close_refuses_appends_and_marks_reads(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/c", headers=TEXT, body="a")
    closed = http.post("/v1/stream/c", headers={**TEXT, "stream-closed": "true"}, body="end")
    assert closed.status_code == 204
    assert closed.headers["Stream-Closed"] == "true"
    refused = http.post("/v1/stream/c", headers=TEXT, body="late")
    assert refused.status_code == 409
    assert refused.headers["Stream-Closed"] == "true"
    read = http.get("/v1/stream/c?offset=-1")
    assert (read.body, read.headers["Stream-Closed"]) == (b"aend", "true")
    # A caught-up long-poll on a closed stream answers at once.
    tail = read.headers["Stream-Next-Offset"]
    poll = http.get(f"/v1/stream/c?offset={tail}&live=long-poll")
    assert poll.status_code == 204
    assert poll.headers["Stream-Closed"] == "true"


def test_long_poll_times_out_with_cursor_and_sse_frames_events(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/lp", headers=TEXT, body="line1\nline2")
    started = time.monotonic()
    timed_out = http.get("/v1/stream/lp?offset=now&live=long-poll")
    # The whole timeout passed on the fake clock, none of it in real time.
    assert sum(harness.clock.slept) == pytest.approx(
        harness.services.settings.long_poll_timeout_s, abs=0.11
    )
    assert time.monotonic() - started < 2
    assert timed_out.status_code == 204
    assert timed_out.headers["Stream-Up-To-Date"] == "true"
    assert timed_out.headers["Stream-Cursor"].isdigit()
    sse = http.get("/v1/stream/lp?offset=-1&live=sse")
    assert sse.headers["Content-Type"] == "text/event-stream"
    text = sse.body.decode()
    assert text.startswith("event: data\ndata:line1\ndata:line2\n\nevent: control\n")
    control = json.loads(text.split("event: control\ndata:", 1)[1].split("\n", 1)[0])
    assert control["upToDate"] is True
    assert control["streamNextOffset"] == sse_tail(http)


def test_long_poll_returns_what_arrives_while_it_waits(harness: Harness) -> None:
    http = harness.client.http
    http.put("/v1/stream/w", headers=TEXT)
    tail = http.head("/v1/stream/w").headers["Stream-Next-Offset"]
    fake_sleep = harness.clock.sleep

    def sleep_then_append(seconds: float) -> None:
        # Where a real wait would let another request in: an append arrives meanwhile.
        fake_sleep(seconds)
        if len(harness.clock.slept) == 3:
            harness.services.appender.append(
                AppendRequest("w", [NewMessage(b"late")], content_type="text/plain")
            )

    harness.clock.sleep = sleep_then_append  # type: ignore[method-assign]
    poll = http.get(f"/v1/stream/w?offset={tail}&live=long-poll")
    assert (poll.status_code, poll.body) == (200, b"late")
    assert len(harness.clock.slept) == 3
    assert poll.headers["Stream-Cursor"].isdigit()


def sse_tail(http: object) -> str:
    response = http.head("/v1/stream/lp")  # type: ignore[attr-defined]
    return str(response.headers["Stream-Next-Offset"])


def test_binary_stream_round_trips_and_sse_is_base64(harness: Harness) -> None:
    http = harness.client.http
    payload = bytes(range(256)) * 300  # 76.8 KB: more than one stored message
    octets = {"content-type": "application/octet-stream"}
    http.put("/v1/stream/bin", headers=octets)
    assert http.post("/v1/stream/bin", headers=octets, body=payload).status_code == 204
    read = http.get("/v1/stream/bin?offset=-1", headers={"accept": "*/*"})
    assert read.body == payload
    harness.services.settings.sse_hold_s = 0
    sse = http.get("/v1/stream/bin?offset=-1&live=sse", headers={"accept": "text/event-stream"})
    assert sse.headers["Stream-SSE-Data-Encoding"] == "base64"


def test_ttl_headers_validation_and_etag(harness: Harness) -> None:
    http = harness.client.http
    for bad in ("+1", "01", "1.0", "1e3", "-1"):
        response = http.put(f"/v1/stream/t{len(bad)}", headers={**TEXT, "stream-ttl": bad})
        assert response.status_code == 400, bad
    http.put("/v1/stream/ttl", headers={**TEXT, "stream-ttl": "3600"}, body="x")
    head = http.head("/v1/stream/ttl")
    assert head.headers["Stream-TTL"] == "3600"
    assert "Stream-Expires-At" in head.headers
    conflicting = http.put("/v1/stream/ttl", headers={**TEXT, "stream-ttl": "60"})
    assert conflicting.status_code == 409
    first = http.get("/v1/stream/ttl?offset=-1")
    again = http.get("/v1/stream/ttl?offset=-1", headers={"if-none-match": first.headers["ETag"]})
    assert again.status_code == 304
    assert http.delete("/v1/stream/ttl").status_code == 204
    assert http.head("/v1/stream/ttl").status_code == 404


def test_an_sse_response_lasts_at_least_its_minimum_and_gathers_what_arrives(
    harness: Harness,
) -> None:
    http = harness.client.http
    http.put("/v1/stream/sse", headers=TEXT, body="first")
    fake_sleep = harness.clock.sleep

    def sleep_then_append(seconds: float) -> None:
        fake_sleep(seconds)
        if len(harness.clock.slept) == 4:  # 0.4 s into the response
            harness.services.appender.append(
                AppendRequest("sse", [NewMessage(b"second")], content_type="text/plain")
            )

    harness.clock.sleep = sleep_then_append  # type: ignore[method-assign]
    response = http.get("/v1/stream/sse?offset=-1&live=sse")
    text = response.body.decode()
    # Both pieces in one response, which lasted (on the fake clock) its minimum: a client
    # never sees a connection that ended within a second while data flows.
    assert text.count("event: data") == 2 and "first" in text and "second" in text
    assert sum(harness.clock.slept) >= harness.services.settings.sse_min_s - 0.11


def test_a_byte_streams_entries_cross_the_websocket_as_base64_slices(harness: Harness) -> None:
    import base64

    http = harness.client.http
    payload = bytes(range(256)) * 256  # 64 KiB, not UTF-8
    http.put("/v1/stream/bin", headers={"content-type": "application/octet-stream"})
    http.post("/v1/stream/bin", headers={"content-type": "application/octet-stream"},
              body=payload)
    harness.connect("c1")
    harness.send("c1", action="subscribe", channel="bin", **{"from": "-1"})
    _subscribed, *parts = harness.take("c1")
    assert all(len(json.dumps(p).encode()) < 32 * 1024 for p in parts)
    assert [p["slice"] for p in parts] == [[i, len(parts)] for i in range(len(parts))]
    assert {p["seq"] for p in parts} == {1} and all(p["encoding"] == "base64" for p in parts)
    assert b"".join(base64.b64decode(p["data"]) for p in parts) == payload
    # Over HTTP too, the entry is base64, never text with replacement characters.
    (message,) = http.get("/v1/channels/bin/messages").json_body["messages"]
    assert base64.b64decode(message["data"]) == payload and message["encoding"] == "base64"
