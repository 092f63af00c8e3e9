"""Durable Streams subscriptions through the real app, with in-memory stores, a recording
webhook poster and a queue on the fake clock: every rule the conformance suite does not
reach (retries, leases, one wake in flight, fencing, release, history, refusals)."""

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
from chalicelib.adapters.memory_wakes import MemoryWakeQueue, MemoryWakeStore, RecordingPoster
from chalicelib.ports import WebhookResponse
from chalicelib.settings import Settings
from switchboard.dev.rest import ApiGatewayRouteMatcher
from switchboard.webhooks import WebhookVerificationError, verify_signature
from tests.support.events import stream_event
from tests.support.fakes import FakeClock

SEED = "functional-test-seed-0123456789abcdefghij"
HOOK = "https://hooks.example.com/wake"
SUBS = "/v1/stream/__ds/subscriptions"


@dataclass
class World:
    client: Client
    store: MemoryStore
    wakes: MemoryWakeStore
    queue: MemoryWakeQueue
    poster: RecordingPoster
    clock: FakeClock
    services: bootstrap.Services

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        data = b"" if body is None else (body if isinstance(body, str | bytes)
                                          else json.dumps(body))
        response = self.client.http.request(
            method, path, headers={"content-type": "application/json", **headers},
            body=data if isinstance(data, bytes) else data.encode())
        response.json = json.loads(response.body) if response.body else None
        return response

    def publish(self, channel: str, *data: Any) -> None:
        response = self.call("POST", f"/v1/channels/{channel}/messages",
                             [{"data": d} for d in data])
        assert response.status_code == 201, response.body

    def pump(self) -> None:
        """The stream trigger: what was appended reaches the wake consumer."""
        items = [message_item(m) for m in self.store.drain_stream()]
        if items:
            result = self.client.lambda_.invoke("wake_records", stream_event(items)).payload
            assert result == {"batchItemFailures": []}

    def jobs(self) -> int:
        """Run every queued job that is due (and what they queue that is due at once)."""
        ran = 0
        while due := self.queue.due():
            event = {"Records": [{"messageId": str(i), "body": job} for i, job in enumerate(due)]}
            result = self.client.lambda_.invoke("wake_jobs", event).payload
            assert result == {"batchItemFailures": []}
            ran += len(due)
            self.pump()  # wake events appended by jobs
        return ran

    def settle(self) -> None:
        self.pump()
        self.jobs()

    def webhooks(self) -> list[dict[str, Any]]:
        jwks = self.services.wakes.jwks()
        out = []
        for url, body, headers in self.poster.posted:
            assert url == HOOK
            out.append(verify_signature(body, headers["Webhook-Signature"], jwks,
                                        now=self.clock.now_ms() / 1000))
        return out


def make_world(settings: Settings | None = None) -> World:
    store, clock = MemoryStore(), FakeClock()
    wakes, queue, poster = MemoryWakeStore(), MemoryWakeQueue(clock.now_ms), RecordingPoster()
    services = bootstrap.build(
        settings or Settings(auth_enabled=False, webhook_signing_seed=SEED),
        store, store, RecordingSender(), clock, rng=random.Random(7),
        wake_store=wakes, wake_queue=queue, poster=poster,
    )
    bootstrap.install(services)
    client = Client(app_module.app)
    # API Gateway's routing (greedy paths), as the dev gateway does it.
    client.http._local_gateway.event_converter._route_matcher = ApiGatewayRouteMatcher(
        list(app_module.app.routes))
    return World(client, store, wakes, queue, poster, clock, services)


@pytest.fixture
def world() -> Iterator[World]:
    yield make_world()
    bootstrap.install(None)


def webhook(pattern: str = "events/*", **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "pattern": pattern, "webhook": {"url": HOOK}, **extra}


