"""The dev server the SDK, CLI and browser-client tests run against.

One shared launcher (tests/support/devserver.py); these suites drive the protocol itself, so
the server runs open (``--no-auth``; tests/e2e/test_auth_e2e.py covers credentials) and
without the example agent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.devserver import ROOT, DevServerProcess, running

ENTRY_POINT = Path(sys.executable).parent / "switchboard"
DevServer = DevServerProcess
__all__ = ["ENTRY_POINT", "ROOT", "DevServer", "run_dev_server"]


@contextmanager
def run_dev_server() -> Iterator[DevServerProcess]:
    # Browser tests open sockets from a page, which sends an Origin header.
    with running("--no-auth", "--no-agent",
                 env={"SWITCHBOARD_ALLOWED_ORIGINS": '["*"]'}) as server:
        yield server
