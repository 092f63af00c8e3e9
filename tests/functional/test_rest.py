"""The /v1 JSON API through the real Chalice app."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.core.offsets import encode
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness


def body(response: object) -> object:
    return json.loads(response.body)  # type: ignore[attr-defined]


def test_health(harness: Harness) -> None:
    response = harness.client.http.get("/v1/health")
    assert response.status_code == 200 and body(response)["status"] == "ok"


def test_publish_one_returns_an_ack_and_a_list_returns_acks(harness: Harness) -> None:
    one = harness.post("/v1/channels/runs:1/messages", {"data": {"t": "hi"}, "id": "m1"})
    assert one.status_code == 201
    ack = body(one)
    epoch = harness.store.get_channel("runs:1").epoch
    assert ack == {"channel": "runs:1", "seq": 1, "offset": encode(epoch, 1), "duplicate": False}
    many = harness.post("/v1/channels/runs:1/messages",
                        [{"data": 1, "id": "m1"}, {"data": 2}, {"data": 3, "id": "m3"}])
    assert [(a["seq"], a["duplicate"]) for a in body(many)] == [(1, True), (2, False), (3, False)]
    again = harness.post("/v1/channels/runs:1/messages", {"data": "x", "id": "m3"})
    assert again.status_code == 200 and body(again)["duplicate"] is True


def test_a_repeated_id_inside_one_batch_is_stored_once(harness: Harness) -> None:
    acks = body(harness.post("/v1/channels/runs:1/messages",
                             [{"data": 1, "id": "k"}, {"data": 1, "id": "k"}, {"data": 2}]))
    assert [(a["seq"], a["duplicate"]) for a in acks] == [(1, False), (1, True), (2, False)]
    assert harness.services.channels.get("runs:1").head == 2


def test_large_batches_span_several_transactions_in_order(harness: Harness) -> None:
    batch = [{"data": i, "id": f"id-{i}"} for i in range(120)]
    acks = body(harness.post("/v1/channels/runs:1/messages", batch))
    assert [a["seq"] for a in acks] == list(range(1, 121))
    history = body(harness.client.http.get("/v1/channels/runs:1/messages?limit=1000"))
    assert [m["data"] for m in history["messages"]] == list(range(120))


def test_history_pages_with_next_and_up_to_date(harness: Harness) -> None:
    harness.post("/v1/channels/runs:1/messages", [{"data": i} for i in range(5)])
    first = body(harness.client.http.get("/v1/channels/runs:1/messages?limit=2"))
    assert [m["seq"] for m in first["messages"]] == [1, 2] and first["up_to_date"] is False
    second = body(harness.client.http.get(
        f"/v1/channels/runs:1/messages?from={first['next']}&limit=10"))
    assert [m["seq"] for m in second["messages"]] == [3, 4, 5] and second["up_to_date"] is True
    empty = body(harness.client.http.get(
        f"/v1/channels/runs:1/messages?from={second['next']}"))
    assert empty["messages"] == [] and empty["next"] == second["next"] and empty["up_to_date"]
    now = body(harness.client.http.get("/v1/channels/runs:1/messages?from=now"))
    assert now["messages"] == [] and now["next"] == second["next"]


def test_channel_info_and_explicit_create_with_retention(harness: Harness) -> None:
    created = harness.client.http.put("/v1/channels/runs:9", body=json.dumps({"retention": 60}),
                                      headers={"content-type": "application/json"})
    assert created.status_code == 201 and body(created)["retention"] == 60
    same = harness.client.http.put("/v1/channels/runs:9", body=json.dumps({"retention": 60}),
                                   headers={"content-type": "application/json"})
    assert same.status_code == 200
    other = harness.client.http.put("/v1/channels/runs:9", body=json.dumps({"retention": 61}),
                                    headers={"content-type": "application/json"})
    assert other.status_code == 409 and body(other)["error"]["code"] == "conflict"
    harness.post("/v1/channels/runs:9/messages", [{"data": 1}, {"data": 2}])
    info = body(harness.client.http.get("/v1/channels/runs:9"))
    assert info["name"] == "runs:9" and info["head_seq"] == 2 and info["message_count"] == 2
    assert info["retention"] == 60 and info["head"].endswith("_0000000000000002")


def test_namespace_retention_applies_to_implicitly_created_channels() -> None:
    h = make_harness(Settings(auth_enabled=False, namespace_retention={"runs": 120}))
    with h.client:
        h.post("/v1/channels/runs:1/messages", {"data": 1})
        h.post("/v1/channels/chat:1/messages", {"data": 1})
        assert body(h.client.http.get("/v1/channels/runs:1"))["retention"] == 120
        assert body(h.client.http.get("/v1/channels/chat:1"))["retention"] == 86400
        h.clock.advance(121)
        info = body(h.client.http.get("/v1/channels/runs:1"))
        assert info["message_count"] == 0
        assert body(h.client.http.get("/v1/channels/runs:1/messages"))["messages"] == []


def test_history_filters_expired_messages_itself(harness: Harness) -> None:
    harness.post("/v1/channels/runs:1/messages", [{"data": "old"}])
    harness.clock.advance(86401)
    harness.post("/v1/channels/runs:1/messages", [{"data": "new"}])
    history = body(harness.client.http.get("/v1/channels/runs:1/messages?from=-1"))
    assert [m["data"] for m in history["messages"]] == ["new"]
    expired = harness.client.http.get(
        f"/v1/channels/runs:1/messages?from={encode(harness.store.get_channel('runs:1').epoch, 0)}"
    )
    assert expired.status_code == 410 and body(expired)["error"]["code"] == "offset_expired"


def test_delete_then_reads_are_not_found(harness: Harness) -> None:
    harness.post("/v1/channels/runs:1/messages", {"data": 1})
    assert harness.client.http.delete("/v1/channels/runs:1").status_code == 204
    missing = harness.client.http.get("/v1/channels/runs:1")
    assert missing.status_code == 404 and body(missing)["error"]["code"] == "not_found"
    assert harness.client.http.delete("/v1/channels/runs:1").status_code == 404
    assert harness.client.http.get("/v1/channels/runs:1/messages").status_code == 404


@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        ("/v1/channels/runs:1/messages", "{oops", 400, "invalid_request"),
        ("/v1/channels/runs:1/messages", "", 400, "invalid_request"),
        ("/v1/channels/runs:1/messages", "[]", 400, "invalid_request"),
        ("/v1/channels/runs:1/messages", '{"text":"no data field"}', 400, "invalid_request"),
        ("/v1/channels/runs:1/messages", '{"data":1,"extra":2}', 400, "invalid_request"),
        ("/v1/channels/runs:1/messages", '{"data":1,"id":""}', 400, "invalid_frame"),
        ("/v1/channels/bad%20name/messages", '{"data":1}', 400, "invalid_channel"),
        ("/v1/channels/runs:1/messages", json.dumps({"data": "x" * 70000}), 413, "too_large"),
    ],
)
def test_bad_publishes_are_clear_errors_and_store_nothing(
    harness: Harness, path: str, payload: str, status: int, code: str
) -> None:
    harness.post("/v1/channels/runs:1/messages", {"data": "keep"})
    response = harness.post(path, payload)
    assert response.status_code == status
    error = body(response)["error"]
    assert error["code"] == code and error["message"]
    assert harness.services.channels.get("runs:1").head == 1


@pytest.mark.parametrize(
    ("query", "code"),
    [("limit=0", "invalid_request"), ("limit=abc", "invalid_request"),
     ("limit=100000", "invalid_request"), ("from=garbage", "invalid_offset")],
)
def test_bad_history_queries_are_400(harness: Harness, query: str, code: str) -> None:
    harness.post("/v1/channels/runs:1/messages", {"data": 1})
    response = harness.client.http.get(f"/v1/channels/runs:1/messages?{query}")
    assert response.status_code == 400 and body(response)["error"]["code"] == code


def test_batches_over_the_limit_are_too_large() -> None:
    h = make_harness(Settings(auth_enabled=False, max_batch=3))
    with h.client:
        response = h.post("/v1/channels/runs:1/messages", [{"data": i} for i in range(4)])
        assert response.status_code == 413 and body(response)["error"]["code"] == "too_large"


def test_server_failures_are_500_without_internals(harness: Harness) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("password=hunter2")

    harness.store.get_channel = explode  # type: ignore[method-assign]
    response = harness.client.http.get("/v1/channels/runs:1")
    assert response.status_code == 500
    assert body(response)["error"]["code"] == "internal" and b"hunter2" not in response.body



def test_large_batches_are_split_into_transactions_under_4_mb(harness: Harness) -> None:
    from chalicelib.core.messages import NewMessage
    from chalicelib.services.appends import AppendRequest

    sizes: list[int] = []
    append = harness.store.append

    def recording(meta: Any, first: int, messages: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(sum(len(m.body) for m in messages))
        return append(meta, first, messages, *args, **kwargs)

    harness.store.append = recording  # type: ignore[method-assign]
    big = NewMessage(b'"' + b"x" * 60_000 + b'"')
    results = harness.services.appender.append(
        AppendRequest("runs:big", [big] * 98, implicit_create=True)
    ).results
    assert [r.seq for r in results] == list(range(1, 99))
    assert len(sizes) > 1 and max(sizes) <= 3_500_000


def test_every_browser_facing_route_answers_cors_preflights(harness: Harness) -> None:
    import app as app_module

    for path, methods in app_module.app.routes.items():
        if path == "/{proxy+}":
            continue
        for method, entry in methods.items():
            if method == "OPTIONS":
                continue
            assert entry.cors is not None, f"{method} {path} answers no CORS preflight"
            assert entry.cors.allow_origin == "*"
            assert "Authorization" in entry.cors.allow_headers, (method, path)
    response = harness.client.http.get("/v1/channels/runs:none",
                                       headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_retried_rest_batch_with_tokens_stores_only_what_its_first_attempt_did_not(
    harness: Any,
) -> None:
    first = [{"data": 1, "token": "tok-a"}, {"data": 2, "token": "tok-b"}]
    response = harness.post("/v1/channels/runs:batch/messages", first)
    assert response.status_code == 201
    # The answer was lost; the retry also carries a message the first attempt did not have.
    retry = [*first, {"data": 3, "token": "tok-c"}]
    response = harness.client.http.post(
        "/v1/channels/runs:batch/messages", body=json.dumps(retry),
        headers={"content-type": "application/json", "x-switchboard-retry": "true"})
    assert response.status_code == 201, response.body
    acks = json.loads(response.body)
    assert [(a["seq"], a["duplicate"]) for a in acks] == [(1, True), (2, True), (3, False)]
    assert harness.services.channels.get("runs:batch").head == 3
    # Without the retry flag nothing is looked up: a new publish with a reused token.
    response = harness.post("/v1/channels/runs:batch/messages", first)
    assert [a["seq"] for a in json.loads(response.body)] == [4, 5]