def test_put_get_reconfirm_conflict_and_delete(world: World) -> None:
    created = world.call("PUT", f"{SUBS}/s1", webhook(lease_ttl_ms=5000, description="d"))
    assert created.status_code == 201, created.body
    signing = created.json["webhook"]["signing"]
    assert signing["alg"] == "ed25519" and signing["kid"].startswith("ds_")
    assert signing["jwks_url"].endswith("/v1/stream/__ds/jwks.json")
    assert "webhook_secret" not in created.json
    assert world.call("PUT", f"{SUBS}/s1", webhook(lease_ttl_ms=5000, description="d")
                      ).status_code == 200
    conflict = world.call("PUT", f"{SUBS}/s1", webhook(lease_ttl_ms=6000))
    assert conflict.status_code == 409
    assert conflict.json["error"]["code"] == "SUBSCRIPTION_ALREADY_EXISTS"
    got = world.call("GET", f"{SUBS}/s1").json
    assert got["id"] == "s1" and got["status"] == "active" and got["lease_ttl_ms"] == 5000
    jwks = world.call("GET", "/v1/stream/__ds/jwks.json")
    assert jwks.headers["Content-Type"] == "application/jwk-set+json"
    assert [k["kid"] for k in json.loads(jwks.body)["keys"]] == [signing["kid"]]
    world.call("PUT", f"{SUBS}/s0", webhook(pattern="other/**"))
    listed = world.call("GET", SUBS).json
    assert [s["id"] for s in listed["subscriptions"]] == ["s0", "s1"] and listed["next"] is None
    page = world.call("GET", f"{SUBS}?limit=1").json
    assert [s["id"] for s in page["subscriptions"]] == ["s0"] and page["next"] == "s0"
    assert [s["id"] for s in world.call("GET", f"{SUBS}?after=s0").json["subscriptions"]] == [
        "s1"]
    assert world.call("DELETE", f"{SUBS}/s1").status_code == 204
    assert world.call("DELETE", f"{SUBS}/s1").status_code == 204  # idempotent
    missing = world.call("GET", f"{SUBS}/s1")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "SUBSCRIPTION_NOT_FOUND"


def test_a_publish_wakes_the_webhook_and_done_acks_the_snapshot(world: World) -> None:
    world.poster.responses = [WebhookResponse(200, b'{"done": true}')]
    world.call("PUT", f"{SUBS}/s1", webhook())
    world.publish("events:a", {"n": 1}, {"n": 2})
    world.pump()
    assert world.poster.posted == []  # delivery is a job, not part of the stream consumer
    world.jobs()
    (wake,) = world.webhooks()
    (stream,) = wake["streams"]
    assert stream["path"] == "events/a" and stream["has_pending"] is True
    assert wake["generation"] == 1 and wake["subscription_id"] == "s1"
    assert wake["callback_url"].endswith(f"{SUBS}/s1/callback")
    link = world.call("GET", f"{SUBS}/s1").json["streams"][0]
    assert link["acked_offset"] == stream["tail_offset"] == link["tail_offset"]
    world.settle()
    assert len(world.poster.posted) == 1  # nothing left: no second wake


def test_history_before_the_subscription_is_never_a_wake(world: World) -> None:
    world.poster.responses = [WebhookResponse(200, b'{"done": true}')]
    world.publish("events:old", "before")
    world.pump()
    world.clock.advance(1)
    world.call("PUT", f"{SUBS}/s1", webhook())
    world.publish("events:other", "unrelated namespace?")
    world.publish("other:x", "not matched")
    world.settle()
    assert [s["path"] for w in world.webhooks() for s in w["streams"]] == ["events/other"]
    world.poster.posted.clear()
    world.clock.advance(1)
    world.publish("events:old", "after")
    world.settle()
    (wake,) = world.webhooks()
    (stream,) = wake["streams"]
    # Linked at the message before the first one after creation: only "after" is pending.
    assert stream["path"] == "events/old" and stream["acked_offset"].endswith("_0000000000000001")


def test_one_wake_in_flight_then_the_next_with_a_new_generation(world: World) -> None:
    world.call("PUT", f"{SUBS}/s1", webhook(lease_ttl_ms=60_000))
    world.publish("events:a", 1)
    world.settle()
    (first,) = world.webhooks()
    world.publish("events:a", 2)
    world.publish("events:b", 3)
    world.settle()
    assert len(world.poster.posted) == 1  # the first wake is still in flight
    tail = first["streams"][0]["tail_offset"]
    answer = world.call("POST", first["callback_url"].split("localhost")[-1], {
        "wake_id": first["wake_id"], "generation": 1,
        "acks": [{"stream": "events/a", "offset": tail}], "done": True,
    }, authorization=f"Bearer {first['callback_token']}")
    assert answer.status_code == 200 and answer.json == {"ok": True, "next_wake": True}
    world.jobs()
    second = world.webhooks()[1]
    assert second["generation"] == 2 and second["wake_id"] != first["wake_id"]
    assert sorted(s["path"] for s in second["streams"]) == ["events/a", "events/b"]
    stale = world.call("POST", f"{SUBS}/s1/callback", {
        "wake_id": first["wake_id"], "generation": 1, "done": True,
    }, authorization=f"Bearer {first['callback_token']}")
    assert stale.status_code == 409 and stale.json["error"]["code"] == "FENCED"


