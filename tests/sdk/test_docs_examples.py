"""The snippets in docs/examples run against a real `switchboard dev` and print what the
documentation says they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .devserver import ROOT, DevServer

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "docs" / "examples"


def run_example(name: str, dev_server: DevServer) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SWITCHBOARD_URL": dev_server.url},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart(dev_server: DevServer) -> None:
    assert run_example("quickstart.py", dev_server).splitlines() == [
        "1 plan", "2 search", "resumed: 3 answer", "resumed: 4 done",
    ]


def test_agent(dev_server: DevServer) -> None:
    out = run_example("agent.py", dev_server).splitlines()
    assert "user read: Switchboard routes messages to runs by name ." in out
    assert "agent got: steer" in out


def test_sync_worker(dev_server: DevServer) -> None:
    assert run_example("sync_worker.py", dev_server).splitlines() == [
        "stored once: True", "history: [42]",
    ]


def test_examples_are_all_tested() -> None:
    tested = {"quickstart.py", "agent.py", "sync_worker.py"}
    assert {p.name for p in Path(EXAMPLES).glob("*.py")} == tested
