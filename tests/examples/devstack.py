"""A real ``switchboard dev`` with chosen flags and environment, for tests/examples and
tests/browser/test_console.py: ``--no-agent`` (the test runs the worker itself) or the
built-in agent at a test pace (``SWITCHBOARD_AGENT_SPEED``). Authentication stays on: the
worker and the tests authenticate with the run's API key (``stack.api_key``), the console
with a token from the dev server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.devserver import ROOT, DevServerProcess, running

Stack = DevServerProcess
__all__ = ["ROOT", "Stack", "dev_stack", "wait_for"]


@contextmanager
def dev_stack(*args: str, env: dict[str, str] | None = None) -> Iterator[DevServerProcess]:
    with running(*args, env=env) as stack:
        yield stack


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
