"""The stream trigger: poll moto's DynamoDB Stream and invoke the fan-out handler.

Plays Lambda's event source mapping for the messages table's stream, with the settings the
deployed mapping has (infra/): batches of up to ``BATCH_SIZE`` records, one batch at a time
per shard, so records of a shard are handled in order; ``ReportBatchItemFailures``: when the
handler reports failed records (or raises), the batch is re-delivered from the lowest failed
sequence number on; after ``MAX_RETRY_ATTEMPTS`` retries those records are skipped and logged
(on AWS they would go to the on-failure destination).

Polling: when a poll returns records, the next poll follows at once; when the shard is idle
the pump waits ``poll_interval_s`` (``--stream-poll-ms``, 50 ms by default). Lambda polls a
DynamoDB stream about four times a second, so on AWS the stream hop adds 0 to 250 ms; run
with ``--stream-poll-ms 250`` to feel that locally.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .events import LambdaContext, lambda_stream_record

BATCH_SIZE = 100
MAX_RETRY_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.1
FUNCTION_NAME = "switchboard-dev-fanout_records"

log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those

Handler = Callable[[dict[str, Any], Any], Any]


class StreamPump(threading.Thread):
    def __init__(
        self, streams_client: Any, stream_arn: str, handler: Handler, poll_interval_s: float,
    ) -> None:
        super().__init__(name="stream-pump", daemon=True)
        self.streams = streams_client
        self.stream_arn = stream_arn
        self.handler = handler
        self.poll_interval_s = poll_interval_s
        self._stop_event = threading.Event()
        self.delivered = 0
        self.skipped = 0
        self.batches = 0

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            iterators = self._open_shards()
            while not self._stop_event.is_set():
                busy = False
                for shard_id in list(iterators):
                    iterator = iterators[shard_id]
                    response = self.streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
                    records = response.get("Records", [])
                    if records:
                        busy = True
                        self._deliver([lambda_stream_record(r, self.stream_arn) for r in records])
                    next_iterator = response.get("NextShardIterator")
                    if next_iterator:
                        iterators[shard_id] = next_iterator
                    else:  # the shard closed (DynamoDB rotates shards; moto never does)
                        del iterators[shard_id]
                        iterators.update(self._open_shards(known=set(iterators)))
                if not busy:
                    self._stop_event.wait(self.poll_interval_s)
        except Exception:
            if not self._stop_event.is_set():
                log.exception("stream pump stopped: fan-out no longer runs")

    def _open_shards(self, known: set[str] | None = None) -> dict[str, str]:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)
        iterators: dict[str, str] = {}
        for shard in description["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            if known is not None and shard_id in known:
                continue
            # The tables are created at startup, so TRIM_HORIZON reads every record.
            iterators[shard_id] = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        return iterators

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        """Invoke the handler until the batch succeeds or its retries run out."""
        batch = records
        for attempt in range(MAX_RETRY_ATTEMPTS + 1):
            failed = self._invoke(batch)
            if failed is None:
                self.delivered += len(batch)
                return
            # Lambda checkpoints before the lowest failed record and re-delivers from there.
            position = min((i for i, r in enumerate(batch)
                            if r["dynamodb"]["SequenceNumber"] in failed), default=0)
            self.delivered += position
            batch = batch[position:]
            if attempt < MAX_RETRY_ATTEMPTS:
                log.warning(
                    "stream: %d of %d records failed; retrying from %s (retry %d of %d)",
                    len(failed), len(batch), batch[0]["dynamodb"]["SequenceNumber"],
                    attempt + 1, MAX_RETRY_ATTEMPTS,
                )
                if self._stop_event.wait(RETRY_BACKOFF_S * 2**attempt):
                    return
        self.skipped += len(batch)
        log.error(
            "stream: skipping %d records (%s..%s) after %d retries, as Lambda does with "
            "MaximumRetryAttempts; subscribers recover them by offset",
            len(batch), batch[0]["dynamodb"]["SequenceNumber"],
            batch[-1]["dynamodb"]["SequenceNumber"], MAX_RETRY_ATTEMPTS,
        )

    def _invoke(self, batch: list[dict[str, Any]]) -> set[str] | None:
        """None when the whole batch succeeded, else the failed sequence numbers."""
        self.batches += 1
        started = time.perf_counter()
        try:
            result = self.handler({"Records": batch}, LambdaContext(FUNCTION_NAME))
        except Exception:
            log.exception("stream: the fan-out handler raised; the whole batch is retried")
            return {r["dynamodb"]["SequenceNumber"] for r in batch}
        failures = (result.get("batchItemFailures") if isinstance(result, dict) else None) or []
        log.debug("stream: %d records fanned out in %.1f ms",
                  len(batch), (time.perf_counter() - started) * 1000)
        if not failures:
            return None
        return {str(f.get("itemIdentifier")) for f in failures}
