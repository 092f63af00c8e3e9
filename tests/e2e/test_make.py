"""`make test` on a machine without a system package stops at once, naming the one command
to run, instead of letting pytest skip a whole layer. (The install path itself runs on every
fresh machine and in .ci/run.)"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.support.devserver import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("target", "missing", "command"),
    [
        ("chromium", "CHROMIUM=", "sudo apt-get install -y chromium"),
        ("npm", "NPM=", "sudo apt-get install -y nodejs npm"),
    ],
)
@pytest.mark.parametrize("why", ["APT_GET=", "ROOT_USER="])  # no apt-get / not root
def test_a_missing_package_stops_make_test_with_the_command(
    target: str, missing: str, command: str, why: str
) -> None:
    started = time.monotonic()
    done = make(target, missing, why)
    assert time.monotonic() - started < 5
    assert done.returncode != 0
    assert f"Run: {command}" in done.stdout and "`make test` again" in done.stdout


def test_test_depends_on_the_system_and_npm_packages() -> None:
    plan = make("-n", "test").stdout
    assert plan.index("chromium") < plan.index("pytest")
    first_recipe = make("-p", "-n", "test").stdout
    assert "test: venv test-deps" in first_recipe
    assert ("test-deps: chromium tests/conformance/node_modules/.installed "
            "tests/e2e/ts_client/node_modules/.installed") in first_recipe


def test_make_dev_passes_options_through() -> None:
    plan = make("-n", "dev", "ARGS=--no-auth --port 0", "VENV=.venv").stdout
    assert ".venv/bin/switchboard dev --no-auth --port 0" in plan
