"""The public Durable Streams conformance suite, run against a real `switchboard dev`.

The suite is the npm package ``@durable-streams/server-conformance-tests`` (pinned in
package.json / package-lock.json next to this file); ``conformance.test.ts`` hands it the
server's URL and vitest runs it. This test starts ``switchboard dev --port 0`` (REST, WebSocket
and emulated DynamoDB on one port), runs the suite, and fails if any non-skipped test fails.

Install the suite once with ``npm install --prefix tests/conformance`` (.ci/run does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SUITE = HERE / "node_modules" / "@durable-streams" / "server-conformance-tests"
READY = re.compile(r"Switchboard dev server ready: (http://\S+)")
SUITE_TIMEOUT_S = 600
LONG_POLL_TIMEOUT_S = 3

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(SUITE_TIMEOUT_S + 120)]


def _switchboard_command() -> list[str]:
    script = Path(sys.executable).with_name("switchboard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "switchboard.cli"]


@pytest.fixture(scope="module")
def dev_url() -> Iterator[str]:
    """A fresh `switchboard dev --port 0` for the suite; yields its base URL."""
    proc = subprocess.Popen(
        # The suite sends no credentials: run open (the rest of the API tests auth). Faithful
        # limits: its byte-stream reads send `Accept: */*`, which the deployed API's binary
        # media types match (infra/api.py).
        [*_switchboard_command(), "dev", "--port", "0", "--no-auth", "--no-agent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            # Long-polls that time out end after this instead of 20 s (the suite is told the
            # same below); appends the suite waits for come within 0.5 s.
            "SWITCHBOARD_LONG_POLL_TIMEOUT_S": str(LONG_POLL_TIMEOUT_S),
        },
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen: list[str] = []
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = READY.search(line)
        if match:
            url = match.group(1).rstrip("/")
            break
    if url is None:
        proc.kill()
        pytest.fail("switchboard dev did not become ready:\n" + "".join(seen[-40:]))
    # Keep draining its output so a chatty server never blocks on a full pipe.
    drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        drain.wait(timeout=10)


def _failures(report: dict[str, Any]) -> list[str]:
    out = []
    for suite_file in report.get("testResults", []):
        for case in suite_file.get("assertionResults", []):
            if case.get("status") == "failed":
                message = (case.get("failureMessages") or [""])[0].splitlines()[:3]
                out.append(f"{case.get('fullName')}: {' | '.join(message)}")
        if suite_file.get("status") == "failed" and not suite_file.get("assertionResults"):
            out.append(f"{suite_file.get('name')}: {suite_file.get('message', '')[:500]}")
    return out


def test_durable_streams_conformance_suite(dev_url: str, tmp_path: Path) -> None:
    if not SUITE.is_dir():
        pytest.fail(
            "The Durable Streams conformance suite is not installed. Run "
            "`npm install --prefix tests/conformance` (needs node >= 20), then run the tests again."
        )
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("`npx` was not found: install Node.js >= 20 to run the conformance suite.")
    report_path = tmp_path / "vitest.json"
    started = time.monotonic()
    run = subprocess.run(
        [npx, "vitest", "run", "--reporter=json", f"--outputFile={report_path}"],
        cwd=HERE,
        env={
            **os.environ,
            "CONFORMANCE_BASE_URL": dev_url,
            "CONFORMANCE_LONG_POLL_TIMEOUT_MS": str(LONG_POLL_TIMEOUT_S * 1000),
            "CI": "1",
        },
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    elapsed = time.monotonic() - started
    if not report_path.exists():
        pytest.fail(f"vitest wrote no report (exit {run.returncode}):\n{run.stderr[-4000:]}")
    report = json.loads(report_path.read_text())
    summary = (
        f"Durable Streams conformance: {report['numPassedTests']} passed, "
        f"{report['numFailedTests']} failed, {report['numPendingTests']} skipped "
        f"of {report['numTotalTests']} in {elapsed:.0f} s against {dev_url}"
    )
    print(summary)
    failures = _failures(report)
    assert not failures and report["numPassedTests"] > 0, (
        summary + "\n" + "\n".join(failures[:60])
    )
