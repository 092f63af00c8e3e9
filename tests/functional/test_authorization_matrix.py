"""The authorization matrix, generated: every route x operation x capability x relation.

Every route of the app (``app.app.routes``, its WebSocket routes and frame actions) has
variants here: one request each, with the channels it reads, writes or changes and the
operations it needs on each (``needs``). A case takes one of those channels and gives the
caller a single grant for it — one operation (``subscribe``, ``publish``, ``history``,
``admin``, ``presence``, ``*``) on a pattern related to the channel (the same name, its
namespace's prefix, a sibling, an unrelated namespace, its fork source, its fork ancestor)
— and the exact grants the variant needs on every other channel. A Durable Streams
subscription's pattern is such a "channel" too (``app:t:*``: a grant must cover all of it).
The test's own matcher (not the service's) decides whether the caller may; then:

- allowed: the request succeeds (or fails for a reason other than authorization);
- refused: the request answers 403 (``not_found`` where only the right to create is
  missing), nothing stored changed (channels, logs, claims, producers, fork bookkeeping,
  subscriptions, presence members, Durable Streams subscriptions and their jobs: nothing
  created, written, deleted or pinned), and no stored message is in the answer;
- a fork the caller was allowed to make never blocks the deletion and re-creation of its
  source unless the caller may ``admin`` that source.

A route without variants fails :func:`test_every_route_and_action_has_cases`.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.keys import StaticKeyRing
from chalicelib.adapters.memory import MemoryStore, RecordingSender
from chalicelib.adapters.memory_wakes import MemoryWakeQueue, MemoryWakeStore, RecordingPoster
from chalicelib.core import frames
from chalicelib.core.capabilities import ApiKey, Capabilities, Principal
from chalicelib.services.credentials import Authenticator
from chalicelib.settings import Settings
from switchboard.dev.rest import ApiGatewayRouteMatcher
from tests.functional.conftest import Harness
from tests.support.events import ws_event
from tests.support.fakes import FakeClock

OWNER_SECRET = "o" * 43
OWNER = {"authorization": f"Bearer owner:{OWNER_SECRET}"}
JSON_TYPE = {"content-type": "application/json"}
OPS = ("subscribe", "publish", "history", "admin", "presence", "*")
RELATIONS = ("same", "prefix", "sibling", "unrelated", "fork source", "fork ancestor")
MARK = "stored-in-"  # every stored message carries it and its channel's name

# The world every case starts from: app:t is a fork of src:mid, itself a fork of src:root.
TARGET, NEW = "app:t", "app:new"
SUBS = "/v1/stream/__ds/subscriptions"
HOOK = {"url": "https://hooks.example.com/wake"}  # posted by a recorder, never for real
SEED = "matrix-signing-seed-0123456789abcdefghijklm"
FORKS = {"app:t": ("src:mid", "src:root"), "src:mid": ("src:root",)}  # source, then older


# -- the test's own matcher -----------------------------------------------------------------


def _matches(pattern: str, channel: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return pattern == channel


def _covers(grant: str, scope: str) -> bool:
    """Whether a grant's pattern covers every channel of ``scope`` (a name or a pattern)."""
    if not scope.endswith("*"):
        return _matches(grant, scope)
    if grant == "*" or grant == scope:
        return True
    return grant.endswith("*") and scope[:-1].startswith(grant[:-1])


def _may(caps: dict[str, set[str]], channel: str, acceptable: frozenset[str]) -> bool:
    return any(
        _covers(pattern, channel) and (ops & acceptable or "*" in ops)
        for pattern, ops in caps.items()
    )


def _related(relation: str, channel: str) -> str | None:
    namespace = channel.split(":", 1)[0]
    lineage = FORKS.get(channel, ())
    related = {
        "same": channel,
        "prefix": f"{namespace}:*",
        "sibling": f"{namespace}:sibling",
        "unrelated": "zz:*",
        "fork source": lineage[0] if lineage else None,
        "fork ancestor": lineage[1] if len(lineage) > 1 else None,
    }[relation]
    return related


