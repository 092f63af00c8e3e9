"""A real ``switchboard dev`` subprocess for the tests that need one (e2e, SDK, CLI,
browser, examples): started through the installed entry point exactly as a user starts it,
its ready line parsed for the URLs, its key line for the run's API key.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
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
    def start(
        cls, *args: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> DevServerProcess:
        """``switchboard dev ARGS``; ``env`` is added to an environment without any
        ``SWITCHBOARD_*`` variable of the test run's own."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        environ.update(env or {}, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [*switchboard_command(), "dev", *args], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ,
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

    # Names the SDK, CLI and browser tests use.
    @property
    def url(self) -> str:
        return self.http

    @property
    def ws_url(self) -> str:
        return self.ws

    @property
    def log(self) -> list[str]:
        return self.lines

    def drop_all_connections(self) -> int:
        """Make the gateway lose every socket without ``$disconnect`` (fault injection)."""
        with httpx.Client(base_url=self.http, timeout=10) as http:
            connections = http.get("/_dev/connections").json()
            for connection in connections:
                http.post(f"/_dev/connections/{connection['connectionId']}/drop")
        return len(connections)

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




@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[DevServerProcess]:
    """``switchboard dev --port 0 ARGS`` for the duration of a ``with`` block."""
    server = DevServerProcess.start("--port", "0", *args, env=env)
    try:
        yield server
    finally:
        server.stop()
