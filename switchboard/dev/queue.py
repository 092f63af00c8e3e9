"""The SQS trigger: poll moto's wake-job queue and invoke the ``wake_jobs`` handler.

Plays Lambda's SQS event source mapping as infra/ deploys it (infra/stack.py): batches of up
to ``batch_size`` messages, ``ReportBatchItemFailures`` (the messages a response names stay on
the queue and come back after the visibility timeout; the others are deleted), a handler that
raises or runs past its timeout leaves the whole batch on the queue, and the queue's redrive
policy moves a message that keeps failing to the dead-letter queue. SQS itself (moto) holds
delayed messages until their ``DelaySeconds`` pass: retries and lease checks wait as on AWS.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .events import LambdaContext
from .limits import FunctionConfig

log = logging.getLogger("sbdev")

Handler = Callable[[dict[str, Any], Any], Any]
WAIT_S = 1  # long poll: a message is received as soon as it is visible


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received message as Lambda's SQS event carries it."""
    body = str(message["Body"])
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # SQS's checksum of the body
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class QueuePump(threading.Thread):
    def __init__(
        self, sqs_client: Any, queue_url: str, queue_arn: str, handler: Handler,
        function: FunctionConfig, batch_size: int = 10, enforce_timeout: bool = True,
        region: str = "us-east-1",
    ) -> None:
        super().__init__(name="queue-pump", daemon=True)
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.function = function
        self.batch_size = batch_size
        self.enforce_timeout = enforce_timeout
        self.region = region
        self.invocations = 0
        self.failed = 0
        self._stop_event = threading.Event()
        self._invoker = ThreadPoolExecutor(4, thread_name_prefix="wake-jobs")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        self._invoker.shutdown(wait=False, cancel_futures=True)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=WAIT_S, AttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if self._stop_event.is_set():
                    return
                log.exception("queue pump: receive failed; retrying")
                self._stop_event.wait(1.0)
                continue
            if messages:
                self.deliver(messages)

    def deliver(self, messages: list[dict[str, Any]]) -> None:
        records = [sqs_record(m, self.queue_arn, self.region) for m in messages]
        self.invocations += 1
        context = LambdaContext(f"switchboard-dev-{self.function.name}",
                                timeout_s=self.function.timeout_s,
                                memory_mb=self.function.memory_mb)
        started = time.perf_counter()
        call = self._invoker.submit(self.handler, {"Records": records}, context)
        try:
            result = call.result(self.function.timeout_s if self.enforce_timeout else None)
        except FutureTimeout:
            log.error("%s: Task timed out after %.2f seconds; the messages return to the "
                      "queue", self.function.name, self.function.timeout_s)
            self.failed += len(records)
            return
        except Exception:
            log.exception("%s raised; the messages return to the queue", self.function.name)
            self.failed += len(records)
            return
        failures = {str(f.get("itemIdentifier")) for f in
                    ((result or {}).get("batchItemFailures") or []) if isinstance(f, dict)}
        self.failed += len(failures)
        done = [m for m in messages if m["MessageId"] not in failures]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start:start + 10])
            ])
        log.debug("queue: %d jobs in %.1f ms", len(records),
                  (time.perf_counter() - started) * 1000)