# -- what a variant does --------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool  # the request did what it asks
    code: str | None  # the error code, if it failed
    text: str  # everything the caller got back


Call = Callable[[Harness, dict[str, str], str], Outcome]


@dataclass(frozen=True)
class Variant:
    name: str
    routes: tuple[str, ...]  # route-table entries it exercises
    call: Call
    # (channel, acceptable operations): every entry must be allowed.
    needs: tuple[tuple[str, frozenset[str]], ...] = ()
    refused_codes: frozenset[str] = frozenset({"forbidden"})
    websocket: bool = False
    tokens_never: bool = False  # no token may, whatever it allows (an API key, or nobody)
    public: bool = False  # no credentials needed, and it changes nothing
    check: Callable[[Harness], None] | None = None  # what must hold after it, whoever asked
    # What the answer may show the caller, given its grants (e.g. a filtered list).
    shows: Callable[[dict[str, set[str]], Outcome], None] | None = None


def _need(*pairs: tuple[str, str | tuple[str, ...]]) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((c, frozenset((o,) if isinstance(o, str) else o)) for c, o in pairs)


def http(method: str, path: str, body: str | bytes = b"", ok: tuple[int, ...] = (200, 201, 204),
         **headers: str) -> Call:
    def call(h: Harness, credential: dict[str, str], _: str) -> Outcome:
        response = h.client.http.request(method, path, body=body,
                                         headers={**headers, **credential})
        raw = response.body if isinstance(response.body, bytes) else response.body.encode()
        text = raw.decode("utf-8", "replace")
        code = None
        if response.status_code >= 400:
            try:
                code = json.loads(raw)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = f"http-{response.status_code}"
        return Outcome(response.status_code in ok, code, text)

    return call


def ws(ok: str, **fields: Any) -> Call:
    def call(h: Harness, _: dict[str, str], connection: str) -> Outcome:
        h.send(connection, json.dumps({"ref": "case", **fields}))
        got = h.take(connection)
        text = json.dumps(got)
        first = got[0] if got else {}
        errors = [f for f in got if f.get("type") == "error"]
        return Outcome(first.get("type") == ok and not errors,
                       (errors[0] if errors else first).get("code"), text)

    return call


def disconnect(h: Harness, _: dict[str, str], connection: str) -> Outcome:
    h.disconnect(connection)
    return Outcome(h.store.get_connection(connection) is None, None, "")


def bystander_kept(h: Harness) -> None:
    """Another client's subscription to the target survives whatever the case did, and so
    does its presence."""
    assert [s.connection_id for s in h.store.subscribers(TARGET)] == ["bystander"]
    members = h.services.presence.store.members(TARGET)  # type: ignore[attr-defined]
    assert "bystander/b1" in {m.key for m in members}


def lists_only_what_it_may_admin(caps: dict[str, set[str]], outcome: Outcome) -> None:
    listed = {s["id"] for s in json.loads(outcome.text)["subscriptions"]}
    expected = {sub for sub, scope in (("hook", "app:*"), ("pull", "app:*"),
                                       ("hook2", TARGET), ("other", "other:*"))
                if _may(caps, scope, frozenset({"admin"}))
                and (sub != "pull" or _may(caps, "wake:pool", frozenset({"admin"})))}
    assert listed == expected, (caps, listed)


STREAM = "/v1/stream/{channel}"
STREAM_PATH = "/v1/stream/{channel}/{path+}"
CHANNEL = "/v1/channels/{channel}"
MESSAGES = "/v1/channels/{channel}/messages"
PRESENCE = "/v1/channels/{channel}/presence"
SUB = f"{SUBS}/{{subscription}}"
PRODUCER = {"producer-id": "p1", "producer-epoch": "0", "producer-seq": "0"}
FORK_NEEDS = _need((NEW, "admin"), (TARGET, "history"), ("src:mid", "history"),
                   ("src:root", "history"))

