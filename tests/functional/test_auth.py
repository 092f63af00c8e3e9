"""Who may do what: the authorization matrix over HTTP and WebSocket.

Every hostile credential x every operation, asserting zero unauthorized successes, the right
error code, and that nothing stored changed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from chalicelib import bootstrap
from chalicelib.adapters.keys import StaticKeyRing
from chalicelib.core.capabilities import OPERATIONS, ApiKey, Capabilities, Principal
from chalicelib.services.credentials import Authenticator
from chalicelib.settings import Settings
from tests.functional.conftest import Harness, make_harness
from tests.support.events import ws_event

K1 = ApiKey("k1", "s" * 43, Capabilities.everything())
K2 = ApiKey("k2", "r" * 43, Capabilities.everything(), revoked=True)
K3 = ApiKey("k3", "t" * 43, Capabilities.parse({"chat:*": ["*"]}))
CHANNEL = "runs:1"
ALL_OPS = list(OPERATIONS)
SUBS = "/v1/stream/__ds/subscriptions"
SUB_BODY = {"type": "webhook", "streams": ["runs/1"],
            "webhook": {"url": "https://hooks.example.com/x"}}
PULL_BODY = {"type": "pull-wake", "streams": ["runs/9"], "wake_stream": "runs/1"}


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = make_harness(Settings(auth_enabled=True, allowed_origins=["https://app.example"],
                                    webhook_signing_seed="auth-matrix-seed-0123456789abcdefghijk"))
    harness.services.auth = Authenticator(StaticKeyRing({k.id: k for k in (K1, K2, K3)}),
                                          harness.clock)
    with harness.client:
        # Something stored to protect: one message published with the full key.
        assert post(harness, CHANNEL, {"data": "precious"}, f"k1:{K1.secret}").status_code == 201
        # Durable Streams subscriptions covering the channel: one to read, one to claim.
        full = {"content-type": "application/json", "authorization": f"Bearer k1:{K1.secret}"}
        for sub_id, body in (("m1", SUB_BODY), ("p1", PULL_BODY)):
            created = harness.client.http.put(f"{SUBS}/{sub_id}", body=json.dumps(body),
                                              headers=full)
            assert created.status_code == 201, created.body
        yield harness
    bootstrap.install(None)


def post(h: Harness, channel: str, body: Any, credential: str | None) -> Any:
    headers = {"content-type": "application/json"}
    if credential is not None:
        headers["authorization"] = f"Bearer {credential}"
    return h.client.http.post(f"/v1/channels/{channel}/messages", body=json.dumps(body),
                              headers=headers)


def now(h: Harness) -> int:
    return h.clock.now_ms() // 1000


def claims(h: Harness, **overrides: Any) -> dict[str, Any]:
    base = {"iss": "switchboard", "aud": "switchboard", "sub": "alice", "iat": now(h),
            "nbf": now(h), "exp": now(h) + 600, "caps": {CHANNEL: ALL_OPS}}
    return {**base, **overrides}


def sign(payload: dict[str, Any], secret: str = K1.secret, kid: str = "k1") -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})


def tampered(token: str) -> str:
    head, body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["caps"] = {"*": ["*"]}
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def alg_none(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, None, algorithm="none", headers={"kid": "k1"})  # type: ignore[arg-type]


# Each hostile credential: (name, builder(h, operation) -> credential or None, expected codes).
Hostile = tuple[str, Callable[[Harness, str], str | None], set[str]]
HOSTILE: list[Hostile] = [
    ("no credential", lambda h, op: None, {"unauthorized"}),
    ("garbage", lambda h, op: "not-a-token", {"unauthorized"}),
    ("forged signature", lambda h, op: sign(claims(h), secret="x" * 43), {"unauthorized"}),
    ("alg none", lambda h, op: alg_none(claims(h)), {"unauthorized"}),
    ("expired", lambda h, op: sign(claims(h, iat=now(h) - 7200, nbf=now(h) - 7200,
                                          exp=now(h) - 100)), {"unauthorized"}),
    ("not yet valid", lambda h, op: sign(claims(h, nbf=now(h) + 3600)), {"unauthorized"}),
    ("another audience", lambda h, op: sign(claims(h, aud="another-service")),
     {"unauthorized"}),
    ("no audience", lambda h, op: sign({k: v for k, v in claims(h).items() if k != "aud"}),
     {"unauthorized"}),
    ("wrong channel", lambda h, op: sign(claims(h, caps={"runs:2": ALL_OPS})), {"forbidden"}),
    ("wrong operation", lambda h, op: sign(claims(h, caps={CHANNEL: [o for o in ALL_OPS
                                                                      if o != op]})),
     {"forbidden"}),
    ("tampered claims", lambda h, op: tampered(sign(claims(h, caps={"runs:2": ["history"]}))),
     {"unauthorized"}),
    ("revoked key's token", lambda h, op: sign(claims(h), secret=K2.secret, kid="k2"),
     {"unauthorized"}),
    ("unknown key's token", lambda h, op: sign(claims(h), kid="k9"), {"unauthorized"}),
    ("token beyond its key", lambda h, op: sign(claims(h), secret=K3.secret, kid="k3"),
     {"unauthorized"}),
    ("API key, wrong secret", lambda h, op: "k1:" + "x" * 43, {"unauthorized"}),
    ("revoked API key", lambda h, op: f"k2:{K2.secret}", {"unauthorized"}),
    ("unknown API key", lambda h, op: f"k9:{K1.secret}", {"unauthorized"}),
    ("API key without the right", lambda h, op: f"k3:{K3.secret}", {"forbidden"}),
]


def http_call(h: Harness, operation: str, credential: str | None) -> Any:
    headers = {"content-type": "application/json"}
    if credential is not None:
        headers["authorization"] = f"Bearer {credential}"
    http = h.client.http
    if operation == "publish":
        return http.post(f"/v1/channels/{CHANNEL}/messages", body='{"data":"evil"}',
                         headers=headers)
    if operation == "history":
        return http.get(f"/v1/channels/{CHANNEL}/messages", headers=headers)
    if operation == "info":
        return http.get(f"/v1/channels/{CHANNEL}", headers=headers)
    if operation == "create":
        return http.put(f"/v1/channels/{CHANNEL}", body='{"retention":60}', headers=headers)
    if operation == "stream-append":
        return http.post(f"/v1/stream/{CHANNEL}", body='"evil"', headers=headers)
    if operation == "stream-read":
        return http.get(f"/v1/stream/{CHANNEL}?offset=-1", headers=headers)
    if operation == "delete":
        return http.delete(f"/v1/channels/{CHANNEL}", headers=headers)
    if operation == "sub-put":
        return http.put(f"{SUBS}/m2", body=json.dumps(SUB_BODY), headers=headers)
    if operation == "sub-get":
        return http.get(f"{SUBS}/m1", headers=headers)
    if operation == "sub-delete":
        return http.delete(f"{SUBS}/m1", headers=headers)
    if operation == "sub-claim":
        return http.post(f"{SUBS}/p1/claim", body='{"worker": "mallory"}', headers=headers)
    if operation == "token issue":
        return http.post("/v1/tokens", headers=headers, body=json.dumps(
            {"client_id": "mallory", "capabilities": {"*": ["*"]}, "ttl": 60}))
    raise AssertionError(operation)


HTTP_OPS = {"publish": "publish", "history": "history", "info": "history", "create": "admin",
            "stream-append": "publish", "stream-read": "history", "delete": "admin",
            "token issue": "admin",
            # Durable Streams subscriptions (their errors use the protocol's upper case).
            "sub-put": "admin", "sub-get": "admin", "sub-delete": "admin",
            "sub-claim": "subscribe"}


def snapshot(h: Harness) -> Any:
    meta = h.store.get_channel(CHANNEL)
    wakes = h.services.wakes.store
    return (meta, h.store.read(CHANNEL, meta.epoch, 0, 100) if meta else None,
            sorted(wakes.subs.items()), wakes.links("p1", wakes.subs["p1"].incarnation))


@pytest.mark.parametrize("operation", list(HTTP_OPS))
@pytest.mark.parametrize(("name", "credential", "codes"), HOSTILE, ids=[x[0] for x in HOSTILE])
def test_http_matrix_has_no_unauthorized_success(
    h: Harness, operation: str, name: str, credential: Callable[[Harness, str], str | None],
    codes: set[str],
) -> None:
    before = snapshot(h)
    response = http_call(h, operation, credential(h, HTTP_OPS[operation]))
    assert response.status_code in (401, 403), (name, operation, response.body)
    error = json.loads(response.body)["error"]
    if operation == "token issue" and name in ("wrong channel", "wrong operation"):
        codes = {"unauthorized"}  # tokens never issue tokens, whatever they allow
    assert error["code"].lower() in codes, (name, operation, error)
    assert snapshot(h) == before


def test_valid_credentials_succeed_for_each_http_operation(h: Harness) -> None:
    key = f"k1:{K1.secret}"
    for operation in ("publish", "history", "info", "stream-read", "create"):
        token = sign(claims(h, caps={CHANNEL: [HTTP_OPS[operation]]}))
        response = http_call(h, operation, token)
        assert response.status_code in (200, 201, 409), (operation, response.body)
    assert http_call(h, "token issue", key).status_code == 201
    for operation, expected in (("sub-get", 200), ("sub-put", 201), ("sub-claim", 409)):
        token = sign(claims(h, caps={CHANNEL: [HTTP_OPS[operation]]}))
        response = http_call(h, operation, token)
        assert response.status_code == expected, (operation, response.body)
    assert json.loads(http_call(h, "sub-claim", key).body)["error"]["code"] == "NO_PENDING_WORK"
    assert http_call(h, "delete", sign(claims(h, caps={CHANNEL: ["admin"]}))).status_code == 204


def ws_connect(h: Harness, cid: str, token: str | None, origin: str | None = None) -> Any:
    event = ws_event("$connect", cid)
    if token is not None:
        event["queryStringParameters"] = {"token": token}
    if origin is not None:
        event["headers"]["Origin"] = origin
    return h.client.lambda_.invoke("connect", event).payload


WS_OPS = {"subscribe": {"action": "subscribe", "channel": CHANNEL, "from": "-1"},
          "publish": {"action": "publish", "channel": CHANNEL, "data": "evil"}}


@pytest.mark.parametrize("operation", list(WS_OPS))
@pytest.mark.parametrize(("name", "credential", "codes"), HOSTILE, ids=[x[0] for x in HOSTILE])
def test_websocket_matrix_has_no_unauthorized_success(
    h: Harness, operation: str, name: str, credential: Callable[[Harness, str], str | None],
    codes: set[str],
) -> None:
    before = snapshot(h)
    cred = credential(h, operation)
    result = ws_connect(h, "c1", cred)
    if result["statusCode"] == 200:
        # Accepted at $connect (a valid token); every frame must still be refused.
        assert codes == {"forbidden"}, name
        h.send("c1", json.dumps({"ref": "r", **WS_OPS[operation]}))
        (error,) = h.take("c1")
        assert error["type"] == "error" and error["code"] in codes and error["ref"] == "r"
    else:
        assert result["statusCode"] in (401, 403), name
        assert h.store.get_connection("c1") is None
        # A frame on a connection that never authenticated is refused too.
        h.send("c1", json.dumps({"ref": "r", **WS_OPS[operation]}))
        (error,) = h.take("c1")
        assert error["code"] == "unauthorized"
    assert snapshot(h) == before
    assert h.store.subscribers(CHANNEL) == []


def test_websocket_with_a_valid_token_works_and_publisher_cannot_be_forged(h: Harness) -> None:
    token = sign(claims(h, sub="agent-7"))
    assert ws_connect(h, "c1", token) == {"statusCode": 200}
    h.send("c1", json.dumps({"action": "subscribe", "channel": CHANNEL, "from": "-1"}))
    h.send("c1", json.dumps({"action": "publish", "ref": "p", "channel": CHANNEL,
                             "data": {"x": 1}, "publisher": "someone-else"}))
    frames = h.take("c1")
    assert [f["type"] for f in frames] == ["subscribed", "message", "ack"]
    h.pump()
    (live,) = h.take("c1")
    assert live["seq"] == 2 and live["publisher"] == "agent-7"
    history = json.loads(h.client.http.get(
        f"/v1/channels/{CHANNEL}/messages", headers={"authorization": f"Bearer {token}"}).body)
    assert [m["publisher"] for m in history["messages"]] == ["key:k1", "agent-7"]


def test_a_token_that_expires_while_connected_stops_authorizing(h: Harness) -> None:
    token = sign(claims(h, exp=now(h) + 60))
    assert ws_connect(h, "c1", token) == {"statusCode": 200}
    h.send("c1", json.dumps({"action": "publish", "ref": "a", "channel": CHANNEL, "data": 1}))
    assert h.take("c1")[0]["type"] == "ack"
    h.clock.advance(61)
    h.send("c1", json.dumps({"action": "publish", "ref": "b", "channel": CHANNEL, "data": 2}))
    (error,) = h.take("c1")
    assert error["code"] == "unauthorized" and "expired" in error["message"]
    h.send("c1", json.dumps({"action": "ping", "ref": "p"}))
    assert h.take("c1") == [{"type": "pong", "ref": "p"}]  # the connection still works


def test_browser_origins_must_be_allowed(h: Harness) -> None:
    token = sign(claims(h))
    assert ws_connect(h, "c1", token, origin="https://evil.example") == {"statusCode": 403}
    assert ws_connect(h, "c2", token, origin="https://app.example") == {"statusCode": 200}
    assert ws_connect(h, "c3", token) == {"statusCode": 200}  # not a browser


def test_the_authorizer_context_is_used_without_a_database_read(h: Harness) -> None:
    principal = Principal("token", "bob", Capabilities.parse({CHANNEL: ["publish"]}),
                          key_id="k1", expires_at=now(h) + 600)
    event = ws_event("$default", "c9", json.dumps(
        {"action": "publish", "ref": "p", "channel": CHANNEL, "data": 1}))
    event["requestContext"]["authorizer"] = {
        "claims": json.dumps(principal.to_claims()), "principalId": "bob"}
    h.client.lambda_.invoke("message", event)
    (ack,) = h.take("c9")
    assert ack["type"] == "ack"
    assert h.store.get_connection("c9") is None  # never looked up, never stored


def test_the_ws_authorizer_allows_valid_tokens_and_refuses_others(h: Harness) -> None:
    request = {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:abc/api/$connect",
               "headers": {}, "requestContext": {"routeKey": "$connect"}}
    allowed = h.client.lambda_.invoke(
        "ws_authorizer", {**request, "queryStringParameters": {"token": sign(claims(h))}})
    policy = allowed.payload
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert Principal.from_claims(json.loads(policy["context"]["claims"])).client_id == "alice"
    with pytest.raises(Exception, match="Unauthorized"):
        h.client.lambda_.invoke("ws_authorizer", {**request, "queryStringParameters": {
            "token": sign(claims(h), secret="x" * 43)}})


def test_tokens_are_issued_within_the_key_and_carry_the_client_id(h: Harness) -> None:
    key3 = f"k3:{K3.secret}"
    too_much = h.client.http.post("/v1/tokens", headers={"authorization": f"Bearer {key3}"},
                                  body=json.dumps({"client_id": "u", "capabilities": {
                                      "*": ["subscribe"]}}))
    assert too_much.status_code == 403
    issued = h.client.http.post("/v1/tokens", headers={"authorization": f"Bearer {key3}"},
                                body=json.dumps({"client_id": "u", "ttl": 120,
                                                 "capabilities": {"chat:room-1": ["publish"]}}))
    assert issued.status_code == 201
    body = json.loads(issued.body)
    assert body["client_id"] == "u" and body["expires"] == (now(h) + 120) * 1000
    principal = h.services.auth.from_token(body["token"])  # type: ignore[union-attr]
    assert principal.client_id == "u" and principal.capabilities.allows("chat:room-1", "publish")
    for bad in ({"client_id": "", "capabilities": {"*": ["*"]}},
                {"client_id": "u", "capabilities": {"*": ["fly"]}},
                {"client_id": "u", "capabilities": {"chat:*": ["*"]}, "ttl": 10**9},
                {"client_id": "u", "capabilities": {"bad name": ["*"]}}):
        response = h.client.http.post("/v1/tokens", body=json.dumps(bad),
                                       headers={"authorization": f"Bearer k1:{K1.secret}"})
        assert response.status_code == 400, bad


def test_errors_never_echo_credentials(h: Harness) -> None:
    secret_token = sign(claims(h), secret="x" * 43)
    response = http_call(h, "publish", secret_token)
    assert secret_token.encode() not in response.body and b"x" * 20 not in response.body


def test_durable_streams_appends_carry_the_authenticated_publisher(h: Harness) -> None:
    token = sign(claims(h, sub="ds-writer"))
    appended = h.client.http.post(f"/v1/stream/{CHANNEL}", body='{"via":"ds"}',
                                  headers={"content-type": "application/json",
                                           "authorization": f"Bearer {token}"})
    assert appended.status_code in (200, 204), appended.body
    history = json.loads(h.client.http.get(
        f"/v1/channels/{CHANNEL}/messages", headers={"authorization": f"Bearer {token}"}).body)
    assert history["messages"][-1]["publisher"] == "ds-writer"
    assert history["messages"][-1]["data"] == {"via": "ds"}


def test_tokens_are_capped_so_the_websocket_url_fits_api_gateway(h: Harness) -> None:
    from chalicelib.services.credentials import MAX_TOKEN_CHARS

    key = {"authorization": f"Bearer k1:{K1.secret}"}
    many = {f"runs:{n:04d}-{'x' * 40}": ["subscribe", "history"] for n in range(60)}
    refused = h.client.http.post("/v1/tokens", headers=key, body=json.dumps(
        {"client_id": "u", "capabilities": many}))
    assert refused.status_code == 413
    error = json.loads(refused.body)["error"]
    assert error["code"] == "too_large" and error["detail"]["max_chars"] == MAX_TOKEN_CHARS
    assert error["detail"]["size"] > MAX_TOKEN_CHARS and "4096" in error["message"]
    # The broader pattern the message suggests fits, and its URL is far under the limit.
    issued = json.loads(h.client.http.post("/v1/tokens", headers=key, body=json.dumps(
        {"client_id": "u" * 128, "capabilities": {"runs:*": ["subscribe", "history"]}})).body)
    url = "wss://abcdefghij.execute-api.eu-central-1.amazonaws.com/production?token="
    assert len(url + issued["token"]) < 1000
    # A token longer than any this service issues is refused before it is parsed.
    long = sign(claims(h, caps=many))
    assert len(long) > MAX_TOKEN_CHARS
    response = h.client.http.get(f"/v1/channels/{CHANNEL}", headers={
        "authorization": f"Bearer {long}"})
    assert response.status_code == 401 and "at most" in json.loads(response.body)["error"][
        "message"]


def test_issued_tokens_name_this_service_as_audience(h: Harness) -> None:
    issued = json.loads(h.client.http.post(
        "/v1/tokens", headers={"authorization": f"Bearer k1:{K1.secret}"},
        body=json.dumps({"client_id": "u", "capabilities": {"runs:*": ["history"]}})).body)
    payload = jwt.decode(issued["token"], options={"verify_signature": False})
    assert payload["aud"] == "switchboard" and payload["iss"] == "switchboard"
    other = sign(claims(h, aud="billing"))
    response = h.client.http.get(f"/v1/channels/{CHANNEL}",
                                 headers={"authorization": f"Bearer {other}"})
    assert response.status_code == 401
    assert "audience" in json.loads(response.body)["error"]["message"]
