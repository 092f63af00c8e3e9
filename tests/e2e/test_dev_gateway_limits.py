"""AWS limits of the emulated API Gateway that Switchboard's own handlers cannot reach.

The dev gateway (switchboard/dev/gateway.py) served by uvicorn on a loopback port, with the
limits ``switchboard dev`` loads from this checkout's .chalice/config.json, in front of small
stand-in handlers: a Chalice app whose routes return 7 MB, sleep past the function's timeout
or report the Lambda context, and an authorizer whose result is over 8 KB. The product's own
responses stay under 6 MB (reads are capped) and its tokens hit the 4,096-character URL limit
before their authorizer context can reach 8 KB, so these limits are exercised here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from chalice.app import Chalice, Response
from websockets.exceptions import InvalidStatus

from switchboard.dev import limits as aws_limits
from switchboard.dev.gateway import Gateway, WsHandlers
from switchboard.dev.protocol import protocol_class
from switchboard.dev.rest import DevRestGateway
from tests.support.devserver import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LAMBDA_TIMEOUT_S = 1.0

app = Chalice(app_name="limits")


@app.route("/big")
def big() -> Response:
    return Response(body="x" * 6_291_556, headers={"Content-Type": "text/plain"})


@app.route("/almost-big")
def almost_big() -> Response:
    return Response(body="x" * (6 * 1024 * 1024 - 1024), headers={"Content-Type": "text/plain"})


@app.route("/slow")
def slow() -> dict[str, Any]:
    time.sleep(LAMBDA_TIMEOUT_S + 1)
    return {"slept": True}


@app.route("/context")
def context() -> dict[str, Any]:
    ctx = app.lambda_context
    return {"remaining_ms": ctx.get_remaining_time_in_millis(),
            "memory_mb": ctx.memory_limit_in_mb}


def _authorizer(context_bytes: int) -> Any:
    def authorize(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "principalId": "someone",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]},
            "context": {"claims": "c" * context_bytes},
        }

    return authorize


def _accept(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


class Served:
    """A Gateway on a uvicorn thread; ``url`` is its base URL."""

    def __init__(self, gateway: Gateway, limits: aws_limits.Limits) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            gateway.app, log_config=None, access_log=False, lifespan="off",
            ws=protocol_class(limits.ws_frame_bytes, limits.ws_message_bytes),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def _serve(environ: dict[str, str], context_bytes: int) -> Iterator[Served]:
    limits = aws_limits.load(ROOT, environ=environ)
    executor = ThreadPoolExecutor(8)
    gateway = Gateway(
        DevRestGateway(app, "127.0.0.1", limits.function(aws_limits.API_HANDLER)),
        WsHandlers(_accept, _accept, _accept, _authorizer(context_bytes)),
        executor, limits=limits,
    )
    served = Served(gateway, limits)
    try:
        yield served
    finally:
        served.stop()
        executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Served]:
    """Limits as .chalice/config.json gives them; a 9 KB authorizer context."""
    yield from _serve({}, 9 * 1024)


@pytest.fixture(scope="module")
def short_lambda() -> Iterator[Served]:
    """Every function times out after LAMBDA_TIMEOUT_S; a small authorizer context."""
    yield from _serve({aws_limits.ENV_LAMBDA_TIMEOUT: str(LAMBDA_TIMEOUT_S)}, 100)


def test_a_lambda_response_over_6_mb_is_a_502(gateway: Served) -> None:
    response = httpx.get(f"{gateway.url}/big", timeout=30)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert httpx.get(f"{gateway.url}/almost-big", timeout=30).status_code == 200


def test_the_context_carries_the_functions_deadline_from_the_chalice_config(
    gateway: Served,
) -> None:
    remaining = httpx.get(f"{gateway.url}/context").json()
    config = aws_limits.function_configs(ROOT / ".chalice" / "config.json")
    expected_ms = config[aws_limits.API_HANDLER].timeout_s * 1000
    assert expected_ms - 2000 < remaining["remaining_ms"] <= expected_ms
    assert remaining["memory_mb"] == config[aws_limits.API_HANDLER].memory_mb


def test_a_timed_out_invocation_is_a_502_at_the_functions_timeout(
    short_lambda: Served,
) -> None:
    started = time.monotonic()
    response = httpx.get(f"{short_lambda.url}/slow", timeout=30)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert time.monotonic() - started < LAMBDA_TIMEOUT_S + 0.9


async def test_an_authorizer_result_over_8_kb_refuses_the_connection(
    gateway: Served, short_lambda: Served
) -> None:
    ws = gateway.url.replace("http", "ws", 1) + "/ws?token=t"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws)
    assert refused.value.response.status_code == 500
    small = short_lambda.url.replace("http", "ws", 1) + "/ws?token=t"
    async with websockets.connect(small):
        pass
