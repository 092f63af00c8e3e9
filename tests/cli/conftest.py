"""The CLI is tested through its installed entry point against a real `switchboard dev`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.devserver import DevServer, run_dev_server


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    with run_dev_server() as server:
        yield server
