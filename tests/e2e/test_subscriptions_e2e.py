"""Durable Streams subscriptions on a real `switchboard dev`: the SDK, the CLI, a verified
webhook receiver on 127.0.0.1, pull-wake through the wake stream, and wake latency."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from bench.wake_latency import Receiver, measure, report
from switchboard.client import Switchboard
from switchboard.webhooks import WebhookVerifier
from tests.support.devserver import DevServerProcess, switchboard_command

pytestmark = pytest.mark.e2e


def cli(server: DevServerProcess, *args: str,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*switchboard_command(), "subscriptions", "--url", server.http, *args],
        capture_output=True, text=True, timeout=60, input=stdin,
        env={**os.environ, "SWITCHBOARD_TOKEN": ""},
    )


def test_a_publish_wakes_a_verified_webhook_quickly(dev_server: DevServerProcess) -> None:
    latencies = asyncio.run(measure(dev_server.http, 8))
    print(report(latencies))
    assert len(latencies) == 8 and max(latencies) < 5_000


def test_cli_manages_subscriptions_and_drives_a_pull_wake_worker(
    dev_server: DevServerProcess, tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    pool, sub = f"wake/pool-{run}", f"cli-{run}"
    assert subprocess.run([*switchboard_command(), "create", pool.replace("/", ":"),
                           "--url", dev_server.http], capture_output=True, timeout=60
                          ).returncode == 0
    created = cli(dev_server, "create", sub, "--type", "pull-wake", "--pattern",
                  f"jobs-{run}/*", "--wake-stream", pool, "--lease-ms", "5000")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["wake_stream"] == pool
    assert sub in [s["id"] for s in json.loads(cli(dev_server, "list").stdout)]
    nothing = cli(dev_server, "claim", sub, "--worker", "w1")
    assert nothing.returncode == 0 and "no pending work" in nothing.stderr

    async def publish() -> str:
        async with Switchboard(dev_server.http) as sb:
            ack = await sb.channel(f"jobs-{run}:a").publish({"job": 1}, id="j1")
            return ack.offset

    offset = asyncio.run(publish())
    claimed = cli(dev_server, "claim", sub, "--worker", "w1")
    assert claimed.returncode == 0, claimed.stderr
    wake = json.loads(claimed.stdout)
    assert [s["tail_offset"] for s in wake["streams"]] == [offset]
    busy = cli(dev_server, "claim", sub, "--worker", "w2")
    assert busy.returncode == 1 and "ALREADY_CLAIMED" in busy.stderr
    (tmp_path / "wake.json").write_text(claimed.stdout)
    acked = cli(dev_server, "ack", "--wake", str(tmp_path / "wake.json"), "--done")
    assert acked.returncode == 0 and json.loads(acked.stdout) == {"ok": True, "next_wake": False}
    stale = cli(dev_server, "release", "--wake", "-", stdin=claimed.stdout)
    assert stale.returncode == 1 and "FENCED" in stale.stderr
    got = json.loads(cli(dev_server, "get", sub).stdout)
    assert got["streams"][0]["acked_offset"] == offset
    bad = cli(dev_server, "create", f"bad-{run}", "--pattern", "x/*", "--webhook",
              "http://10.0.0.1/hook")
    assert bad.returncode == 1 and "WEBHOOK_URL_REJECTED" in bad.stderr
    assert cli(dev_server, "delete", sub).returncode == 0
    assert cli(dev_server, "get", sub).returncode == 1


def test_a_failing_receiver_is_retried_until_it_answers(dev_server: DevServerProcess) -> None:
    run = uuid.uuid4().hex[:8]
    verifier = WebhookVerifier(f"{dev_server.http}/v1/stream/__ds/jwks.json")
    with Receiver(verifier) as receiver:
        receiver.unavailable = True

        async def scenario() -> None:
            async with Switchboard(dev_server.http) as sb:
                await sb.subscriptions.create(f"retry-{run}", pattern=f"retry-{run}/*",
                                              webhook_url=receiver.url)
                ack = await sb.channel(f"retry-{run}:a").publish("x", id="x")
                for _ in range(100):  # the first attempt fails; a retry is scheduled
                    if receiver.refused:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                assert (await sb.subscriptions.get(f"retry-{run}"))["status"] == "failed"
                receiver.unavailable = False
                arrived = await asyncio.to_thread(receiver.wait_for, f"retry-{run}/a",
                                                  ack.offset, 10.0)
                assert arrived is not None
                await asyncio.sleep(0.5)
                state = await sb.subscriptions.get(f"retry-{run}")
                assert state["status"] == "active"
                assert state["streams"][0]["acked_offset"] == ack.offset
                await sb.subscriptions.delete(f"retry-{run}")

        asyncio.run(scenario())