VARIANTS: list[Variant] = [
    # -- /v1/channels ---------------------------------------------------------------------
    Variant("channel info", (f"GET {CHANNEL}",), http("GET", f"/v1/channels/{TARGET}"),
            _need((TARGET, "history"))),
    Variant("create a channel", (f"PUT {CHANNEL}",),
            http("PUT", f"/v1/channels/{NEW}", '{"retention": 60}', **JSON_TYPE),
            _need((NEW, "admin"))),
    Variant("re-create a channel", (f"PUT {CHANNEL}",),
            http("PUT", f"/v1/channels/{TARGET}", "{}", ok=(200,), **JSON_TYPE),
            _need((TARGET, "admin"))),
    Variant("delete a channel", (f"DELETE {CHANNEL}",), http("DELETE", f"/v1/channels/{TARGET}"),
            _need((TARGET, "admin"))),
    Variant("history", (f"GET {MESSAGES}",),
            http("GET", f"/v1/channels/{TARGET}/messages?from=-1"), _need((TARGET, "history"))),
    Variant("publish", (f"POST {MESSAGES}",),
            http("POST", f"/v1/channels/{TARGET}/messages", '{"data": "x", "id": "i1"}',
                 **JSON_TYPE), _need((TARGET, "publish"))),
    Variant("publish a batch", (f"POST {MESSAGES}",),
            http("POST", f"/v1/channels/{TARGET}/messages", '[{"data": 1}, {"data": 2}]',
                 **JSON_TYPE), _need((TARGET, "publish"))),
    Variant("publish, creating", (f"POST {MESSAGES}",),
            http("POST", f"/v1/channels/{NEW}/messages", '{"data": "x"}', **JSON_TYPE),
            _need((NEW, "publish"))),
    # -- /v1/stream (Durable Streams) -----------------------------------------------------
    Variant("stream create", (f"PUT {STREAM}",), http("PUT", f"/v1/stream/{NEW}", **JSON_TYPE),
            _need((NEW, "admin"))),
    Variant("stream create with a body", (f"PUT {STREAM}",),
            http("PUT", f"/v1/stream/{NEW}", '["x"]', **JSON_TYPE),
            _need((NEW, "admin"), (NEW, "publish"))),
    Variant("stream re-create", (f"PUT {STREAM}",),
            http("PUT", f"/v1/stream/{TARGET}", ok=(409,), **JSON_TYPE),
            _need((TARGET, "admin"))),
    Variant("fork", (f"PUT {STREAM}",),
            http("PUT", f"/v1/stream/{NEW}", **{"stream-forked-from": f"/v1/stream/{TARGET}"}),
            FORK_NEEDS),
    Variant("fork at an ancestor's offset", (f"PUT {STREAM}",),
            http("PUT", f"/v1/stream/{NEW}", **{
                "stream-forked-from": f"http://127.0.0.1/v1/stream/{TARGET}",
                "stream-fork-offset": "0000000000000000_0000000000000000",
                "stream-fork-sub-offset": "1"}),
            FORK_NEEDS),
    Variant("stream append", (f"POST {STREAM}",),
            http("POST", f"/v1/stream/{TARGET}", '["x"]', **JSON_TYPE),
            _need((TARGET, "publish"))),
    Variant("stream append as a producer", (f"POST {STREAM}",),
            http("POST", f"/v1/stream/{TARGET}", '["x"]', **JSON_TYPE, **PRODUCER),
            _need((TARGET, "publish"))),
    Variant("stream close", (f"POST {STREAM}",),
            http("POST", f"/v1/stream/{TARGET}", **{"stream-closed": "true"}),
            _need((TARGET, "publish"))),
    Variant("stream read", (f"GET {STREAM}",), http("GET", f"/v1/stream/{TARGET}?offset=-1"),
            _need((TARGET, "history"))),
    Variant("stream long-poll", (f"GET {STREAM}",),
            http("GET", f"/v1/stream/{TARGET}?offset=-1&live=long-poll"),
            _need((TARGET, "history"))),
    Variant("stream SSE", (f"GET {STREAM}",),
            http("GET", f"/v1/stream/{TARGET}?offset=-1&live=sse"), _need((TARGET, "history"))),
    Variant("stream head", (f"HEAD {STREAM}",), http("HEAD", f"/v1/stream/{TARGET}"),
            _need((TARGET, "history"))),
    Variant("stream delete", (f"DELETE {STREAM}",), http("DELETE", f"/v1/stream/{TARGET}"),
            _need((TARGET, "admin"))),
    # -- WebSocket ------------------------------------------------------------------------
    Variant("subscribe", ("ws subscribe", "ws $default"),
            ws("subscribed", action="subscribe", channel=TARGET, **{"from": "-1"}),
            _need((TARGET, "subscribe")), websocket=True),
    Variant("subscribe, creating", ("ws subscribe",),
            ws("subscribed", action="subscribe", channel=NEW, **{"from": "-1"}),
            _need((NEW, "subscribe"), (NEW, ("publish", "admin"))),
            refused_codes=frozenset({"forbidden", "not_found"}), websocket=True),
    Variant("publish over the socket", ("ws publish",),
            ws("ack", action="publish", channel=TARGET, data="x"), _need((TARGET, "publish")),
            websocket=True),
    Variant("publish over the socket, creating", ("ws publish",),
            ws("ack", action="publish", channel=NEW, data="x"), _need((NEW, "publish")),
            websocket=True),
    Variant("unsubscribe (one's own only)", ("ws unsubscribe",),
            ws("unsubscribed", action="unsubscribe", channel=TARGET), websocket=True,
            check=bystander_kept),
    Variant("ping", ("ws ping",), ws("pong", action="ping"), websocket=True,
            check=bystander_kept),
    Variant("connect and disconnect", ("ws $connect", "ws $disconnect"), disconnect,
            websocket=True, check=bystander_kept),
    # -- Durable Streams paths with "/" (the greedy route: app/t is app:t) ----------------
    Variant("stream read by path", (f"GET {STREAM_PATH}",),
            http("GET", "/v1/stream/app/t?offset=-1"), _need((TARGET, "history"))),
    Variant("stream head by path", (f"HEAD {STREAM_PATH}",), http("HEAD", "/v1/stream/app/t"),
            _need((TARGET, "history"))),
    Variant("stream create by path", (f"PUT {STREAM_PATH}",),
            http("PUT", "/v1/stream/app/new", **JSON_TYPE), _need((NEW, "admin"))),
    Variant("fork by path", (f"PUT {STREAM_PATH}",),
            http("PUT", "/v1/stream/app/new", **{"stream-forked-from": "/v1/stream/app/t"}),
            FORK_NEEDS),
    Variant("stream append by path", (f"POST {STREAM_PATH}",),
            http("POST", "/v1/stream/app/t", '["x"]', **JSON_TYPE), _need((TARGET, "publish"))),
    Variant("stream delete by path", (f"DELETE {STREAM_PATH}",),
            http("DELETE", "/v1/stream/app/t"), _need((TARGET, "admin"))),
    # -- presence -------------------------------------------------------------------------
    Variant("enter presence", (f"PUT {PRESENCE}/{{instance}}",),
            http("PUT", f"/v1/channels/{TARGET}/presence/i2", '{"data": {"n": 1}}',
                 **JSON_TYPE), _need((TARGET, "presence")), check=bystander_kept),
    Variant("heartbeat presence", (f"PUT {PRESENCE}/{{instance}}",),
            http("PUT", f"/v1/channels/{TARGET}/presence/i1"), _need((TARGET, "presence")),
            check=bystander_kept),
    Variant("leave presence", (f"DELETE {PRESENCE}/{{instance}}",),
            http("DELETE", f"/v1/channels/{TARGET}/presence/i1"),
            _need((TARGET, "presence")), check=bystander_kept),
    Variant("members", (f"GET {PRESENCE}",), http("GET", f"/v1/channels/{TARGET}/presence"),
            _need((TARGET, ("subscribe", "history")))),
    Variant("presence log history", (f"GET {MESSAGES}",),
            http("GET", f"/v1/channels/{TARGET}@presence/messages?from=-1"),
            _need((TARGET, "history"))),
    Variant("presence log read as a stream", (f"GET {STREAM}",),
            http("GET", f"/v1/stream/{TARGET}@presence?offset=-1"),
            _need((TARGET, "history"))),
    Variant("presence over the socket", ("ws presence",),
            ws("presence", action="presence", channel=TARGET, op="enter", data={"n": 1}),
            _need((TARGET, "presence")), websocket=True, check=bystander_kept),
    Variant("subscribe with presence", ("ws subscribe",),
            ws("subscribed", action="subscribe", channel=TARGET, presence=True),
            _need((TARGET, "subscribe")), websocket=True),
    Variant("subscribe with presence, no presence log yet", ("ws subscribe",),
            ws("subscribed", action="subscribe", channel="app:sibling", presence=True),
            _need(("app:sibling", "subscribe")), websocket=True),
    Variant("configure a presence log (nobody may)", (f"PUT {CHANNEL}",),
            http("PUT", f"/v1/channels/{NEW}@presence", '{"retention": 60}', **JSON_TYPE),
            tokens_never=True, refused_codes=frozenset({"forbidden"})),
    # -- Durable Streams subscriptions ----------------------------------------------------
    Variant("create a subscription on a pattern", (f"PUT {SUB}",),
            http("PUT", f"{SUBS}/new", json.dumps(
                {"type": "webhook", "pattern": "app/t/*", "webhook": HOOK}), ok=(201,),
                **JSON_TYPE),
            _need(("app:t:*", "admin")), refused_codes=frozenset({"FORBIDDEN"})),
    Variant("create a subscription on streams", (f"PUT {SUB}",),
            http("PUT", f"{SUBS}/new", json.dumps(
                {"type": "webhook", "streams": ["app/t"], "webhook": HOOK}), ok=(201,),
                **JSON_TYPE),
            _need((TARGET, "admin")), refused_codes=frozenset({"FORBIDDEN"})),
    Variant("create a pull-wake subscription", (f"PUT {SUB}",),
            http("PUT", f"{SUBS}/new", json.dumps(
                {"type": "pull-wake", "pattern": "app/t/*", "wake_stream": "wake/pool"}),
                ok=(201,), **JSON_TYPE),
            _need(("app:t:*", "admin"), ("wake:pool", "admin")),
            refused_codes=frozenset({"FORBIDDEN"})),
    Variant("read a subscription", (f"GET {SUB}",), http("GET", f"{SUBS}/hook"),
            _need(("app:*", "admin")), refused_codes=frozenset({"FORBIDDEN"})),
    Variant("list subscriptions", (f"GET {SUBS}",), http("GET", SUBS),
            shows=lists_only_what_it_may_admin),
    Variant("delete a subscription", (f"DELETE {SUB}",), http("DELETE", f"{SUBS}/hook"),
            _need(("app:*", "admin")), refused_codes=frozenset({"FORBIDDEN"})),
    Variant("add streams to a subscription", (f"POST {SUB}/streams",),
            http("POST", f"{SUBS}/other/streams", '{"streams": ["app/t"]}', **JSON_TYPE),
            _need(("other:*", "admin"), (TARGET, "admin")),
            refused_codes=frozenset({"FORBIDDEN"})),
    Variant("remove a stream from a subscription", (f"DELETE {SUB}/streams/{{stream+}}",),
            http("DELETE", f"{SUBS}/hook2/streams/app/t"), _need((TARGET, "admin")),
            refused_codes=frozenset({"FORBIDDEN"})),
    Variant("claim a wake", (f"POST {SUB}/claim",),
            http("POST", f"{SUBS}/pull/claim", '{"worker": "w"}', ok=(200, 409), **JSON_TYPE),
            _need(("wake:pool", "subscribe")), refused_codes=frozenset({"FORBIDDEN"})),
    *[
        Variant(f"{action} a wake (its own token only)", (f"POST {SUB}/{action}",),
                http("POST", f"{SUBS}/{sub}/{action}", json.dumps(
                    {"wake_id": "w1", "generation": 1, "done": True}), **JSON_TYPE),
                tokens_never=True, refused_codes=frozenset({"TOKEN_INVALID"}))
        for action, sub in (("ack", "pull"), ("release", "pull"), ("callback", "hook"))
    ],
    Variant("signing keys", ("GET /v1/stream/__ds/jwks.json",),
            http("GET", "/v1/stream/__ds/jwks.json"), public=True),
    # -- tokens and public routes ---------------------------------------------------------
    Variant("issue a token", ("POST /v1/tokens",),
            http("POST", "/v1/tokens", json.dumps(
                {"client_id": "x", "capabilities": {"*": ["*"]}}), ok=(201,)),
            tokens_never=True, refused_codes=frozenset({"unauthorized"})),
    Variant("health", ("GET /v1/health",), http("GET", "/v1/health"), public=True),
    Variant("openapi", ("GET /v1/openapi.json",), http("GET", "/v1/openapi.json"),
            public=True),
    *[
        Variant(f"unknown route {method}", (f"{method} /{{proxy+}}",),
                http(method, "/nothing", ok=(404,)), public=True)
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")
    ],
]


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    variant: Variant
    caps: dict[str, set[str]] = field(default_factory=dict)
    allowed: bool = True
    label: str = ""


