"""What Durable Streams forks cost in DynamoDB operations, counted on moto.

Uses the meter of bench/costs.py (every call recorded, request units derived from item
sizes). Prints a markdown table for docs/durable-streams.md:

    .venv/bin/python bench/fork_costs.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.costs import Meter  # first: it sets the fake AWS environment
from chalicelib import bootstrap
from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.memory import RecordingSender
from chalicelib.core.forks import ZERO_OFFSET, parse_fork_offset
from chalicelib.core.messages import NewMessage
from chalicelib.core.offsets import StartRequest
from chalicelib.services.appends import AppendRequest
from chalicelib.services.forks import ForkRequest, fork
from chalicelib.settings import Settings
from tests.support.aws import dynamo_store, moto_dynamodb


def _request(name: str, source: str, sub_offset: int = 0) -> ForkRequest:
    return ForkRequest(
        name=name,
        source=source,
        offset=parse_fork_offset(ZERO_OFFSET) if sub_offset else None,
        sub_offset=sub_offset,
        content_type=None,
        ttl_s=None,
        expires_at=None,
        ttl_given=False,
    )


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with moto_dynamodb() as client:
        meter = Meter()
        client.meta.events.register("provide-client-params.dynamodb.*", meter.provide)
        client.meta.events.register("after-call.dynamodb.*", meter.after)
        store = dynamo_store(client)
        services = bootstrap.build(
            Settings(auth_enabled=False),
            store,
            store,
            RecordingSender(),
            SystemClock(),
            rng=random.Random(1),
        )
        channels = services.channels
        channels.create("src", content_type="text/plain")
        services.appender.append(
            AppendRequest("src", [NewMessage(b"x" * 200)] * 20, content_type="text/plain")
        )

        def count(label: str, action: Any) -> None:
            mark = meter.snapshot()
            action()
            results[label] = meter.since(mark)

        count("fork at the tail", lambda: fork(channels, _request("f1", "src")))
        count(
            "fork with a byte sub-offset (partial entry)",
            lambda: fork(channels, _request("f2", "src", sub_offset=100)),
        )
        services.appender.append(
            AppendRequest("f1", [NewMessage(b"y" * 200)] * 5, content_type="text/plain")
        )
        count("fork of a fork", lambda: fork(channels, _request("f3", "f1")))

        def read_fork() -> None:
            meta = channels.get("f3")
            channels.read_after(meta, channels.resolve(meta, StartRequest("beginning")), 1000)

        count("read a 2-level fork from -1 (25 messages, 3 logs)", read_fork)
        count(
            "append to a fork",
            lambda: services.appender.append(
                AppendRequest("f3", [NewMessage(b"z" * 200)], content_type="text/plain")
            ),
        )
        count("delete a source that has forks (soft)", lambda: channels.delete("src"))
        count(
            "HEAD of a soft-deleted source (410; its first fork is live)",
            lambda: _expect_gone(channels),
        )
        count("delete a fork (source still held)", lambda: channels.delete("f2"))
        count("delete a fork of a fork (releases f1)", lambda: channels.delete("f3"))
        count(
            "delete the last fork (collects the soft-deleted source)", lambda: channels.delete("f1")
        )
    return results


def _expect_gone(channels: Any) -> None:
    from chalicelib.core.errors import GoneError

    try:
        channels.get("src")
    except GoneError:
        return
    raise AssertionError("the source should answer 410")


def main() -> None:
    print("| operation | DynamoDB calls | write units | read units |")
    print("|---|---|---:|---:|")
    for label, cost in measure().items():
        calls = ", ".join(f"{k} {v:g}" for k, v in cost["calls"].items())
        print(f"| {label} | {calls} | {cost['wru']:g} | {cost['rru']:g} |")


if __name__ == "__main__":
    main()
