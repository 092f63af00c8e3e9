"""The wake queue on SQS: delayed, at-least-once jobs for the ``wake_jobs`` function.

SQS delays a message by whole seconds, up to 15 minutes: retry delays (1-60 s) and leases
(1 s - 10 min) fit. A job that arrives up to a second early is harmless: deliveries are
idempotent and a lease check re-queues itself until the lease really ends.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

MAX_DELAY_S = 900


class SqsWakeQueue:
    def __init__(self, client: Callable[[], Any], queue_url: str | None) -> None:
        self._make_client = client
        self._client: Any = None
        self._queue_url = queue_url
        self._lock = threading.Lock()

    def send(self, job: str, delay_ms: int) -> None:
        if self._queue_url is None:
            raise RuntimeError("SWITCHBOARD_WAKE_QUEUE_URL is not set (infra/ deploys the queue)")
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        delay = min(MAX_DELAY_S, max(0, math.ceil(delay_ms / 1000)))
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=job, DelaySeconds=delay)
