"""The dev gateway's own endpoints (``/@connections``, ``/_dev/*``) answer this machine only.

In-process (Starlette's TestClient, no socket): the peer address and the Host and Origin
headers are set per request, as another machine, a DNS-rebinding page or the console would
send them.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from switchboard.dev.gateway import Gateway, WsHandlers


def _never(*_: Any) -> Any:
    raise AssertionError("no Lambda runs for these endpoints")


@pytest.fixture
def gateway() -> Any:
    issued: list[int] = []

    def issue() -> dict[str, Any]:
        issued.append(1)
        return {"token": "t", "client_id": "console-1"}

    with ThreadPoolExecutor(2) as executor:
        gw = Gateway(None, WsHandlers(_never, _never, _never), executor,  # type: ignore[arg-type]
                     token_issuer=issue)
        gw.issued = issued  # type: ignore[attr-defined]
        yield gw


def client(gateway: Gateway, peer: str = "127.0.0.1") -> TestClient:
    return TestClient(gateway.app, base_url="http://127.0.0.1:8765", client=(peer, 50000))


LOCAL_ONLY = [("GET", "/_dev/connections"), ("GET", "/_dev/limits"),
              ("GET", "/_dev/stream-trigger"), ("POST", "/_dev/connections/abc/drop"),
              ("POST", "/_dev/token"), ("GET", "/@connections/abc"),
              ("POST", "/@connections/abc"), ("DELETE", "/@connections/abc")]


@pytest.mark.parametrize(("method", "path"), LOCAL_ONLY)
@pytest.mark.parametrize("peer", ["192.0.2.7", "10.0.0.3", "2001:db8::1"])
def test_other_machines_are_refused(gateway: Gateway, method: str, path: str, peer: str) -> None:
    response = client(gateway, peer).request(method, path)
    assert response.status_code == 403
    assert "loopback" in response.json()["error"]["message"]
    assert gateway.issued == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "path"), LOCAL_ONLY)
@pytest.mark.parametrize("host", ["evil.example:8765", "evil.example", "127.0.0.1.evil.example",
                                  "192.168.1.5:8765", ""])
def test_a_rebound_name_is_refused_even_from_loopback(
    gateway: Gateway, method: str, path: str, host: str
) -> None:
    response = client(gateway).request(method, path, headers={"host": host})
    assert response.status_code == 403
    assert "Host header" in response.json()["error"]["message"]
    assert gateway.issued == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765",
                                  "app.localhost:8765", "127.0.0.2"])
def test_loopback_peers_naming_a_loopback_host_are_served(gateway: Gateway, host: str) -> None:
    http = client(gateway)
    assert http.get("/_dev/connections", headers={"host": host}).json() == []
    # An unknown connection: the Management API's own answer, not a refusal.
    gone = http.post("/@connections/nope", headers={"host": host}, content=b"x")
    assert gone.status_code == 410


def test_the_console_token_needs_this_origin_or_none(gateway: Gateway) -> None:
    http = client(gateway)
    for origin in ("https://evil.example", "http://evil.example:8765", "null",
                   "http://localhost:8765"):  # another origin, even a local one
        refused = http.post("/_dev/token", headers={"origin": origin})
        assert refused.status_code == 403, origin
        assert "pages served by this dev server" in refused.json()["error"]["message"]
    assert gateway.issued == []  # type: ignore[attr-defined]
    same = http.post("/_dev/token", headers={"origin": "http://127.0.0.1:8765"})
    assert same.status_code == 200 and same.json()["token"] == "t"
    assert http.post("/_dev/token").status_code == 200  # no Origin: curl, the SDK
    assert len(gateway.issued) == 2  # type: ignore[attr-defined]