def test_failed_deliveries_back_off_and_the_schedule_survives_a_restart(world: World) -> None:
    world.poster.responses = [WebhookResponse(500), WebhookResponse(0, error="refused"),
                              WebhookResponse(200, b'{"done":true}')]
    world.call("PUT", f"{SUBS}/s1", webhook())
    world.publish("events:a", 1)
    world.settle()
    assert len(world.poster.posted) == 1
    state = world.call("GET", f"{SUBS}/s1").json
    assert state["status"] == "failed"
    sub = world.wakes.get("s1")
    assert sub is not None and sub.wake is not None and sub.wake.attempts == 1
    first_delay = sub.wake.next_attempt_ms - world.clock.now_ms()
    assert 800 <= first_delay <= 1200
    # A new process (a new Lambda container): the queue and the store carry the schedule.
    world.services = bootstrap.build(
        Settings(auth_enabled=False, webhook_signing_seed=SEED), world.store, world.store,
        RecordingSender(), world.clock, rng=random.Random(8), wake_store=world.wakes,
        wake_queue=world.queue, poster=world.poster)
    bootstrap.install(world.services)
    world.clock.advance(0.5)
    assert world.jobs() == 0  # not yet
    world.clock.advance(0.8)
    world.jobs()
    assert len(world.poster.posted) == 2
    sub = world.wakes.get("s1")
    assert sub is not None and sub.wake is not None and sub.wake.attempts == 2
    second_delay = sub.wake.next_attempt_ms - world.clock.now_ms()
    assert 1600 <= second_delay <= 2400
    world.clock.advance(2.5)
    world.jobs()
    assert len(world.poster.posted) == 3
    state = world.call("GET", f"{SUBS}/s1").json
    assert state["status"] == "active" and state["streams"][0]["acked_offset"] == \
        state["streams"][0]["tail_offset"]
    # Every attempt carried the same wake.
    assert {w["wake_id"] for w in world.webhooks()} == {world.webhooks()[0]["wake_id"]}


def test_an_expired_lease_wakes_again_and_fences_the_old_wake(world: World) -> None:
    world.call("PUT", f"{SUBS}/s1", webhook(lease_ttl_ms=2000))
    world.publish("events:a", 1)
    world.settle()
    (first,) = world.webhooks()
    world.clock.advance(1.5)
    # A callback without done is a heartbeat: it extends the lease.
    beat = world.call("POST", f"{SUBS}/s1/callback", {"wake_id": first["wake_id"],
                                                      "generation": 1},
                      authorization=f"Bearer {first['callback_token']}")
    assert beat.json == {"ok": True, "next_wake": False}
    world.clock.advance(1.5)
    world.jobs()
    assert len(world.poster.posted) == 1  # extended: still leased
    world.clock.advance(1.0)
    world.jobs()
    second = world.webhooks()[1]
    assert second["generation"] == 2
    late = world.call("POST", f"{SUBS}/s1/callback", {
        "wake_id": first["wake_id"], "generation": 1, "done": True,
        "acks": [{"stream": "events/a", "offset": first["streams"][0]["tail_offset"]}],
    }, authorization=f"Bearer {first['callback_token']}")
    assert late.status_code == 409 and late.json["error"]["code"] == "FENCED"
    link = world.call("GET", f"{SUBS}/s1").json["streams"][0]
    assert link["acked_offset"] != link["tail_offset"]  # the fenced ack moved nothing


