"""Scheduled functions, played locally: the presence sweeper, every few seconds.

On AWS an EventBridge rule invokes ``presence_sweeper`` once a minute and the function sweeps
several times within that minute (chalicelib/handlers/presence.py). Locally a thread invokes
the same handler every ``interval_s`` (``SWITCHBOARD_DEV_PRESENCE_SWEEP_S``, default 5 s),
each invocation sweeping once, so a member that stops heartbeating is gone as promptly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .events import LambdaContext

FUNCTION_NAME = "switchboard-dev-presence_sweeper"
log = logging.getLogger("sbdev")


def scheduled_event() -> dict[str, Any]:
    """What EventBridge sends a scheduled function."""
    return {
        "version": "0", "id": "dev", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": os.environ.get("AWS_REGION", "us-east-1"),
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/dev-presence_sweeper"],
        "detail": {},
    }


class Sweeper(threading.Thread):
    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], interval_s: float) -> None:
        super().__init__(name="presence-sweeper", daemon=True)
        self.handler = handler
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                # A short timeout: one sweep per invocation (it loops only when a minute's
                # schedule leaves it time to).
                self.handler(scheduled_event(), LambdaContext(FUNCTION_NAME, timeout_s=5))
            except Exception:
                log.exception("presence sweep failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