def _cases() -> list[Case]:
    cases: list[Case] = []
    for variant in VARIANTS:
        if variant.public:
            cases.append(Case(variant, label=f"{variant.name} | no credentials"))
            continue
        if not variant.needs:
            # No channel is touched: any valid token may (what it sees may depend on its
            # grants: ``shows``), or none may.
            for op in OPS:
                for pattern in ("zz:*", "app:*", "*"):
                    cases.append(Case(variant, {pattern: {op}}, not variant.tokens_never,
                                      f"{variant.name} | {op} on {pattern}"))
            continue
        for channel in dict.fromkeys(c for c, _ in variant.needs):
            others: dict[str, set[str]] = {}
            for other, ops in variant.needs:
                if other != channel:
                    others.setdefault(other, set()).add(sorted(ops)[0])
            tried: set[str] = set()
            for relation in RELATIONS:
                pattern = _related(relation, channel)
                if pattern is None or pattern in tried:
                    continue  # not a fork (no source or ancestor), or a case made already
                tried.add(pattern)
                for op in OPS:
                    caps = copy.deepcopy(others)
                    caps.setdefault(pattern, set()).add(op)
                    allowed = all(_may(caps, c, ops) for c, ops in variant.needs)
                    cases.append(Case(variant, caps, allowed,
                                      f"{variant.name} | {channel}: {op} on {relation}"))
    return cases


