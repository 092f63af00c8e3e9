"""Property-based fuzzing of WebSocket frames and HTTP bodies (hypothesis).

Whatever arrives: no 5xx, no `internal` error frame, the connection keeps answering, and the
only stored change is what a valid publish asked for.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.functional.conftest import Harness, make_harness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
channels = st.one_of(st.sampled_from(["runs:1", "runs:2", "a"]), st.text(max_size=12),
                     st.integers(), st.none())
offsets = st.one_of(st.sampled_from(["-1", "now", "0000000000000000_0000000000000001"]),
                    st.text(max_size=40), st.integers())
frames = st.one_of(
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "publish", "ping", "dance"])},
        optional={"ref": st.one_of(st.text(max_size=10), st.integers()), "channel": channels,
                  "from": offsets, "data": json_values,
                  "id": st.one_of(st.text(max_size=10), st.integers(), st.none())},
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
)

_h: Harness | None = None


def harness() -> Harness:
    global _h
    if _h is None:
        _h = make_harness()
        _h.connect("fuzz")
    return _h


def stored(h: Harness) -> dict[str, int]:
    return {name: h.services.channels.get(name).head for name in h.store.channels}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames)
def test_any_frame_gets_a_contract_answer_and_the_connection_stays_usable(body: str) -> None:
    h = harness()
    before = stored(h)
    h.send("fuzz", body)
    replies = h.take("fuzz")
    assert replies, body
    assert all(r.get("code") != "internal" for r in replies), replies
    acks = [r for r in replies if r["type"] == "ack" and not r["duplicate"]]
    after = stored(h)
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert sum(changed.values()) == len(acks)
    h.send("fuzz", '{"action":"ping","ref":"alive"}')
    assert h.take("fuzz") == [{"type": "pong", "ref": "alive"}]


bodies = st.one_of(json_values.map(json.dumps), st.text(max_size=80), st.binary(max_size=80))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["/v1/channels/runs:1/messages", "/v1/channels/runs:1",
                        "/v1/tokens", "/v1/stream/runs:1"]),
       st.sampled_from(["POST", "PUT"]), bodies,
       st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
def test_any_http_body_is_answered_without_a_server_error(
    path: str, method: str, body: Any, content_type: str
) -> None:
    h = harness()
    raw = body.encode() if isinstance(body, str) else body
    response = h.client.http.request(method, path, body=raw,
                                     headers={"content-type": content_type})
    assert response.status_code < 500, (path, method, body, response.body)
    if response.status_code >= 400 and response.status_code != 405:
        # 405 for a method a route lacks comes from Chalice's router (API Gateway answers it
        # before Lambda on AWS); everything our handlers answer has the contract's shape.
        assert "error" in json.loads(response.body)
