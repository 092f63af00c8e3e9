"""Paths the API does not have, and names no channel may have, answered as the contract says
(JSON errors, nothing of the caller's credentials repeated), routed as API Gateway routes."""

from __future__ import annotations

import httpx
import pytest

from tests.support.devserver import DevServerProcess

pytestmark = pytest.mark.e2e

SECRET = "Bearer do-not-repeat-me"


@pytest.mark.parametrize("path", ["/v1/channels/runs/1", "/v1/channels/a/b/messages",
                                  "/nope", "/v1/stream", "/v1/streams/a", "/v1"])
def test_unknown_routes_get_a_json_404_that_does_not_echo_credentials(
    dev_server: DevServerProcess, path: str
) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = httpx.request(method, dev_server.http + path,
                                 headers={"Authorization": SECRET})
        assert response.status_code == 404, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "not_found" and error["message"]
        assert "do-not-repeat-me" not in response.text


@pytest.mark.parametrize("name", ["a;b", "a%3Bb", "probe;evil", "%E2%9C%93", "__ds%3Ax"])
def test_every_route_refuses_a_name_no_channel_may_have(
    dev_server: DevServerProcess, name: str
) -> None:
    api = dev_server.http
    for method, path in (("PUT", f"/v1/stream/{name}"), ("POST", f"/v1/stream/{name}"),
                         ("GET", f"/v1/channels/{name}"),
                         ("POST", f"/v1/channels/{name}/messages")):
        response = httpx.request(method, api + path, content=b'{"data":1}',
                                 headers={"Content-Type": "application/json",
                                          "Authorization": SECRET})
        assert response.status_code == 400, (method, path, response.text)
        assert response.json()["error"]["code"] == "invalid_channel"
    # Nothing was created under the part before the ';'.
    assert httpx.head(f"{api}/v1/stream/probe").status_code == 404


def test_a_stream_path_of_several_segments_is_one_channel(dev_server: DevServerProcess) -> None:
    """/v1/stream/x/y (or x%2Fy) is the channel x:y (docs/durable-streams.md, "Stream
    paths"); /v1/channels takes the ':' form only."""
    api = dev_server.http
    created = httpx.put(f"{api}/v1/stream/routes/a%2Fb", content=b"[]",
                        headers={"Content-Type": "application/json"})
    assert created.status_code in (200, 201), created.text
    assert httpx.head(f"{api}/v1/stream/routes/a/b").status_code == 200
    assert httpx.get(f"{api}/v1/channels/routes:a:b").json()["name"] == "routes:a:b"
    refused = httpx.get(f"{api}/v1/channels/routes%2Fa")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_channel"
