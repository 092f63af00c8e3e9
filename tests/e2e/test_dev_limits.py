"""AWS's limits, as a real ``switchboard dev`` enforces them by default (docs/architecture.md).

Each test talks to a real dev server over raw WebSockets or HTTP and fails on an emulator that
lets through what API Gateway would not. The idle, duration and REST timeouts are AWS's;
only their clock is sped up here (SWITCHBOARD_DEV_WS_IDLE_S and friends, switchboard/dev/
limits.py). ``--lenient`` relaxes every limit and says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.devserver import ROOT, DevServerProcess, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

KB = 1024
IDLE_S, MAX_S, REST_TIMEOUT_S = 2.0, 5.0, 2.0


@pytest.fixture(scope="module")
def fast_clock() -> Iterator[DevServerProcess]:
    """A faithful dev server whose idle, duration and REST timeouts come sooner."""
    env = {
        "SWITCHBOARD_DEV_WS_IDLE_S": str(IDLE_S),
        "SWITCHBOARD_DEV_WS_MAX_S": str(MAX_S),
        "SWITCHBOARD_DEV_REST_TIMEOUT_S": str(REST_TIMEOUT_S),
        # A long-poll that would wait 6 s: longer than the (sped-up) integration timeout.
        "SWITCHBOARD_LONG_POLL_TIMEOUT_S": "6",
    }
    with running("--no-auth", "--no-agent", env=env) as server:
        yield server


def publish_frame(channel: str, pad_bytes: int, ref: str = "r1") -> str:
    return json.dumps({"action": "publish", "ref": ref, "channel": channel,
                       "data": {"pad": "x" * pad_bytes}})


async def closed_with(connection: websockets.ClientConnection, timeout: float = 10) -> int:
    """Wait for the server to close the socket; its close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await connection.recv()
    assert connection.close_code is not None
    return connection.close_code


def test_the_defaults_are_aws_numbers(dev_server: DevServerProcess) -> None:
    limits = httpx.get(f"{dev_server.http}/_dev/limits").json()
    assert limits["lenient"] is False
    assert limits["ws_frame_bytes"] == 32 * KB
    assert limits["ws_message_bytes"] == 128 * KB
    assert limits["ws_url_chars"] == 4096
    assert limits["authorizer_context_bytes"] == 8 * KB
    assert (limits["ws_idle_s"], limits["ws_max_s"]) == (600, 7200)
    assert limits["rest_timeout_s"] == 29
    assert limits["lambda_response_bytes"] == 6_291_556
    # Per-function timeouts and memory, as .chalice/config.json gives them.
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = limits["functions"]
    assert functions["api_handler"]["timeout_s"] == config["lambda_timeout"]
    assert functions["fanout_records"]["timeout_s"] == (
        config["lambda_functions"]["fanout_records"]["lambda_timeout"]
    )
    assert functions["websocket_message"]["memory_mb"] == config["lambda_memory_size"]


