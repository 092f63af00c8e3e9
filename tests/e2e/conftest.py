"""End-to-end fixtures: a real ``switchboard dev --port 0`` subprocess and helpers to drive it.

``dev_server`` (session-scoped) starts one server for the whole session and yields a
:class:`DevServerProcess` with its base URLs; other suites (SDK, browser) reuse it. Each test
should use its own channel names (``unique_channel``) since the server's state is shared.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.devserver import DevServerProcess


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
                if self._keep(frame):
                    pass
                elif frame.get("type") == "message":
                    self.messages.append(frame)
                elif ref is not None and ref in self._replies:
                    self._replies.pop(ref).set_result(frame)
                elif frame.get("type") == "error":
                    self.errors.append(frame)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass

    def _keep(self, frame: dict[str, Any]) -> bool:
        """A subclass's own frames (before the message/reply/error sorting): True if kept."""
        return False

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

    async def wait_messages(self, count: int, timeout: float = 45.0) -> list[dict[str, Any]]:
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
