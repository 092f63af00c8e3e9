"""One busy channel under load, bounded (issue 12): ``bench/load.py``'s scenarios, reduced.

Its own ``switchboard dev --no-auth --no-agent`` (a busy channel must not share the CPU with
the session's server), then ws, rest and ds publishers with 4 and 16 publishes in flight,
each scenario with two joiners (from ``-1`` and from ``now``), one subscriber that keeps
dropping its socket and resubscribing from its last offset, and a Durable Streams long-poll
reader. Every scenario is checked against the log itself. The run must show no
``unavailable``/``internal`` reply, no failed publish, nothing lost, stored twice, skipped or
reordered, and every (re)subscription live within 2 s (docs/benchmarks.md).
"""

from __future__ import annotations

import time

import pytest

from bench.load import Options, Scenario, details, matrix, run_matrix, summary, table
from tests.support.devserver import running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SCENARIOS: list[Scenario] = matrix(
    transports=("ws", "rest", "ds"),
    in_flight=(4, 16),
    messages=150,
    joiners=("-1", "now"),
    resubscribers=1,
    ds_reader=True,
)
# Bounded: each scenario publishes for at most 3 s (or 150 messages), then its readers get
# 3 s to reach the head. Whatever the server's speed, the run stays near a minute.
OPTIONS = Options(budget_s=3.0, drain_s=3.0, live_within_s=2.0)


async def test_busy_channel_is_exact_available_and_joinable() -> None:
    started = time.monotonic()
    # Long-polls left waiting at the end of a scenario end within 5 s, not 20.
    with running("--no-auth", "--no-agent", env={"SWITCHBOARD_LONG_POLL_TIMEOUT_S": "5"}) as dev:
        results = await run_matrix(dev.http, dev.ws, SCENARIOS, OPTIONS)
    report = f"{table(results)}\n({time.monotonic() - started:.0f} s; per reader below)"
    print(f"{report}\n\n{details(results)}")  # shown by pytest when the test fails
    assert [r.scenario for r in results] == [s.name for s in SCENARIOS]
    failing = summary(results)
    assert not failing, f"load scenarios failed:\n{failing}\n\n{report}"
    late = [
        f"{r.scenario}: live max {r.live_max_ms} ms, never live {r.live_never}"
        for r in results
        if r.live_never or (r.live_max_ms or 0) > OPTIONS.live_within_s * 1000
    ]
    assert not late, "subscribers not live within 2 s:\n" + "\n".join(late) + "\n\n" + report
    assert all(r.published > 0 and r.log_messages >= r.published for r in results), report
