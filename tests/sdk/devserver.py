"""Run the real ``switchboard dev`` as a subprocess for end-to-end tests of the clients.

Used by tests/sdk, tests/cli and tests/browser. The process is started through the installed
entry point, exactly as a user starts it, and its ready line gives the URLs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sys.executable).parent / "switchboard"
READY = re.compile(r"ready: (http://\S+) \(WebSocket: (ws://\S+)\)")


@dataclass(frozen=True)
class DevServer:
    url: str
    ws_url: str
    log: list[str]

    def drop_all_connections(self) -> int:
        """Make the gateway lose every socket without ``$disconnect`` (fault injection)."""
        with httpx.Client(base_url=self.url, timeout=10) as http:
            connections = http.get("/_dev/connections").json()
            for connection in connections:
                http.post(f"/_dev/connections/{connection['connectionId']}/drop")
        return len(connections)


@contextmanager
def run_dev_server(timeout: float = 60.0) -> Iterator[DevServer]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    # Browser tests open sockets from a page, which sends an Origin header.
    env["SWITCHBOARD_ALLOWED_ORIGINS"] = '["*"]'
    process = subprocess.Popen(
        [str(ENTRY_POINT), "dev", "--port", "0", "--no-auth", "--no-agent"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    log: list[str] = []
    deadline = time.monotonic() + timeout
    match = None
    while match is None:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("switchboard dev exited early:\n" + "".join(log))
        log.append(line)
        match = READY.search(line)
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("switchboard dev did not get ready:\n" + "".join(log))
    # Keep draining its output so a chatty server never blocks on a full pipe.
    threading.Thread(target=lambda: log.extend(process.stdout or []), daemon=True).start()
    try:
        yield DevServer(match.group(1), match.group(2), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
