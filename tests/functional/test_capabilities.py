"""No way around a capability (issue 14), scenario by scenario, through the Chalice app.

Each test is one hole as it was found: a fork that read a stream its token could not, a fork
that pinned someone else's stream, a subscriber that created channels, a body that became a
hundred thousand messages, live reads and replays without bound, a revoked key whose sockets
went on. The generated matrix (test_authorization_matrix.py) covers every route; these pin
down the behaviour and its messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.adapters.keys import CachedKeyRing
from chalicelib.core.capabilities import Capabilities, Principal
from chalicelib.services.credentials import Authenticator
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness
from tests.support.events import ws_event

SECRET = "k" * 43
KEY = f"owner:{SECRET}"
OWNER = {"authorization": f"Bearer {KEY}"}
JSON_TYPE = {"content-type": "application/json"}


class KeyDocument:
    """The key document as Secrets Manager would hold it, edited by the test."""

    def __init__(self) -> None:
        self.revoked = False
        self.capabilities: dict[str, list[str]] = {"*": ["*"]}

    def fetch(self) -> str:
        return json.dumps({"keys": [{"id": "owner", "secret": SECRET,
                                     "capabilities": self.capabilities,
                                     "revoked": self.revoked}]})


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> Iterator[tuple[Harness, KeyDocument, Monotonic]]:
    document, monotonic = KeyDocument(), Monotonic()
    harness = make_harness(Settings(auth_enabled=True, max_forks_per_stream=3,
                                    max_live_reads_per_principal=2, replay_page=2,
                                    max_replays_per_connection=1, max_replays_per_principal=2))
    ring = CachedKeyRing(document.fetch, 60, monotonic=monotonic)
    harness.services.auth = Authenticator(ring, harness.clock)
    with harness.client:
        yield harness, document, monotonic
    bootstrap.install(None)


@pytest.fixture
def h(world: tuple[Harness, KeyDocument, Monotonic]) -> Harness:
    return world[0]


def token(h: Harness, caps: dict[str, list[str]], client_id: str = "mallory") -> dict[str, str]:
    auth = h.services.auth
    assert auth is not None
    key = Principal("key", None, Capabilities.everything(), key_id="owner")
    issued = auth.issue(key, client_id, caps, 600)
    return {"authorization": f"Bearer {issued['token']}"}


def put_stream(h: Harness, name: str, body: str = "", **headers: str) -> Any:
    return h.client.http.put(f"/v1/stream/{name}", body=body,
                             headers={**JSON_TYPE, **OWNER, **headers})


def fork(h: Harness, name: str, source: str, credential: dict[str, str]) -> Any:
    return h.client.http.put(f"/v1/stream/{name}", headers={
        "stream-forked-from": f"/v1/stream/{source}", **credential})


# -- forks ----------------------------------------------------------------------------------


def test_a_token_cannot_read_a_stream_through_a_fork_of_it(h: Harness) -> None:
    """The issue's reproduction: `mine:*` forked `secret:x` and read it back."""
    assert put_stream(h, "secret:x", '["top secret"]').status_code == 201
    mine = token(h, {"mine:*": ["*"]})
    assert h.client.http.get("/v1/channels/secret:x/messages", headers=mine).status_code == 403
    refused = fork(h, "mine:f", "secret:x", mine)
    assert refused.status_code == 403
    error = json.loads(refused.body)["error"]
    assert error["code"] == "forbidden" and error["detail"] == {
        "channel": "secret:x", "operation": "history"}
    assert h.store.get_channel("mine:f") is None
    assert h.store.fork_refs("secret:x", h.store.channels["secret:x"].epoch).forks == set()
    # A source that does not exist answers the same: no existence oracle.
    assert fork(h, "mine:g", "secret:nothing", mine).status_code == 403


def test_a_fork_needs_history_on_every_ancestor(h: Harness) -> None:
    put_stream(h, "secret:x", '["root"]')
    assert fork(h, "shared:a", "secret:x", OWNER).status_code == 201
    # History on the direct source is not enough: shared:a inherits secret:x's log.
    reader = token(h, {"shared:a": ["history"], "mine:*": ["*"]})
    assert h.client.http.get("/v1/stream/shared:a?offset=-1", headers=reader).body == \
        b'["root"]'
    refused = fork(h, "mine:b", "shared:a", reader)
    assert refused.status_code == 403
    message = json.loads(refused.body)["error"]["message"]
    assert "secret:x" not in message  # the ancestor is not named to someone who may not read it
    both = token(h, {"shared:a": ["history"], "secret:x": ["history"], "mine:*": ["*"]})
    assert fork(h, "mine:b", "shared:a", both).status_code == 201


