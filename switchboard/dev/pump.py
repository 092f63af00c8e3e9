"""The stream trigger: poll moto's DynamoDB Stream and invoke the fan-out handler.

Plays Lambda's event source mapping for the messages table's stream with exactly the settings
the deployed mapping has: the ones infra/ adds (infra/trigger.py, loaded from the same file)
and the ones Chalice takes from ``@app.on_dynamodb_record`` in app.py (read from the app, as
``chalice package`` does). :class:`TriggerSettings` holds them; ``GET /_dev/stream-trigger``
shows them with what the pump has done.

- **Starting position** of the shards found at startup (``LATEST``: records written before
  the pump started are not delivered); shards that appear later are read from their start.
- **Filter criteria**: records that match no pattern are dropped before batching, as Lambda
  does (only the equality-list form ``{"field": ["value", ...]}``, nested, is supported;
  anything else raises, so a new pattern cannot be silently ignored).
- **Batches** of up to ``batch_size`` records, one batch at a time per shard: records of one
  shard (one channel's log) are delivered in order.
- **Failures** (``ReportBatchItemFailures``): a partial batch response moves the checkpoint to
  the lowest failed record and re-delivers from there. A function error (it raised, or ran
  past the function's timeout from .chalice/config.json) re-delivers the whole batch, split
  in two first when ``BisectBatchOnFunctionError`` is on (each half is then delivered on its
  own, in order). A split does not count as a retry; every other failed invocation does, and
  a success resets the count (AWS documents neither detail; this reading isolates a poison
  record, which is what bisecting is for). After
  ``MaximumRetryAttempts`` retries, the records of the failing invocation go to the on-failure
  destination (here: kept in memory, listed by ``/_dev/stream-trigger``, and logged) and the
  shard moves on. Records older than ``MaximumRecordAgeInSeconds`` are sent there unprocessed.

Polling: when a poll returns records, the next poll follows at once; when the shard is idle
the pump waits ``poll_interval_s`` (``--stream-poll-ms``, 50 ms by default). Lambda polls a
DynamoDB stream about four times a second, so on AWS the stream hop adds 0 to 250 ms; run
with ``--stream-poll-ms 250`` to feel that locally.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .events import LambdaContext, lambda_stream_record
from .limits import FANOUT, FunctionConfig

RETRY_BACKOFF_S = 0.1
FUNCTION_NAME = "switchboard-dev-fanout_records"
DEAD_LETTERS_KEPT = 1000

log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class TriggerSettings:
    """The event source mapping of ``fanout_records``, as deployed."""

    batch_size: int
    starting_position: str
    maximum_batching_window_s: int
    bisect_batch_on_function_error: bool
    maximum_retry_attempts: int  # -1: until the record expires
    maximum_record_age_s: int  # -1: no limit
    function_response_types: tuple[str, ...]
    filter_patterns: tuple[dict[str, Any], ...]
    on_failure_destination: str | None

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types

    @classmethod
    def deployed(cls, app_module: ModuleType, function: str = FANOUT) -> TriggerSettings:
        """From the app's decorator and infra/trigger.py of the same checkout."""
        app = app_module.app
        source = next(
            (s for s in app.event_sources if getattr(s, "name", None) == function), None
        )
        if source is None:
            raise LookupError(f"the app has no DynamoDB stream trigger named {function!r}")
        trigger = load_infra_trigger(Path(str(app_module.__file__)).resolve().parent)
        return cls(
            batch_size=int(source.batch_size),
            starting_position=str(source.starting_position),
            maximum_batching_window_s=int(source.maximum_batching_window_in_seconds or 0),
            bisect_batch_on_function_error=bool(trigger.BISECT_BATCH_ON_FUNCTION_ERROR),
            maximum_retry_attempts=int(trigger.MAX_RETRY_ATTEMPTS),
            maximum_record_age_s=int(trigger.MAX_RECORD_AGE_S),
            function_response_types=tuple(trigger.FUNCTION_RESPONSE_TYPES),
            filter_patterns=tuple(trigger.FILTER_PATTERNS),
            on_failure_destination=str(trigger.ON_FAILURE_DESTINATION_TYPE),
        )