CASES = _cases()


# -- the world ------------------------------------------------------------------------------


@dataclass
class Wakes:
    store: MemoryWakeStore
    queue: MemoryWakeQueue
    poster: RecordingPoster


@pytest.fixture
def h() -> Iterator[Harness]:
    store, sender, clock = MemoryStore(), RecordingSender(), FakeClock()
    wakes = Wakes(MemoryWakeStore(), MemoryWakeQueue(clock.now_ms), RecordingPoster())
    services = bootstrap.build(
        Settings(auth_enabled=True, webhook_signing_seed=SEED), store, store, sender, clock,
        rng=random.Random(7), wake_store=wakes.store, wake_queue=wakes.queue,
        poster=wakes.poster,
    )
    key = ApiKey("owner", OWNER_SECRET, Capabilities.everything())
    services.auth = Authenticator(StaticKeyRing({"owner": key}), clock)
    bootstrap.install(services)
    client = Client(app_module.app)
    # API Gateway's routing (greedy paths), as the dev gateway does it.
    client.http._local_gateway.event_converter._route_matcher = ApiGatewayRouteMatcher(
        list(app_module.app.routes))
    harness = Harness(client, store, sender, clock, services)
    harness.wakes = wakes  # type: ignore[attr-defined]
    with client:
        _build_world(harness)
        yield harness
    bootstrap.install(None)


