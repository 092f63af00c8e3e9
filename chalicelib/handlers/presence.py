"""The presence sweeper: a scheduled function (app.py) removing members that stopped
heartbeating, for as long as the invocation allows."""

from __future__ import annotations

from typing import Any

from ..bootstrap import services
from .invocation import deadline_ms

# Within one scheduled minute, sweep this often: a member is gone within its TTL plus this.
SWEEP_EVERY_S = 15


def sweep(context: Any = None) -> dict[str, Any]:
    """Sweep now, then again every ``SWEEP_EVERY_S`` until the next scheduled run is due
    (or the invocation's time runs short), so a vanished member goes within about
    ``presence_ttl_s`` + 15 s though schedules fire once a minute. With nobody present
    anywhere (no member can expire this minute or the next) one sweep is all: an idle
    deployment pays a few milliseconds a minute, not a function waiting 45 s."""
    svc = services()
    clock = svc.sessions.clock
    started = clock.now_ms()
    until = started + 60_000 - SWEEP_EVERY_S * 1000
    deadline = deadline_ms(clock)
    if deadline is not None:
        until = min(until, deadline - SWEEP_EVERY_S * 1000)
    removed, sweeps = svc.presence.sweep(), 1
    while (
        context is not None
        and clock.now_ms() + SWEEP_EVERY_S * 1000 <= until
        and svc.presence.pending()
    ):
        clock.sleep(SWEEP_EVERY_S)
        removed += svc.presence.sweep()
        sweeps += 1
    return {"removed": removed, "sweeps": sweeps}