def test_callback_errors(world: World) -> None:
    world.call("PUT", f"{SUBS}/s1", webhook())
    world.publish("events:a", 1)
    world.settle()
    (wake,) = world.webhooks()
    bearer = f"Bearer {wake['callback_token']}"
    base = {"wake_id": wake["wake_id"], "generation": 1}
    cases = [
        ({**base}, "Bearer nope.nope", 401, "TOKEN_INVALID"),
        ({**base}, None, 401, "TOKEN_INVALID"),
        ("{oops", bearer, 400, "INVALID_REQUEST"),
        ({"generation": 1}, bearer, 400, "INVALID_REQUEST"),
        ({**base, "acks": [{"stream": "events/a", "offset": "-1"}]}, bearer, 409,
         "INVALID_OFFSET"),
        ({**base, "acks": [{"stream": "events/zzz", "offset": wake["streams"][0]["tail_offset"]}]},
         bearer, 409, "INVALID_OFFSET"),
        ({**base, "acks": [{"stream": "events/a",
                            "offset": wake["streams"][0]["tail_offset"][:-1] + "9"}]},
         bearer, 409, "INVALID_OFFSET"),
        ({**base, "wake_id": "w_other"}, bearer, 409, "FENCED"),
        ({**base, "generation": 2}, bearer, 409, "FENCED"),
    ]
    for body, authorization, status, code in cases:
        headers = {"authorization": authorization} if authorization else {}
        answer = world.call("POST", f"{SUBS}/s1/callback", body, **headers)
        assert (answer.status_code, answer.json["error"]["code"]) == (status, code), body
    # Another subscription's token is not valid here.
    world.call("PUT", f"{SUBS}/s2", webhook())
    answer = world.call("POST", f"{SUBS}/s2/callback", base, authorization=bearer)
    assert answer.status_code == 401
    # After a delete, callbacks fail and move nothing.
    world.call("DELETE", f"{SUBS}/s1")
    gone = world.call("POST", f"{SUBS}/s1/callback", {**base, "done": True}, authorization=bearer)
    assert gone.status_code == 404


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/hook", "https://10.0.0.1/hook", "https://192.168.1.1/", "https://172.16.0.1/",
    "https://169.254.169.254/latest/meta-data", "https://[::ffff:10.0.0.1]/",
    "https://[fd00::1]/", "https://[fe80::1]/", "https://0.0.0.0/", "http://2130706433/",
    "https://0x7f000001/", "https://127.1/", "http://127.0.0.1:9001/2018-06-01/runtime",
    "http://localhost/hook", "https://user:pw@hooks.example.com/", "ftp://hooks.example.com/",
    "http://hooks.example.com/", "https://metadata.google.internal/", "https://intranet/",
    "not a url", "", 42,
])
def test_unsafe_webhook_urls_are_refused_from_the_url_alone(world: World, url: Any) -> None:
    answer = world.call("PUT", f"{SUBS}/s1", {"type": "webhook", "pattern": "events/*",
                                               "webhook": {"url": url}})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "WEBHOOK_URL_REJECTED"
    assert world.wakes.get("s1") is None


def test_loopback_webhooks_only_where_allowed() -> None:
    allowed = make_world(Settings(auth_enabled=False, webhook_signing_seed=SEED,
                                  webhook_allow_loopback=True))
    try:
        for url in ("http://127.0.0.1:8080/hook", "http://localhost:9/x", "http://[::1]/x"):
            assert allowed.call("PUT", f"{SUBS}/s-{len(url)}", webhook(
                **{"webhook": {"url": url}})).status_code == 201
        # Private ranges stay refused on a dev server too.
        assert allowed.call("PUT", f"{SUBS}/p", webhook(
            **{"webhook": {"url": "http://10.0.0.1/hook"}})).status_code == 400
    finally:
        bootstrap.install(None)


@pytest.mark.parametrize(("body", "fragment"), [
    ({"type": "webhook", "webhook": {"url": HOOK}}, "pattern"),
    ({"type": "nope", "pattern": "a/*"}, "type"),
    (webhook(pattern="*/x"), "wildcard"),
    (webhook(pattern="**"), "wildcard"),
    (webhook(pattern="a/b c"), "segment"),
    (webhook(lease_ttl_ms=999), "lease_ttl_ms"),
    (webhook(lease_ttl_ms=600_001), "lease_ttl_ms"),
    (webhook(extra=1), "Unknown"),
    (webhook(streams="events/a"), "streams"),
    (webhook(streams=["events/a b"]), "invalid stream path"),
    ({"type": "pull-wake", "pattern": "events/*"}, "wake_stream"),
    ({"type": "webhook", "pattern": "events/*"}, "webhook"),
    (webhook(pattern="__ds/*"), "reserved"),
])
def test_bad_subscriptions_are_refused_clearly(world: World, body: Any, fragment: str) -> None:
    answer = world.call("PUT", f"{SUBS}/s1", body)
    assert answer.status_code == 400, answer.body
    assert answer.json["error"]["code"] == "INVALID_REQUEST"
    assert fragment in answer.json["error"]["message"]


