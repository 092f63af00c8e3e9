"""Debian's chromium for the browser tests: where it is and how to start it headless.

Playwright drives it through ``executable_path`` (browser downloads do not work here).
``make test`` installs the package (as root with apt-get) or stops naming the command. Run
directly without chromium, the browser tests fail at collection with that command: a whole
layer is never skipped silently. ``SWITCHBOARD_SKIP_BROWSER_TESTS=1`` skips them on purpose.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and nothing that reaches for the network on its own (this machine has none).
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


SKIP_VARIABLE = "SWITCHBOARD_SKIP_BROWSER_TESTS"


def require_chromium() -> None:
    """Fail the calling test module when chromium is not installed (skip it only when
    ``SWITCHBOARD_SKIP_BROWSER_TESTS=1`` asks for that)."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"chromium is not installed and {SKIP_VARIABLE}=1", allow_module_level=True)
    pytest.fail(
        "The browser tests need Debian's chromium, which is not installed. Run: sudo apt-get "
        f"install -y chromium (or `make test`, which installs it as root), or set "
        f"{SKIP_VARIABLE}=1 to skip these tests on purpose.",
        pytrace=False,
    )


def launch(playwright: Any, *extra_args: str) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])


@contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """A headless chromium for a test module's fixture, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, *extra_args)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_pages(browser: Any) -> Iterator[Callable[..., Any]]:
    """``make(**context_options)`` opens a page in a fresh context (its own sessionStorage,
    like a new tab); on exit the contexts close and any uncaught page error fails the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(**{"viewport": {"width": 1360, "height": 900}, **options})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