def _put(h: Harness, name: str, **headers: str) -> None:
    response = h.client.http.put(f"/v1/stream/{name}", headers={**JSON_TYPE, **OWNER, **headers})
    assert response.status_code == 201, response.body


def _append(h: Harness, name: str) -> None:
    response = h.client.http.post(f"/v1/stream/{name}", body=json.dumps([f"{MARK}{name}"]),
                                  headers={**JSON_TYPE, **OWNER})
    assert response.status_code == 204, response.body


def _build_world(h: Harness) -> None:
    for name in ("src:root", "app:sibling", "zz:other"):
        _put(h, name)
        _append(h, name)
    _put(h, "src:mid", **{"stream-forked-from": "/v1/stream/src:root"})
    _append(h, "src:mid")
    _put(h, TARGET, **{"stream-forked-from": "/v1/stream/src:mid"})
    _append(h, TARGET)
    _put(h, "wake:pool")
    bystander = _token(h, {TARGET: {"subscribe", "presence"}}, "bystander")
    _connect(h, "bystander", bystander)
    h.send("bystander", json.dumps({"action": "subscribe", "channel": TARGET, "from": "now"}))
    assert h.take("bystander")[0]["type"] == "subscribed"
    # Members: the caller's own (which it may heartbeat or leave) and a bystander's.
    for client_id, instance, credential in (
        ("caller", "i1", _token(h, {TARGET: {"presence"}})), ("bystander", "b1", bystander),
    ):
        entered = h.client.http.put(
            f"/v1/channels/{TARGET}/presence/{instance}", headers={**JSON_TYPE, **credential},
            body=json.dumps({"data": {"mark": f"{MARK}{TARGET}@presence", "who": client_id}}))
        assert entered.status_code == 200, entered.body
    for sub, config in (
        ("hook", {"type": "webhook", "pattern": "app/*", "webhook": HOOK}),
        ("hook2", {"type": "webhook", "streams": ["app/t"], "webhook": HOOK}),
        ("pull", {"type": "pull-wake", "pattern": "app/*", "wake_stream": "wake/pool"}),
        ("other", {"type": "webhook", "pattern": "other/*", "webhook": HOOK}),
    ):
        created = h.client.http.put(f"{SUBS}/{sub}", body=json.dumps(config),
                                    headers={**JSON_TYPE, **OWNER})
        assert created.status_code == 201, created.body