def test_a_fork_pins_its_source_only_for_a_caller_who_may_delete_it(h: Harness) -> None:
    """A reader's fork never blocks the owner's delete or re-creation of the source."""
    put_stream(h, "runs:1", '["a"]')
    reader = token(h, {"runs:1": ["history"], "mine:*": ["*"]})
    assert fork(h, "mine:f", "runs:1", reader).status_code == 201
    assert h.client.http.delete("/v1/stream/runs:1", headers=OWNER).status_code == 204
    # Deleted outright, not soft: 404, and the owner creates it again at once.
    assert h.client.http.head("/v1/stream/runs:1", headers=OWNER).status_code == 404
    assert put_stream(h, "runs:1", '["new life"]').status_code == 201
    # The fork still reads what it was given (the old log, until its retention ends).
    assert h.client.http.get("/v1/stream/mine:f?offset=-1", headers=reader).body == b'["a"]'
    # Deleting the fork later leaves the new life untouched.
    assert h.client.http.delete("/v1/stream/mine:f", headers=reader).status_code == 204
    assert json.loads(h.client.http.get("/v1/stream/runs:1?offset=-1",
                                        headers=OWNER).body) == ["new life"]
    # A fork by someone who may admin the source pins it (the protocol's soft delete).
    admin = token(h, {"runs:1": ["history", "admin"], "mine:*": ["*"]})
    assert fork(h, "mine:g", "runs:1", admin).status_code == 201
    assert h.client.http.delete("/v1/stream/runs:1", headers=OWNER).status_code == 204
    assert h.client.http.head("/v1/stream/runs:1", headers=OWNER).status_code == 410
    assert put_stream(h, "runs:1").status_code == 409


