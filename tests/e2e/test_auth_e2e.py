"""Authentication end to end: `switchboard dev` with its generated key, real sockets, the SDK
refreshing an expiring token without losing anything, and schemathesis fuzzing the API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from switchboard.client import Options, Switchboard
from tests.e2e.conftest import DevServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    running = DevServerProcess.start("--port", "0", "--no-agent")
    try:
        assert running.api_key and running.api_key.startswith("dev:")
        yield running
    finally:
        running.stop()


def issue(server: DevServerProcess, caps: dict[str, list[str]], ttl: int = 600,
          client_id: str = "user-1") -> str:
    response = httpx.post(f"{server.http}/v1/tokens", json={
        "client_id": client_id, "capabilities": caps, "ttl": ttl},
        headers={"Authorization": f"Bearer {server.api_key}"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_the_key_is_printed_once_and_never_logged_again(server: DevServerProcess) -> None:
    assert sum(server.api_key in line for line in server.lines) == 1  # type: ignore[operator]


async def test_sockets_need_a_token_and_frames_need_the_right(server: DevServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(server.ws):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        async with websockets.connect(f"{server.ws}?token=forged.token.value"):
            pass
    token = issue(server, {"e2e:allowed": ["subscribe", "publish"]})
    async with websockets.connect(f"{server.ws}?token={token}") as ws:
        await ws.send(json.dumps({"action": "publish", "ref": "no", "channel": "e2e:other",
                                  "data": 1}))
        error = json.loads(await ws.recv())
        assert error["code"] == "forbidden" and error["ref"] == "no"
        await ws.send(json.dumps({"action": "publish", "ref": "yes", "channel": "e2e:allowed",
                                  "data": 1, "publisher": "forged"}))
        assert json.loads(await ws.recv())["type"] == "ack"
        listing = httpx.get(f"{server.http}/_dev/connections").text
        assert token not in listing and "[redacted]" in listing
    assert token not in server.output()
    history = httpx.get(f"{server.http}/v1/channels/e2e:allowed/messages",
                        headers={"Authorization": f"Bearer {server.api_key}"}).json()
    assert [m["publisher"] for m in history["messages"]] == ["user-1"]


async def test_the_sdk_refreshes_an_expiring_token_and_loses_nothing(
    server: DevServerProcess,
) -> None:
    minted: list[str] = []

    async def auth() -> str:
        token = issue(server, {"e2e:refresh": ["subscribe", "publish", "history"]}, ttl=2,
                      client_id="refresher")
        minted.append(token)
        return token

    options = Options(backoff_initial=0.05, backoff_max=0.5)
    async with Switchboard(server.http, auth=auth, options=options) as client, \
            Switchboard(server.http, api_key=server.api_key, client_id="agent") as agent:
        channel = client.channel("e2e:refresh")
        received: list[int] = []

        async def read() -> None:
            async for message in channel.subscribe(from_="-1"):
                received.append(message.data)
                if len(received) == 30:
                    return

        reader = asyncio.create_task(read())
        for i in range(30):
            await agent.channel("e2e:refresh").publish(i)
            await asyncio.sleep(0.15)  # 4.5 s: the 2 s tokens expire twice on the way
        await asyncio.wait_for(reader, 30)
        assert received == list(range(30))
        # Publishing as the client after its token expired goes through a refresh too.
        await asyncio.sleep(2.1)
        ack = await channel.publish("late")
        assert ack.seq == 31
    assert len(minted) >= 2


def test_the_dev_token_endpoint_serves_the_console(server: DevServerProcess) -> None:
    issued = httpx.post(f"{server.http}/_dev/token").json()
    assert issued["auth"] is True and issued["client_id"].startswith("console-")
    assert set(issued["capabilities"]["*"]) == {"subscribe", "publish", "history"}


def test_no_auth_says_so_loudly() -> None:
    server = DevServerProcess.start("--port", "0", "--no-auth", "--no-agent")
    try:
        assert server.api_key is None
        assert any("authentication is OFF" in line for line in server.lines)
        assert httpx.post(f"{server.http}/v1/channels/open:1/messages",
                          json={"data": 1}).status_code == 201
    finally:
        server.stop()


def test_schemathesis_finds_no_server_error_and_nothing_stored_changes(
    server: DevServerProcess,
) -> None:
    key = {"Authorization": f"Bearer {server.api_key}"}
    canary = httpx.post(f"{server.http}/v1/channels/canary:keep/messages",
                        json=[{"data": {"n": i}} for i in range(3)], headers=key)
    assert canary.status_code == 201
    before = httpx.get(f"{server.http}/v1/channels/canary:keep/messages", headers=key).json()
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", f"{server.http}/v1/openapi.json",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", "25", "--seed", "7", "--header", f"Authorization: Bearer "
         f"{server.api_key}"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    after = httpx.get(f"{server.http}/v1/channels/canary:keep/messages", headers=key).json()
    assert after == before
    assert httpx.get(f"{server.http}/v1/health").status_code == 200


def test_the_cli_takes_an_api_key_or_a_token(server: DevServerProcess) -> None:
    cli = str(Path(sys.executable).with_name("switchboard"))

    def run(credential: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args, "--url", server.http, "--token", credential],
                              capture_output=True, text=True, timeout=60)

    key = server.api_key or ""
    assert run(key, "publish", "e2e:cli", '{"n": 1}').returncode == 0
    tailed = run(key, "tail", "e2e:cli", "--from", "-1", "--count", "1", "--json")
    assert tailed.returncode == 0 and json.loads(tailed.stdout)["publisher"] == "cli"
    token = issue(server, {"e2e:cli": ["history"]})
    assert json.loads(run(token, "history", "e2e:cli").stdout)["data"] == {"n": 1}
    refused = run(token, "publish", "e2e:cli", "1")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "forbidden" in refused.stderr and token not in refused.stderr


def test_the_issue_14_reproduction_is_closed(server: DevServerProcess) -> None:
    """As reported against `switchboard dev` with auth on: a `mine:*` token forked `secret:x`
    and read it back, and its fork pinned `secret:x` against its owner's delete."""
    key = {"Authorization": f"Bearer {server.api_key}"}
    http = httpx.Client(base_url=server.http, timeout=30)
    assert http.put("/v1/stream/secret:x", content=b'["the secret"]',
                    headers={**key, "Content-Type": "application/json"}).status_code == 201
    mine = {"Authorization": f"Bearer {issue(server, {'mine:*': ['*']}, client_id='mallory')}"}
    assert http.get("/v1/channels/secret:x/messages", headers=mine).status_code == 403
    fork = http.put("/v1/stream/mine:f", headers={
        **mine, "Stream-Forked-From": "/v1/stream/secret:x"})
    assert fork.status_code == 403, fork.text
    read = http.get("/v1/stream/mine:f?offset=-1", headers=mine)
    assert read.status_code == 404 and "the secret" not in read.text
    # A reader of secret:x may fork it, but its fork does not hold secret:x: the owner's
    # delete is a delete, and the name is free again at once.
    reader = {"Authorization": "Bearer " + issue(
        server, {"mine:*": ["*"], "secret:x": ["history"]}, client_id="reader")}
    assert http.put("/v1/stream/mine:g", headers={
        **reader, "Stream-Forked-From": "/v1/stream/secret:x"}).status_code == 201
    assert http.delete("/v1/stream/secret:x", headers=key).status_code == 204
    assert http.head("/v1/stream/secret:x", headers=key).status_code == 404
    assert http.put("/v1/stream/secret:x", headers={
        **key, "Content-Type": "application/json"}).status_code == 201


def test_the_dev_endpoints_refuse_rebound_names_and_foreign_pages(
    server: DevServerProcess,
) -> None:
    rebound = {"Host": "attacker.example"}
    for method, path in (("POST", "/_dev/token"), ("GET", "/_dev/connections"),
                         ("POST", "/@connections/abc")):
        refused = httpx.request(method, f"{server.http}{path}", headers=rebound)
        assert refused.status_code == 403, path
    page = httpx.post(f"{server.http}/_dev/token", headers={"Origin": "https://evil.example"})
    assert page.status_code == 403 and "token" not in page.json()
    own = httpx.post(f"{server.http}/_dev/token", headers={"Origin": server.http})
    assert own.status_code == 200 and own.json()["auth"] is True