def _token(h: Harness, caps: dict[str, set[str]], client_id: str = "caller") -> dict[str, str]:
    auth = h.services.auth
    assert auth is not None
    issuer = Principal("key", None, Capabilities.everything(), key_id="owner")
    issued = auth.issue(issuer, client_id, {p: sorted(o) for p, o in caps.items()}, 600)
    return {"authorization": f"Bearer {issued['token']}"}


def _connect(h: Harness, connection: str, credential: dict[str, str]) -> None:
    event = ws_event("$connect", connection)
    event["queryStringParameters"] = {"token": credential["authorization"].split(" ", 1)[1]}
    assert h.client.lambda_.invoke("connect", event).payload == {"statusCode": 200}


def _stored(h: Harness) -> Any:
    """Everything a request could create, write, delete or pin (leases excepted: checked
    empty, since every request gives its leases back)."""
    s = h.store
    assert s.leases == {}
    wakes: Wakes = h.wakes  # type: ignore[attr-defined]
    presence = h.services.presence.store  # type: ignore[attr-defined]
    return copy.deepcopy((
        s.channels, s.logs, s.ids, s.producers, s.fork_refs_by_source,
        {c: dict(subs) for c, subs in s.subs.items()}, s.connection_channels, s.connections,
        _state(wakes.store), _state(presence), list(wakes.queue._heap), wakes.queue.sent,
        wakes.poster.posted,
    ))