async def test_an_inbound_frame_over_32_kb_closes_the_socket_with_1009(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    async with websockets.connect(dev_server.ws, max_size=None) as ws:
        await ws.send(publish_frame(unique_channel, 33 * KB))  # one frame, < 64 KiB message
        assert await closed_with(ws) == 1009
        assert ws.close_reason == "Message too big"


async def test_fragmented_messages_within_the_limits_reach_the_handler(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    frame = publish_frame(unique_channel, 50 * KB)
    pieces = [frame[i : i + 30 * KB] for i in range(0, len(frame), 30 * KB)]
    assert len(pieces) == 2
    async with websockets.connect(dev_server.ws, max_size=None) as ws:
        await ws.send(pieces)  # a fragmented message: every frame under 32 KB
        reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert reply["type"] == "ack" and reply["ref"] == "r1", reply


async def test_a_fragmented_message_over_128_kb_closes_the_socket_with_1009(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    frame = publish_frame(unique_channel, 129 * KB)
    async with websockets.connect(dev_server.ws, max_size=None) as ws:
        await ws.send([frame[i : i + 32 * KB] for i in range(0, len(frame), 32 * KB)])
        assert await closed_with(ws) == 1009


async def test_a_url_over_4096_characters_is_refused_at_connect(
    dev_server: DevServerProcess,
) -> None:
    url = f"{dev_server.ws}?pad="
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url + "x" * (4097 - len(url)))
    assert refused.value.response.status_code == 414
    async with websockets.connect(url + "x" * (4096 - len(url))) as ws:  # at the limit: fine
        await ws.send(json.dumps({"action": "ping", "ref": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"


async def test_an_idle_socket_is_closed_with_1001(fast_clock: DevServerProcess) -> None:
    async with websockets.connect(fast_clock.ws, ping_interval=None) as ws:
        started = time.monotonic()
        assert await closed_with(ws, timeout=IDLE_S + 5) == 1001
        assert time.monotonic() - started >= IDLE_S - 0.5


async def test_a_busy_socket_is_closed_at_the_maximum_duration(
    fast_clock: DevServerProcess,
) -> None:
    async with websockets.connect(fast_clock.ws, ping_interval=None) as ws:
        started = time.monotonic()

        async def keep_busy() -> None:  # a ping frame every half idle period: never idle
            for n in range(100):
                await ws.send(json.dumps({"action": "ping", "ref": f"p{n}"}))
                await asyncio.sleep(IDLE_S / 2)

        busy = asyncio.create_task(keep_busy())
        try:
            assert await closed_with(ws, timeout=MAX_S + 5) == 1001
        finally:
            busy.cancel()
        assert time.monotonic() - started >= MAX_S - 0.5


def test_rest_requests_end_at_the_integration_timeout_with_504(
    fast_clock: DevServerProcess,
) -> None:
    channel = f"e2e:{uuid.uuid4().hex[:12]}"
    base = f"{fast_clock.http}/v1/stream/{channel}"
    assert httpx.put(base, headers={"Content-Type": "application/json"}).status_code == 201
    started = time.monotonic()
    response = httpx.get(base, params={"offset": "now", "live": "long-poll"}, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json() == {"message": "Endpoint request timed out"}
    assert REST_TIMEOUT_S - 0.2 <= elapsed < 5  # not the 6 s long-poll


def test_binary_responses_need_a_matching_first_accept_value(
    dev_server: DevServerProcess,
) -> None:
    base = f"{dev_server.http}/v1/stream/e2e:{uuid.uuid4().hex[:12]}"
    payload = bytes(range(256))
    created = httpx.put(base, headers={"Content-Type": "application/octet-stream"})
    assert created.status_code == 201
    appended = httpx.post(base, content=payload,
                          headers={"Content-Type": "application/octet-stream"})
    assert appended.status_code in (200, 204)
    # The deployed binary media types include */* (infra/api.py): every first Accept value
    # matches, so every client that sends one gets the bytes.
    for accept in ("application/octet-stream, */*", "*/*", "text/html, application/x"):
        binary = httpx.get(base, params={"offset": "-1"}, headers={"Accept": accept})
        assert binary.content == payload, accept
    # Without an Accept header nothing matches: API Gateway hands over the base64 text the
    # Lambda returned (httpx always sends one: strip it).
    with httpx.Client() as client:
        request = client.build_request("GET", base, params={"offset": "-1"})
        del request.headers["accept"]
        text = client.send(request)
    assert text.content == base64.b64encode(payload)


def test_path_parameters_reach_the_handler_percent_encoded(
    dev_server: DevServerProcess,
) -> None:
    name = f"e2e:{uuid.uuid4().hex[:12]}"
    plain = httpx.put(f"{dev_server.http}/v1/stream/{name}",
                      headers={"Content-Type": "application/json"})
    assert plain.status_code == 201
    # API Gateway REST does not URL-decode pathParameters: the handler gets "e2e%3A…" and
    # decodes it itself, so an encoded name is the same channel...
    encoded = httpx.get(f"{dev_server.http}/v1/stream/{name.replace(':', '%3A')}",
                        params={"offset": "-1"})
    assert encoded.status_code == 200, encoded.text
    # ...and an encoded character that no name may hold is refused like the plain one.
    for bad in ("a;b", "a%3Bb"):
        refused = httpx.get(f"{dev_server.http}/v1/stream/{bad}", params={"offset": "-1"})
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid_channel"
        channel_route = httpx.get(f"{dev_server.http}/v1/channels/{bad}")
        assert channel_route.json()["error"]["code"] == "invalid_channel", bad


def test_lenient_relaxes_the_limits_and_says_so() -> None:
    with running("--no-auth", "--no-agent", "--lenient") as server:
        server.wait_for_line(r"--lenient.*OFF")  # printed right after the ready line
        assert httpx.get(f"{server.http}/_dev/limits").json()["lenient"] is True

        async def big_frame_and_long_url() -> None:
            channel = f"e2e:{uuid.uuid4().hex[:12]}"
            url = f"{server.ws}?pad=" + "x" * 5000
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send(publish_frame(channel, 40 * KB))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
                assert reply["type"] == "ack", reply

        asyncio.run(big_frame_and_long_url())