def test_forks_per_stream_are_capped_and_dead_forks_make_room(h: Harness) -> None:
    put_stream(h, "runs:1", '["a"]')
    for n in range(3):
        assert fork(h, f"f:{n}", "runs:1", OWNER).status_code == 201
    refused = fork(h, "f:3", "runs:1", OWNER)
    assert refused.status_code == 413
    error = json.loads(refused.body)["error"]
    assert error["code"] == "too_large" and error["detail"]["max_forks"] == 3
    assert h.store.get_channel("f:3") is None
    # A fork that expired still counts until someone looks: the next fork prunes it.
    h.store.channels["f:0"] = h.store.channels["f:0"].__class__(
        **{**h.store.channels["f:0"].__dict__, "expires_at": h.clock.now_ms() // 1000})
    assert fork(h, "f:3", "runs:1", OWNER).status_code == 201
    source = h.store.channels["runs:1"]
    assert {m.split(" ")[0] for m in h.store.fork_refs("runs:1", source.epoch).forks} == {
        "f:1", "f:2", "f:3"}


def test_fork_bookkeeping_never_touches_the_source_item(h: Harness) -> None:
    put_stream(h, "runs:1", '["a"]')
    before = h.store.channels["runs:1"]
    for n in range(3):
        fork(h, f"f:{n}", "runs:1", OWNER)
    assert h.store.channels["runs:1"] == before
    for n in range(3):
        h.client.http.delete(f"/v1/stream/f:{n}", headers=OWNER)
    assert h.store.channels["runs:1"] == before
    assert h.store.fork_refs_by_source == {}


# -- implicit creation ---------------------------------------------------------------------


def ws_connect(h: Harness, cid: str, credential: dict[str, str]) -> None:
    event = ws_event("$connect", cid)
    event["queryStringParameters"] = {"token": credential["authorization"].split(" ", 1)[1]}
    assert h.client.lambda_.invoke("connect", event).payload == {"statusCode": 200}


def test_a_subscribe_only_token_does_not_create_channels(h: Harness) -> None:
    watcher = token(h, {"runs:*": ["subscribe"]})
    ws_connect(h, "w", watcher)
    h.send("w", action="subscribe", ref="s", channel="runs:new", **{"from": "-1"})
    (error,) = h.take("w")
    assert error["code"] == "not_found" and error["ref"] == "s"
    assert "may only subscribe" in error["message"]
    assert h.store.get_channel("runs:new") is None and h.store.subscribers("runs:new") == []
    # Once its publisher created it, the same subscribe works.
    assert h.post("/v1/channels/runs:new/messages", {"data": 1}, **OWNER).status_code == 201
    h.send("w", action="subscribe", ref="s2", channel="runs:new", **{"from": "-1"})
    assert [f["type"] for f in h.take("w")] == ["subscribed", "message"]
    # A token that may publish creates it by subscribing, as the contract says.
    writer = token(h, {"runs:*": ["subscribe", "publish"]}, "agent")
    ws_connect(h, "p", writer)
    h.send("p", action="subscribe", ref="s", channel="runs:other", **{"from": "-1"})
    assert h.take("p")[0]["type"] == "subscribed"
    assert h.store.get_channel("runs:other") is not None


# -- bodies --------------------------------------------------------------------------------


def test_a_durable_streams_body_is_bounded_in_bytes_and_messages(h: Harness) -> None:
    put_stream(h, "runs:1")
    zeros = "[" + ",".join(["0"] * 100_000) + "]"  # the issue's 200 KB body
    refused = h.client.http.post("/v1/stream/runs:1", body=zeros,
                                 headers={**JSON_TYPE, **OWNER})
    assert refused.status_code == 413
    error = json.loads(refused.body)["error"]
    assert error["detail"] == {"max_batch": 500, "count": 100_000}
    huge = "[" + ",".join(['"' + "x" * 1000 + '"'] * 1100) + "]"  # over 1 MiB
    refused = h.client.http.post("/v1/stream/runs:1", body=huge, headers={**JSON_TYPE, **OWNER})
    assert refused.status_code == 413
    assert json.loads(refused.body)["error"]["detail"]["max_bytes"] == 1024 * 1024
    refused = put_stream(h, "runs:2", huge)  # an initial body too
    assert refused.status_code == 413 and h.store.get_channel("runs:2") is None
    meta = h.store.channels["runs:1"]
    assert h.store.read("runs:1", meta.epoch, 0, 10) == []


# -- concurrency ----------------------------------------------------------------------------


def test_live_reads_are_bounded_per_principal_and_release_their_lease(h: Harness) -> None:
    put_stream(h, "runs:1", '["a"]')
    alice = token(h, {"runs:*": ["history"]}, "alice")
    read = "/v1/stream/runs:1?offset=-1&live=long-poll"
    assert h.client.http.get(read, headers=alice).status_code == 200
    assert h.store.leases == {}  # released when the response was made
    # Two long-polls of alice's are in flight elsewhere (other containers): a third waits.
    until = h.clock.now_ms() // 1000 + 30
    for lease in ("x", "y"):
        assert h.store.acquire("live:token:owner:alice", lease, until, 2, until - 30)
    for query in ("live=long-poll", "live=sse"):
        refused = h.client.http.get(f"/v1/stream/runs:1?offset=-1&{query}", headers=alice)
        assert refused.status_code == 429, query
        error = json.loads(refused.body)["error"]
        assert error["code"] == "rate_limited" and error["detail"]["limit"] == 2
        assert "SWITCHBOARD_MAX_LIVE_READS_PER_PRINCIPAL" in error["message"]
    # Someone else is not affected; nor are catch-up reads.
    bob = token(h, {"runs:*": ["history"]}, "bob")
    assert h.client.http.get(read, headers=bob).status_code == 200
    assert h.client.http.get("/v1/stream/runs:1?offset=-1", headers=alice).status_code == 200
    # A lease whose holder died runs out shortly after its deadline.
    h.clock.advance(31)
    assert h.client.http.get(read, headers=alice).status_code == 200


def test_long_replays_are_bounded_per_connection_and_principal(h: Harness) -> None:
    h.post("/v1/channels/runs:1/messages", [{"data": n} for n in range(5)], **OWNER)
    reader = token(h, {"runs:*": ["subscribe"]}, "reader")
    ws_connect(h, "c1", reader)
    h.send("c1", action="subscribe", ref="a", channel="runs:1", **{"from": "-1"})
    assert len(h.take("c1")) == 6  # subscribed + 5: a replay of more than one page
    assert h.store.leases == {}
    # Another replay of this connection is running: a long one waits its turn...
    until = h.clock.now_ms() // 1000 + 30
    assert h.store.acquire("replay:conn:c1", "other", until, 1, until - 30)
    before = h.store.subscribers("runs:1")
    h.send("c1", action="subscribe", ref="b", channel="runs:1", **{"from": "-1"})
    (error,) = h.take("c1")
    assert error["code"] == "rate_limited" and error["ref"] == "b"
    assert h.store.subscribers("runs:1") == before  # nothing registered or replaced
    # ...a short one (one page at most) does not need a turn.
    h.send("c1", action="subscribe", ref="c", channel="runs:1", **{"from": _offset(h, 3)})
    assert [f["type"] for f in h.take("c1")] == ["subscribed", "message", "message"]
    h.store.release("replay:conn:c1", "other")
    # Per principal: two of reader's replays on other connections fill its share.
    for lease in ("p", "q"):
        assert h.store.acquire("replay:token:owner:reader", lease, until, 2, until - 30)
    ws_connect(h, "c2", reader)
    h.send("c2", action="subscribe", ref="d", channel="runs:1", **{"from": "-1"})
    assert h.take("c2")[0]["code"] == "rate_limited"


def _offset(h: Harness, seq: int) -> str:
    return f"{h.store.channels['runs:1'].epoch}_{seq:016d}"


# -- revoked keys ---------------------------------------------------------------------------


def test_a_revoked_key_stops_its_open_sockets_within_a_minute(
    world: tuple[Harness, KeyDocument, Monotonic],
) -> None:
    h, document, monotonic = world
    h.post("/v1/channels/runs:1/messages", {"data": 0}, **OWNER)
    reader = token(h, {"runs:*": ["subscribe", "publish"]}, "reader")
    ws_connect(h, "c1", reader)
    h.send("c1", action="subscribe", ref="s", channel="runs:1", **{"from": "-1"})
    assert [f["type"] for f in h.take("c1")] == ["subscribed", "message"]
    document.revoked = True  # the operator revokes the key
    monotonic.now += 30  # within the key ring's minute: still the old document
    h.send("c1", action="ping", ref="p")
    assert h.take("c1") == [{"type": "pong", "ref": "p"}]
    monotonic.now += 31  # past it: every frame re-checks the key
    h.send("c1", action="ping", ref="p2")
    (error,) = h.take("c1")
    assert error["code"] == "unauthorized" and error["ref"] == "p2"
    assert "revoked" in error["message"]
    # The connection ended with it: its subscriptions are gone (the fan-out delivers nothing
    # more to it), and whatever it sends next is refused.
    assert h.store.subscribers("runs:1") == [] and h.store.get_connection("c1") is None
    h.send("c1", action="publish", ref="x", channel="runs:1", data=1)
    (error,) = h.take("c1")
    assert error["code"] == "unauthorized" and error["ref"] == "x"
    meta = h.store.channels["runs:1"]
    assert [m.seq for m in h.store.read("runs:1", meta.epoch, 0, 10)] == [1]
    # Nor can it connect again, or use HTTP.
    event = ws_event("$connect", "c2")
    event["queryStringParameters"] = {"token": reader["authorization"].split(" ", 1)[1]}
    assert h.client.lambda_.invoke("connect", event).payload == {"statusCode": 401}
    assert h.client.http.get("/v1/channels/runs:1", headers=reader).status_code == 401


def test_a_narrowed_key_stops_tokens_that_claim_more(
    world: tuple[Harness, KeyDocument, Monotonic],
) -> None:
    h, document, monotonic = world
    reader = token(h, {"runs:*": ["subscribe", "publish"]}, "reader")
    ws_connect(h, "c1", reader)
    h.send("c1", action="ping", ref="p")
    assert h.take("c1") == [{"type": "pong", "ref": "p"}]
    document.capabilities = {"chat:*": ["*"]}
    monotonic.now += 61
    h.send("c1", action="ping", ref="p2")
    (error,) = h.take("c1")
    assert error["code"] == "unauthorized" and "no longer allows" in error["message"]
