"""Every script in docs/examples runs against the default `switchboard dev` (authentication
on, as `make dev` runs it) with nothing but the URL and the API key it printed in the
environment, and prints what the documentation says it prints. Without the key it stops at
once with the server's reason, not a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.examples.devstack import ROOT, Stack, dev_stack

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "docs" / "examples"
EXPECTED = {
    "quickstart.py": ["1 plan", "2 search", "resumed: 3 answer", "resumed: 4 done"],
    "agent.py": ["user read: Switchboard routes messages to runs by name .",
                 "agent got: steer"],
    "sync_worker.py": ["stored once: True", "history: [42]"],
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with dev_stack("--no-agent") as running:  # `make dev` as it is, minus the console agent
        assert running.api_key, "authentication must be on, as under `make dev`"
        yield running


def run_example(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60,
        env={**environ, **env}, cwd=ROOT,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_runs_with_the_printed_key(name: str, stack: Stack) -> None:
    done = run_example(name, {"SWITCHBOARD_URL": stack.url,
                              "SWITCHBOARD_API_KEY": stack.api_key or ""})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if name == "agent.py":  # two concurrent sides: their lines may come in either order
        assert sorted(lines) == sorted(EXPECTED[name])
    else:
        assert lines == EXPECTED[name]
    assert done.stderr == ""


def test_the_key_may_come_as_switchboard_token_too(stack: Stack) -> None:
    # The README's CLI snippet exports the key as SWITCHBOARD_TOKEN.
    done = run_example("sync_worker.py", {"SWITCHBOARD_URL": stack.url,
                                          "SWITCHBOARD_TOKEN": stack.api_key or ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED["sync_worker.py"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_without_the_key_each_example_stops_at_once_and_says_why(
    name: str, stack: Stack
) -> None:
    started = time.monotonic()
    done = run_example(name, {"SWITCHBOARD_URL": stack.url})
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert elapsed < 10, f"{name} took {elapsed:.1f} s to fail (interpreter start included)"
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{name.removesuffix('.py')}: unauthorized: Credentials are required" in done.stderr
    assert "SWITCHBOARD_API_KEY" in done.stderr


def test_a_wrong_key_says_so(stack: Stack) -> None:
    done = run_example("quickstart.py", {"SWITCHBOARD_URL": stack.url,
                                         "SWITCHBOARD_API_KEY": "dev:not-the-key"})
    assert done.returncode == 1
    assert done.stderr == "quickstart: unauthorized: Unknown API key or wrong secret.\n"


def test_examples_are_all_tested() -> None:
    assert {p.name for p in Path(EXAMPLES).glob("*.py")} == set(EXPECTED)
