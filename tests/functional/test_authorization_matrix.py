"""The authorization matrix, generated: every route x operation x capability x relation.

Every route of the app (``app.app.routes``, its WebSocket routes and frame actions) has
variants here: one request each, with the channels it reads, writes or changes and the
operations it needs on each (``needs``). A case takes one of those channels and gives the
caller a single grant for it — one operation (``subscribe``, ``publish``, ``history``,
``admin``, ``*``) on a pattern related to the channel (the same name, its namespace's
prefix, a sibling, an unrelated namespace, its fork source, its fork ancestor) — and the
exact grants the variant needs on every other channel. The test's own matcher (not the
service's) decides whether the caller may; then:

- allowed: the request succeeds (or fails for a reason other than authorization);
- refused: the request answers 403 (``not_found`` where only the right to create is
  missing), nothing stored changed (channels, logs, claims, producers, fork bookkeeping,
  subscriptions: nothing created, written, deleted or pinned), and no stored message is in
  the answer;
- a fork the caller was allowed to make never blocks the deletion and re-creation of its
  source unless the caller may ``admin`` that source.

A route without variants fails :func:`test_every_route_and_action_has_cases`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.keys import StaticKeyRing
from chalicelib.core import frames
from chalicelib.core.capabilities import ApiKey, Capabilities, Principal
from chalicelib.services.credentials import Authenticator
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness
from tests.support.events import ws_event

OWNER_SECRET = "o" * 43
OWNER = {"authorization": f"Bearer owner:{OWNER_SECRET}"}
JSON_TYPE = {"content-type": "application/json"}
OPS = ("subscribe", "publish", "history", "admin", "*")
RELATIONS = ("same", "prefix", "sibling", "unrelated", "fork source", "fork ancestor")
MARK = "stored-in-"  # every stored message carries it and its channel's name

# The world every case starts from: app:t is a fork of src:mid, itself a fork of src:root.
TARGET, NEW = "app:t", "app:new"
FORKS = {"app:t": ("src:mid", "src:root"), "src:mid": ("src:root",)}  # source, then older


# -- the test's own matcher -----------------------------------------------------------------


def _matches(pattern: str, channel: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return pattern == channel


def _may(caps: dict[str, set[str]], channel: str, acceptable: frozenset[str]) -> bool:
    return any(
        _matches(pattern, channel) and (ops & acceptable or "*" in ops)
        for pattern, ops in caps.items()
    )


def _related(relation: str, channel: str) -> str | None:
    namespace = channel.split(":", 1)[0]
    lineage = FORKS.get(channel, ())
    return {
        "same": channel,
        "prefix": f"{namespace}:*",
        "sibling": f"{namespace}:sibling",
        "unrelated": "zz:*",
        "fork source": lineage[0] if lineage else None,
        "fork ancestor": lineage[1] if len(lineage) > 1 else None,
    }[relation]


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
    tokens_never: bool = False  # only an API key may (POST /v1/tokens)
    public: bool = False  # no credentials needed, and it changes nothing
    check: Callable[[Harness], None] | None = None  # what must hold after it, whoever asked


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
        return Outcome(first.get("type") == ok, first.get("code"), text)

    return call


def disconnect(h: Harness, _: dict[str, str], connection: str) -> Outcome:
    h.disconnect(connection)
    return Outcome(h.store.get_connection(connection) is None, None, "")


def bystander_kept(h: Harness) -> None:
    """Another client's subscription to the target survives whatever the case did."""
    assert [s.connection_id for s in h.store.subscribers(TARGET)] == ["bystander"]


STREAM = "/v1/stream/{channel}"
CHANNEL = "/v1/channels/{channel}"
MESSAGES = "/v1/channels/{channel}/messages"
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
            # No channel is touched: any valid token may, none may issue tokens.
            for op in OPS:
                caps = {"zz:*": {op}}
                cases.append(Case(variant, caps, not variant.tokens_never,
                                  f"{variant.name} | {op} on zz:*"))
            continue
        for channel in dict.fromkeys(c for c, _ in variant.needs):
            others: dict[str, set[str]] = {}
            for other, ops in variant.needs:
                if other != channel:
                    others.setdefault(other, set()).add(sorted(ops)[0])
            for relation in RELATIONS:
                pattern = _related(relation, channel)
                if pattern is None:
                    continue  # not a fork: no fork source or ancestor to relate to
                for op in OPS:
                    caps = copy.deepcopy(others)
                    caps.setdefault(pattern, set()).add(op)
                    allowed = all(_may(caps, c, ops) for c, ops in variant.needs)
                    cases.append(Case(variant, caps, allowed,
                                      f"{variant.name} | {channel}: {op} on {relation}"))
    return cases


CASES = _cases()


# -- the world ------------------------------------------------------------------------------


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = make_harness(Settings(auth_enabled=True))
    key = ApiKey("owner", OWNER_SECRET, Capabilities.everything())
    harness.services.auth = Authenticator(StaticKeyRing({"owner": key}), harness.clock)
    with harness.client:
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
    bystander = _token(h, {TARGET: {"subscribe"}})
    _connect(h, "bystander", bystander)
    h.send("bystander", json.dumps({"action": "subscribe", "channel": TARGET, "from": "now"}))
    assert h.take("bystander")[0]["type"] == "subscribed"


def _token(h: Harness, caps: dict[str, set[str]]) -> dict[str, str]:
    auth = h.services.auth
    assert auth is not None
    issuer = Principal("key", None, Capabilities.everything(), key_id="owner")
    issued = auth.issue(issuer, "caller", {p: sorted(o) for p, o in caps.items()}, 600)
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
    return copy.deepcopy((s.channels, s.logs, s.ids, s.producers, s.fork_refs_by_source,
                          {c: dict(subs) for c, subs in s.subs.items()},
                          s.connection_channels, s.connections))


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
            mine = [c for c in CASES if c.variant is variant and f"| {channel}:" in c.label]
            assert any(c.allowed for c in mine) and any(not c.allowed for c in mine), (
                variant.name, channel)
    labels = " ".join(c.label for c in CASES)
    assert "on fork source" in labels and "on fork ancestor" in labels
    assert len(CASES) > 700