def _state(store: object) -> dict[str, Any]:
    """An in-memory store's data (its lock left out)."""
    return {k: v for k, v in vars(store).items() if k != "_lock"}


# -- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_no_way_around_a_capability(h: Harness, case: Case) -> None:
    variant = case.variant
    credential = {} if variant.public else _token(h, case.caps)
    if variant.websocket:
        _connect(h, "caller", credential)
    before = _stored(h)
    outcome = variant.call(h, credential, "caller")
    if variant.check is not None:
        variant.check(h)
    if variant.public:
        assert outcome.ok, outcome.text
        assert _stored(h) == before
        return
    if variant.shows is not None:
        assert outcome.ok, outcome.text
        variant.shows(case.caps, outcome)
        assert _stored(h) == before
        return
    if not case.allowed:
        assert not outcome.ok, f"refused expected: {outcome.text[:300]}"
        assert outcome.code in variant.refused_codes, outcome.text[:300]
        assert MARK not in outcome.text, "a refused request returned stored data"
        assert _stored(h) == before, "a refused request changed what is stored"
        return
    assert outcome.ok, f"allowed expected: {outcome.code} {outcome.text[:300]}"
    if variant.needs == FORK_NEEDS:
        _source_stays_the_owners(h, case)


def _source_stays_the_owners(h: Harness, case: Case) -> None:
    """The fork pins its source only if its maker may delete that source."""
    pins = _may(case.caps, TARGET, frozenset({"admin"}))
    assert h.client.http.delete(f"/v1/stream/{TARGET}", headers=OWNER).status_code == 204
    head = h.client.http.head(f"/v1/stream/{TARGET}", headers=OWNER).status_code
    recreate = h.client.http.put(f"/v1/stream/{TARGET}", headers={**OWNER, **JSON_TYPE})
    if pins:
        assert (head, recreate.status_code) == (410, 409)  # the protocol's soft delete
    else:
        assert (head, recreate.status_code) == (404, 201), "a reader's fork blocked a delete"


def test_every_route_and_action_has_cases() -> None:
    """A new route (or WebSocket action) without a variant here fails this."""
    routes = {f"{method} {path}" for path, methods in app_module.app.routes.items()
              for method in methods if method != "OPTIONS"}
    routes |= {f"ws {action}" for action in frames.ACTIONS}
    routes |= {f"ws {route}" for route in app_module.app.websocket_handlers}
    covered = {route for variant in VARIANTS for route in variant.routes}
    assert routes - covered == set(), "routes without authorization cases"
    assert covered - routes == set(), "cases for routes that no longer exist"


def test_the_matrix_has_both_outcomes_for_every_channel_a_route_touches() -> None:
    """Not vacuous: each (variant, channel) has allowed and refused cases, and the fork
    relations are exercised."""
    for variant in VARIANTS:
        for channel in {c for c, _ in variant.needs}:
            mine = [c for c in CASES if c.variant is variant and f"| {channel}: " in c.label]
            assert any(c.allowed for c in mine) and any(not c.allowed for c in mine), (
                variant.name, channel)
    labels = " ".join(c.label for c in CASES)
    assert "on fork source" in labels and "on fork ancestor" in labels
    assert len(CASES) > 1000
