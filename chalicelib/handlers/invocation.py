"""Around every invocation (app.py's middleware): tagged log lines, flushed metrics, and the
time left to answer.

Imported by app.py at import time, so it imports nothing heavy until an event arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time, importing the ports would bring the core into `import app`
    from ..ports import Clock

# API Gateway REST ends every request after 29 s, whatever the Lambda's own timeout.
API_GATEWAY_TIMEOUT_MS = 29_000
# Time kept back to write the answer after the work stops.
MARGIN_MS = 1_000

_local = threading.local()


def observed(
    get_response: Callable[[Any], Any], event: Any, context: Any, rest: bool = False
) -> Any:
    """Run one invocation with its log lines tagged (Lambda's request id and function
    name), its time budget known to :func:`deadline_ms`, and its metrics flushed at the end,
    whatever happened."""
    from .. import bootstrap
    from ..observability import logger

    remaining: int | None = None
    if context is not None:
        logger.thread_safe_append_keys(
            request_id=getattr(context, "aws_request_id", None),
            function=getattr(context, "function_name", None),
        )
        remaining_of = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_of):
            remaining = int(remaining_of())
    if rest:
        remaining = min(remaining, API_GATEWAY_TIMEOUT_MS) if remaining else API_GATEWAY_TIMEOUT_MS
    _local.budget = (time.monotonic(), remaining)
    try:
        return get_response(event)
    finally:
        _local.budget = None
        built = bootstrap.built()
        if built is not None:
            built.flush_metrics()


def deadline_ms(clock: Clock) -> int | None:
    """When this invocation's work must stop (on ``clock``'s time scale), or None when the
    invocation's time is unknown (called outside an invocation)."""
    budget = getattr(_local, "budget", None)
    if budget is None or budget[1] is None:
        return None
    started, remaining = budget
    left = remaining - (time.monotonic() - started) * 1000 - MARGIN_MS
    return clock.now_ms() + max(0, int(left))
