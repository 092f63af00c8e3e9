"""The dev server's log reads as one kind of line: the handlers' Powertools records rendered
like the gateway's own, no false alarm per refused socket, no WebSocket connection id on a
REST request's line, and loggers named "switchboard..." are not swallowed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest
import websockets

from switchboard.client import Switchboard
from tests.support.devserver import DevServerProcess, running

TIME = re.compile(r"^\d\d:\d\d:\d\d ")


def test_powertools_records_become_plain_lines_and_nothing_is_hidden() -> None:
    # In a fresh interpreter: this rewires process-wide logging, as `switchboard dev` does.
    script = textwrap.dedent("""
        import logging
        from aws_lambda_powertools import Logger
        from switchboard.dev import logs

        logs.configure()
        reset = logs.invocation_reset()
        reset()  # before the app has a logger: nothing to do, nothing fails
        assert logs.adopt_powertools()  # at start, before the app exists
        from chalice import Chalice
        Chalice(app_name="switchboard")  # the app: Chalice's own logger has the same name
        assert logs.adopt_powertools()  # once the app is loaded
        handler_logger = Logger(service="switchboard")  # what chalicelib creates, later

        handler_logger.thread_safe_append_keys(connection_id="ws-1", function="x-connect")
        handler_logger.info("connected", extra={"code": "ok"})
        reset()  # the next invocation on this thread
        handler_logger.info("rest request", extra={"code": "not_found"})
        logging.getLogger("switchboard.dev.probe").info("a switchboard.* logger")
        logging.getLogger("sbdev").warning("the gateway's logger")
        try:
            raise ValueError("boom")
        except ValueError:
            handler_logger.exception("handler failed")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "POWERTOOLS_LOG_LEVEL": "INFO"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "logs go to stderr; stdout is for the ready and key lines"
    lines = done.stderr.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], lines
    assert any(TIME.match(x) and x.endswith("x-connect: connected connection_id=ws-1 code=ok")
               for x in lines), lines
    rest = next(x for x in lines if "rest request" in x)
    assert "connection_id" not in rest and rest.endswith("rest request code=not_found")
    assert any(x.endswith(" a switchboard.* logger") for x in lines), lines
    assert any(x.endswith(" the gateway's logger") for x in lines), lines
    failed = lines.index(next(x for x in lines if "ERROR handler failed" in x))
    assert "Traceback" in lines[failed + 1] and lines[-1] == "ValueError: boom"
    assert sum("a switchboard.* logger" in x for x in lines) == 1, "printed once"
    assert sum("rest request" in x for x in lines) == 1, "printed once"


@pytest.fixture(scope="module")
def server() -> Iterator[DevServerProcess]:
    # At the level `make dev` logs at (the test session quiets Powertools to WARNING).
    with running("--no-agent", env={"POWERTOOLS_LOG_LEVEL": "INFO"}) as started:
        yield started


@pytest.mark.e2e
async def test_a_busy_dev_log_is_plain_and_per_request(server: DevServerProcess) -> None:
    # Sockets accepted and refused, REST requests accepted and rejected, interleaved on the
    # same handler threads.
    async with Switchboard(server.http, api_key=server.api_key) as sb:
        await sb.channel("log:a").publish(1)
    async with httpx.AsyncClient(base_url=server.http) as http:
        for _ in range(5):
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(f"{server.ws}?token=bad"):
                    pass
            assert (await http.get("/v1/channels/log:a")).status_code == 401
            async with Switchboard(server.http, api_key=server.api_key) as sb:
                await sb.channel("log:b").publish(1)
            missing = await http.get("/v1/channels/log:nope",
                                     headers={"Authorization": f"Bearer {server.api_key}"})
            assert missing.status_code == 404
    await asyncio.sleep(0.5)
    lines = server.output().splitlines()
    assert not [x for x in lines if x.lstrip().startswith("{")], "no JSON lines"
    assert not [x for x in lines if "without completing handshake" in x]
    handler_lines = [x for x in lines if "APIHandler: request rejected" in x]
    assert len(handler_lines) >= 10
    assert not [x for x in handler_lines if "connection_id" in x], handler_lines
    assert sum("authorizer: connection refused code=unauthorized" in x for x in lines) == 5
    started = lines.index(next(x for x in lines if x.startswith("Starting Switchboard dev")))
    assert started == 0, "the first line says what is happening"
    assert any("export SWITCHBOARD_URL=" in x and "SWITCHBOARD_API_KEY=" in x for x in lines)