def test_bad_ids_and_bodies(world: World) -> None:
    assert world.call("PUT", f"{SUBS}/a%20b", webhook()).json["error"]["code"] == "INVALID_REQUEST"
    assert world.call("PUT", f"{SUBS}/s1", "{oops").status_code == 400
    assert world.call("PUT", f"{SUBS}/s1", "").status_code == 400
    unknown = world.call("GET", "/v1/stream/__ds/nothing/here")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "SUBSCRIPTION_NOT_FOUND"


def test_explicit_streams_add_and_remove(world: World) -> None:
    world.call("PUT", "/v1/stream/manual/a", "[]")
    world.publish("manual:a", "history")
    assert world.call("PUT", f"{SUBS}/x", {"type": "webhook", "streams": ["manual/a"],
                                            "webhook": {"url": HOOK}}).status_code == 201
    assert world.call("POST", f"{SUBS}/x/streams", {"streams": ["manual/b", "manual:c"]}
                      ).status_code == 204
    assert world.call("DELETE", f"{SUBS}/x/streams/manual%2Fb").status_code == 204
    assert world.call("DELETE", f"{SUBS}/x/streams/manual/c").status_code == 204
    streams = world.call("GET", f"{SUBS}/x").json["streams"]
    assert [(s["path"], s["link_type"]) for s in streams] == [("manual/a", "explicit")]
    # Linked at its tail: the message published before is not pending, the next one is.
    assert streams[0]["acked_offset"] == streams[0]["tail_offset"]
    world.settle()
    assert world.poster.posted == []
    world.publish("manual:a", "new")
    world.settle()
    (wake,) = world.webhooks()
    assert [s["path"] for s in wake["streams"]] == ["manual/a"]


def pull(world: World, lease: int = 2000) -> None:
    assert world.call("PUT", "/v1/stream/wake/pool", "[]").status_code == 201
    assert world.call("PUT", f"{SUBS}/p1", {"type": "pull-wake", "pattern": "events/*",
                                             "wake_stream": "wake/pool",
                                             "lease_ttl_ms": lease}).status_code == 201


def wake_stream(world: World) -> list[dict[str, Any]]:
    return json.loads(world.call("GET", "/v1/stream/wake/pool?offset=-1").body)


def test_pull_wake_claim_ack_release(world: World) -> None:
    pull(world)
    none = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w1"})
    assert none.status_code == 409 and none.json["error"]["code"] == "NO_PENDING_WORK"
    world.publish("events:a", 1)
    world.settle()
    (event,) = wake_stream(world)
    assert event["type"] == "wake" and event["subscription_id"] == "p1"
    assert event["stream"] == "events/a" and event["generation"] == 1
    claim = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w1"}).json
    assert claim["generation"] == 1 and claim["lease_ttl_ms"] == 2000
    busy = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w2"})
    assert busy.status_code == 409 and busy.json["error"]["code"] == "ALREADY_CLAIMED"
    assert busy.json["error"]["current_holder"] == "w1"
    bearer = f"Bearer {claim['token']}"
    ids = {"wake_id": claim["wake_id"], "generation": 1}
    world.clock.advance(1.5)
    assert world.call("POST", f"{SUBS}/p1/ack", ids, authorization=bearer).json == {
        "ok": True, "next_wake": False}  # heartbeat
    world.clock.advance(1.5)
    world.jobs()
    assert world.call("POST", f"{SUBS}/p1/claim", {"worker": "w2"}).status_code == 409
    # Work arrives while the claim is held; the worker releases without finishing.
    world.publish("events:b", 2)
    world.settle()
    assert world.call("POST", f"{SUBS}/p1/release", ids, authorization=bearer).status_code == 204
    world.settle()
    events = wake_stream(world)
    assert [e["generation"] for e in events] == [1, 2, 2]  # a new wake for both streams
    again = world.call("POST", f"{SUBS}/p1/release", ids, authorization=bearer)
    assert again.status_code == 409 and again.json["error"]["code"] == "FENCED"
    second = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w2"}).json
    acks = [{"stream": s["path"], "offset": s["tail_offset"]} for s in second["streams"]]
    done = world.call("POST", f"{SUBS}/p1/ack", {"wake_id": second["wake_id"], "generation": 2,
                                                 "acks": acks, "done": True},
                      authorization=f"Bearer {second['token']}")
    assert done.json == {"ok": True, "next_wake": False}
    world.settle()
    assert len(wake_stream(world)) == 3


