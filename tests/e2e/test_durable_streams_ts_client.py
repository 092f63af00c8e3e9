"""The official Durable Streams TypeScript client (npm ``@durable-streams/client``) end to end.

``ts_client/live_modes.mjs`` (pinned with its package-lock.json; ``npm install --prefix
tests/e2e/ts_client``, which .ci/run does) writes 1,000 items with the client's
``IdempotentProducer`` while readers follow the stream live, in long-poll and in SSE mode: one
reads everything, one stops at half and saves its offset, one resumes from that offset. Each
must see its items exactly once, in order, and in SSE mode the client must never fall back
to long-polling (it does when SSE responses keep ending: docs/durable-streams.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.devserver import DevServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HERE = Path(__file__).resolve().parent / "ts_client"
CLIENT = HERE / "node_modules" / "@durable-streams" / "client"
COUNT = 1000


@pytest.mark.parametrize("mode", ["long-poll", "sse"])
def test_ts_client_reads_every_item_once_in_order_and_resumes(
    dev_server: DevServerProcess, mode: str
) -> None:
    node = shutil.which("node")
    if node is None or not CLIENT.is_dir():
        pytest.fail(
            "The Durable Streams TypeScript client is not installed: run "
            "`npm install --prefix tests/e2e/ts_client` (needs node >= 20), then the tests again."
        )
    run = subprocess.run(
        [node, "live_modes.mjs", dev_server.http, mode, str(COUNT)],
        cwd=HERE, capture_output=True, text=True, timeout=200,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {run.returncode}):\n{run.stdout}\n{run.stderr[-3000:]}"
    result = json.loads(lines[-1])
    print(f"TS client, {mode}: {json.dumps(result)}")
    assert result["error"] is None, result
    assert result["full"] == {**result["full"], "read": COUNT, "inOrderOnce": True}
    half = result["first"]["read"]
    assert COUNT // 2 <= half < COUNT and result["first"]["inOrderOnce"], result
    assert result["first"]["savedOffset"], result
    assert result["resumed"]["read"] == COUNT - half and result["resumed"]["inOrderOnce"], result
    assert not result["producerErrors"], result
    assert not result["fellBackFromSse"], result
    if mode == "sse":
        # The connection stays open while the stream is live: one request per reader.
        assert result["full"]["requests"] <= 3, result
    assert run.returncode == 0, run.stderr[-3000:]