def load_infra_trigger(project_dir: Path) -> ModuleType:
    """infra/trigger.py of the checkout at ``project_dir`` (infra/ is not an installed
    package; the file only uses the standard library)."""
    path = project_dir / "infra" / "trigger.py"
    spec = importlib.util.spec_from_file_location("_switchboard_infra_trigger", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path}: the stream trigger settings infra/ deploys")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matches(value: Any, pattern: Any) -> bool:
    """Lambda event filtering, equality-list subset: every key of the pattern matches."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and matches(value[key], sub) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        if any(isinstance(p, (dict, list)) for p in pattern):
            raise NotImplementedError(f"filter operator {pattern!r} is not emulated")
        return value in pattern
    raise NotImplementedError(f"filter pattern {pattern!r} is not emulated")


@dataclass
class PumpStats:
    delivered: int = 0  # records handled successfully
    filtered: int = 0  # records no filter pattern matched
    skipped: int = 0  # records sent to the on-failure destination
    batches: int = 0  # invocations
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class StreamPump(threading.Thread):
    def __init__(
        self, streams_client: Any, stream_arn: str, handler: Handler, poll_interval_s: float,
        settings: TriggerSettings, function: FunctionConfig | None = None,
        enforce_timeout: bool = True, clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="stream-pump", daemon=True)
        self.streams = streams_client
        self.stream_arn = stream_arn
        self.handler = handler
        self.poll_interval_s = poll_interval_s
        self.settings = settings
        self.function = function or FunctionConfig(FANOUT, 60.0, 256)
        self.enforce_timeout = enforce_timeout
        self.clock = clock
        self.stats = PumpStats()
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        # Invocations run here, so one that times out can be left behind (Python cannot stop
        # a thread) while the shard moves on.
        self._invoker = ThreadPoolExecutor(4, thread_name_prefix="fanout")

    # Counters the tests and the log use.
    @property
    def delivered(self) -> int:
        return self.stats.delivered

    @property
    def skipped(self) -> int:
        return self.stats.skipped

    @property
    def batches(self) -> int:
        return self.stats.batches

    def status(self) -> dict[str, Any]:
        """Settings and counters, for ``GET /_dev/stream-trigger``."""
        with self._lock:
            stats = asdict(self.stats)
        return {"settings": asdict(self.settings), "function": asdict(self.function),
                "timeoutEnforced": self.enforce_timeout, **stats}

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        self._invoker.shutdown(wait=False, cancel_futures=True)

    def run(self) -> None:
        try:
            iterators = self._open_shards(self.settings.starting_position)
            while not self._stop_event.is_set():
                busy = False
                for shard_id in list(iterators):
                    iterator = iterators[shard_id]
                    response = self.streams.get_records(
                        ShardIterator=iterator, Limit=self.settings.batch_size
                    )
                    records = response.get("Records", [])
                    if records:
                        busy = True
                        self.deliver([lambda_stream_record(r, self.stream_arn) for r in records])
                    next_iterator = response.get("NextShardIterator")
                    if next_iterator:
                        iterators[shard_id] = next_iterator
                    else:  # the shard closed (DynamoDB rotates shards; moto never does)
                        del iterators[shard_id]
                        iterators.update(self._open_shards("TRIM_HORIZON", known=set(iterators)))
                if not busy:
                    self._stop_event.wait(self.poll_interval_s)
        except Exception:
            if not self._stop_event.is_set():
                log.exception("stream pump stopped: fan-out no longer runs")

    def _open_shards(self, position: str, known: set[str] | None = None) -> dict[str, str]:
        description = self.streams.describe_stream(StreamArn=self.stream_arn)
        iterators: dict[str, str] = {}
        for shard in description["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            if known is not None and shard_id in known:
                continue
            iterators[shard_id] = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]
        return iterators

    # -- delivery ----------------------------------------------------------------------------

    def deliver(self, records: list[dict[str, Any]]) -> None:
        """Hand one poll's records (in shard order) to the handler, as the mapping would."""
        settings = self.settings
        pending = [r for r in records if self._passes_filter(r)]
        with self._lock:
            self.stats.filtered += len(records) - len(pending)
        size = settings.batch_size
        # Batches still to deliver, in shard order; a bisected batch becomes its two halves.
        queue = [pending[i : i + size] for i in range(0, len(pending), size)]
        retries = 0
        while queue and not self._stop_event.is_set():
            batch = queue[0] = self._expire(queue[0])
            if not batch:
                queue.pop(0)
                continue
            outcome, failed_from = self._invoke(batch)
            if outcome == "ok":
                self._count(delivered=len(batch))
                queue.pop(0)
                retries = 0
                continue
            if (outcome == "error" and settings.bisect_batch_on_function_error
                    and len(batch) > 1):
                half = (len(batch) + 1) // 2
                log.warning("stream: the fan-out failed on %d records; retrying them as two "
                            "batches of %d and %d (bisect on error)", len(batch), half,
                            len(batch) - half)
                queue[0:1] = [batch[:half], batch[half:]]
                continue
            # A partial batch response: the checkpoint moves to the lowest failed record.
            self._count(delivered=failed_from)
            batch = queue[0] = batch[failed_from:]
            retries += 1
            limit = settings.maximum_retry_attempts
            if limit >= 0 and retries > limit:
                self._set_aside(batch, "RetryAttemptsExhausted", retries - 1)
                queue.pop(0)
                retries = 0
                continue
            log.warning("stream: %d records failed; retrying from %s (retry %d of %s)",
                        len(batch), batch[0]["dynamodb"]["SequenceNumber"], retries,
                        limit if limit >= 0 else "unlimited")
            if self._stop_event.wait(min(RETRY_BACKOFF_S * 2 ** (retries - 1), 2.0)):
                return

    def _passes_filter(self, record: dict[str, Any]) -> bool:
        patterns = self.settings.filter_patterns
        return not patterns or any(matches(record, p) for p in patterns)

    def _expire(self, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        max_age = self.settings.maximum_record_age_s
        if max_age < 0:
            return pending
        now = self.clock()
        old = [r for r in pending
               if now - float(r["dynamodb"].get("ApproximateCreationDateTime", now)) > max_age]
        if old:
            self._set_aside(old, "RecordAgeExceeded", 0)
            return [r for r in pending if r not in old]
        return pending

    def _set_aside(self, records: list[dict[str, Any]], condition: str, retries: int) -> None:
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        letter = {
            "condition": condition,
            "retryAttempts": retries,
            "batchSize": len(records),
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": first.get("ApproximateCreationDateTime"),
            "approximateArrivalOfLastRecord": last.get("ApproximateCreationDateTime"),
            "streamArn": self.stream_arn,
        }
        with self._lock:
            self.stats.skipped += len(records)
            self.stats.dead_letters.append(letter)
            del self.stats.dead_letters[:-DEAD_LETTERS_KEPT]
        log.error("stream: %d records (%s..%s) sent to the on-failure destination (%s, %s), "
                  "as Lambda does; subscribers recover them by offset: %s",
                  len(records), letter["startSequenceNumber"], letter["endSequenceNumber"],
                  self.settings.on_failure_destination, condition, json.dumps(letter))

    def _count(self, delivered: int) -> None:
        with self._lock:
            self.stats.delivered += delivered

    def _invoke(self, batch: list[dict[str, Any]]) -> tuple[str, int]:
        """("ok", 0), ("partial", index of the lowest failed record) or ("error", 0)."""
        with self._lock:
            self.stats.batches += 1
        started = time.perf_counter()
        context = LambdaContext(
            FUNCTION_NAME if self.function.name == FANOUT
            else f"switchboard-dev-{self.function.name}",
            timeout_s=self.function.timeout_s, memory_mb=self.function.memory_mb)
        call = self._invoker.submit(self.handler, {"Records": batch}, context)
        try:
            result = call.result(self.function.timeout_s if self.enforce_timeout else None)
        except FutureTimeout:
            log.error("%s: Task timed out after %.2f seconds; the batch failed",
                      FANOUT, self.function.timeout_s)
            return "error", 0
        except Exception:
            log.exception("stream: the fan-out handler raised; the batch failed")
            return "error", 0
        log.debug("stream: %d records fanned out in %.1f ms",
                  len(batch), (time.perf_counter() - started) * 1000)
        if not self.settings.report_batch_item_failures:
            return "ok", 0  # Lambda ignores a partial response it was not told to read
        failures = (result.get("batchItemFailures") if isinstance(result, dict) else None) or []
        if not failures:
            return "ok", 0
        sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
        identifiers = [f.get("itemIdentifier") if isinstance(f, dict) else None
                       for f in failures]
        if any(not i or i not in sequence for i in identifiers):
            # An empty, null or unknown itemIdentifier fails the whole batch (Lambda docs).
            return "partial", 0
        return "partial", min(sequence.index(str(i)) for i in identifiers)
