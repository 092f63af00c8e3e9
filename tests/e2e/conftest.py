"""End-to-end fixtures: a real ``switchboard dev --port 0`` subprocess and helpers to drive it.

``dev_server`` (session-scoped) starts one server for the whole session and yields a
:class:`DevServerProcess` with its base URLs; other suites (SDK, browser) reuse it. Each test
should use its own channel names (``unique_channel``) since the server's state is shared.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

READY = re.compile(r"^Switchboard dev server ready: (http://\S+) \(WebSocket: (ws://\S+)\)$")
API_KEY = re.compile(r"^API key for this run .*: (\S+)$")
MOTO = re.compile(r"moto \(DynamoDB \+ Streams\) on (http://\S+);")
START_TIMEOUT_S = 60


def switchboard_command() -> list[str]:
    """The installed ``switchboard`` entry point next to this interpreter (else ``-m``)."""
    script = Path(sys.executable).with_name("switchboard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "switchboard.cli"]


@dataclass
class DevServerProcess:
    """A running ``switchboard dev`` and everything it printed so far."""

    process: subprocess.Popen[str]
    http: str = ""
    ws: str = ""
    moto: str = ""
    api_key: str | None = None  # None with --no-auth
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _auth_announced: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, *args: str, wait: bool = True) -> DevServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [*switchboard_command(), "dev", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        server = cls(process)
        server._reader = threading.Thread(target=server._read, daemon=True)
        server._reader.start()
        if wait:
            server.wait_ready()
        return server

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if (moto := MOTO.search(line)) is not None:
                self.moto = moto.group(1)
            if (key := API_KEY.match(line)) is not None:
                self.api_key = key.group(1)
            if key is not None or line.startswith("WARNING: authentication is OFF"):
                self._auth_announced.set()
            if (ready := READY.match(line)) is not None:
                self.http, self.ws = ready.group(1), ready.group(2)
                self._ready.set()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("switchboard dev did not start:\n" + self.output())
        # The key (or the no-auth warning) is printed right after the ready line.
        self._auth_announced.wait(5)

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return int(self.process.returncode)


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServerProcess]:
    """One ``switchboard dev --port 0`` for the session: ``.http``, ``.ws``, ``.moto``."""
    # Auth has its own tests (tests/e2e/test_auth_e2e.py); these drive raw sockets.
    server = DevServerProcess.start("--port", "0", "--no-auth", "--no-agent")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique_channel() -> str:
    return f"e2e:{uuid.uuid4().hex[:12]}"


def moto_client(server: DevServerProcess, service: str = "dynamodb") -> Any:
    """A boto3 client on the dev server's moto, to look at the tables directly."""
    import boto3

    assert server.moto, "the dev server did not print its moto endpoint"
    return boto3.session.Session().client(
        service, endpoint_url=server.moto, region_name="us-east-1"
    )


def kill_quietly(server: DevServerProcess) -> None:
    with contextlib.suppress(Exception):
        server.stop(signal.SIGKILL)


class WsClient:
    """A raw protocol client over ``websockets``: requests matched by ``ref``, message frames
    collected in arrival order, and the size of every WebSocket frame received recorded."""

    def __init__(self, connection: Any) -> None:
        import asyncio

        self.connection = connection
        self.messages: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.frame_sizes: list[int] = []  # payload bytes of every data frame (incl. CONT)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._refs = 0
        protocol = connection.protocol
        original = protocol.recv_frame

        def spy(frame: Any) -> None:
            if frame.opcode.name in {"TEXT", "BINARY", "CONT"}:
                self.frame_sizes.append(len(frame.data))
            original(frame)

        protocol.recv_frame = spy
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> WsClient:
        import websockets

        return cls(await websockets.connect(url, max_size=None, **kwargs))

    async def _read(self) -> None:
        import json

        import websockets

        try:
            async for raw in self.connection:
                frame = json.loads(raw)
                ref = frame.get("ref")
                if frame.get("type") == "message":
                    self.messages.append(frame)
                elif ref is not None and ref in self._replies:
                    self._replies.pop(ref).set_result(frame)
                elif frame.get("type") == "error":
                    self.errors.append(frame)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass

    async def request(self, action: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        import asyncio
        import json

        self._refs += 1
        ref = f"r{self._refs}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ref] = future
        await self.connection.send(json.dumps({"action": action, "ref": ref, **fields}))
        return await asyncio.wait_for(future, timeout)

    async def send_raw(self, data: str | bytes) -> None:
        await self.connection.send(data)

    async def wait_messages(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until ``count`` message frames arrived (in total); returns them all."""
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"got {len(self.messages)} of {count} messages")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.messages

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a crashed client)."""
        self.connection.transport.abort()

    async def close(self) -> None:
        import asyncio

        await self.connection.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