def test_a_claim_sees_appends_the_consumer_has_not_processed(world: World) -> None:
    pull(world)
    world.publish("events:a", 1)
    world.settle()
    claim = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w1"}).json
    acks = [{"stream": "events/a", "offset": claim["streams"][0]["tail_offset"]}]
    world.call("POST", f"{SUBS}/p1/ack", {"wake_id": claim["wake_id"], "generation": 1,
                                          "acks": acks, "done": True},
               authorization=f"Bearer {claim['token']}")
    world.publish("events:a", 2)  # not pumped: the stream consumer has not seen it
    again = world.call("POST", f"{SUBS}/p1/claim", {"worker": "w1"})
    assert again.status_code == 200 and again.json["generation"] == 2
    assert again.json["streams"][0]["tail_offset"] > acks[0]["offset"]
    world.settle()  # the consumer catches up: no extra wake event for claimed work
    assert [e["generation"] for e in wake_stream(world)] == [1]


def test_an_expired_claim_wakes_again(world: World) -> None:
    pull(world, lease=1000)
    world.publish("events:a", 1)
    world.settle()
    world.call("POST", f"{SUBS}/p1/claim", {"worker": "w1"})
    world.clock.advance(1.1)
    world.jobs()
    assert [e["generation"] for e in wake_stream(world)] == [1, 2]
    assert world.call("POST", f"{SUBS}/p1/claim", {"worker": "w2"}).json["generation"] == 2


def test_a_missing_wake_stream_is_retried_until_it_exists(world: World) -> None:
    world.call("PUT", f"{SUBS}/p1", {"type": "pull-wake", "pattern": "events/*",
                                      "wake_stream": "wake/later"})
    world.publish("events:a", 1)
    world.settle()
    assert world.call("GET", f"{SUBS}/p1").json["status"] == "failed"
    world.call("PUT", "/v1/stream/wake/later", "[]")
    world.clock.advance(1.3)
    world.settle()
    events = json.loads(world.call("GET", "/v1/stream/wake/later?offset=-1").body)
    assert [e["stream"] for e in events] == ["events/a"]
    assert world.call("GET", f"{SUBS}/p1").json["status"] == "active"


def test_stream_paths_are_channels(world: World) -> None:
    created = world.call("PUT", "/v1/stream/events/a/b", '{"x":1}')
    assert created.status_code == 201 and created.headers["Location"].endswith(
        "/v1/stream/events/a/b")
    assert world.call("GET", "/v1/channels/events:a:b").json["name"] == "events:a:b"
    assert world.call("HEAD", "/v1/stream/events%2Fa%2Fb").status_code == 200
    assert world.call("HEAD", "/v1/stream/events:a:b").status_code == 200
    assert world.call("PUT", "/v1/stream/events/a//b", "[]").status_code == 400
    reserved = world.call("POST", "/v1/channels/__ds:x/messages", {"data": 1})
    assert reserved.status_code == 400 and reserved.json["error"]["code"] == "invalid_channel"


def test_signatures_fail_when_tampered_stale_or_unknown(world: World) -> None:
    world.call("PUT", f"{SUBS}/s1", webhook())
    world.publish("events:a", 1)
    world.settle()
    (_, body, headers) = world.poster.posted[0]
    header = headers["Webhook-Signature"]
    jwks = world.services.wakes.jwks()
    now = world.clock.now_ms() / 1000
    verify_signature(body, header, jwks, now=now)
    for bad_body, bad_header, at in [
        (body.replace(b"events/a", b"events/b"), header, now),
        (body, header, now + 301),
        (body, header, now - 301),
        (body, header.replace("kid=ds_", "kid=ds_x"), now),
        (body, "t=1,kid=x", now),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify_signature(bad_body, bad_header, jwks, now=at)
