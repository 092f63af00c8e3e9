"""Debian's chromium for the browser tests: where it is and how to start it headless.

Playwright drives it through ``executable_path`` (browser downloads do not work here);
.ci/run installs the package. Without it the browser tests skip with this reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and nothing that reaches for the network on its own (this machine has none).
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def require_chromium() -> None:
    """Skip the calling test module when chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "chromium is not installed (apt-get install chromium; .ci/run does it)",
            allow_module_level=True,
        )


def launch(playwright: Any, *extra_args: str) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
