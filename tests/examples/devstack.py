"""A real ``switchboard dev`` subprocess with chosen flags and environment.

Used by tests/examples and tests/browser/test_console.py: they need ``--no-agent`` (to run
the worker themselves) or the built-in agent at a test pace (``SWITCHBOARD_AGENT_SPEED``).
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"ready: (http://\S+) \(WebSocket: (ws://\S+)\)")
API_KEY = re.compile(r"API key for this run .*: (\S+)$")


@dataclass
class Stack:
    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    # The run's API key (None with --no-auth): backends in the tests authenticate with it.
    api_key: str | None = None


def _switchboard() -> list[str]:
    script = Path(sys.executable).with_name("switchboard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "switchboard.cli"]


@contextmanager
def dev_stack(*args: str, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> Iterator[Stack]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    environ.update(env or {}, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [*_switchboard(), "dev", "--port", "0", *args], cwd=ROOT, env=environ,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    match = None
    while match is None:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            process.wait(5)
            raise RuntimeError("switchboard dev did not get ready:\n" + "".join(lines))
        lines.append(line)
        match = READY.search(line)
    key_line = process.stdout.readline()  # printed right after the ready line
    lines.append(key_line)
    key = API_KEY.search(key_line.strip())  # None with --no-auth (a warning line instead)
    stdout = process.stdout
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    try:
        yield Stack(match.group(1), process, lines, key.group(1) if key else None)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)
