"""The dev server's stream trigger plays the event source mapping infra/ deploys.

The settings come from the same places the deployment takes them (infra/trigger.py, the
``@app.on_dynamodb_record`` decorator): one test checks they agree with the packaged
template, one that the running server uses them. The rest drive :class:`StreamPump` with
Lambda-shaped records and a stand-in fan-out handler, to check what Lambda does with them:
filter, batches in order, partial batch responses, bisect on error, retries, record age,
function timeout, on-failure destination.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import app as app_module
from infra.stack import FANOUT_EVENT, merge_template
from switchboard.dev.limits import FANOUT, FunctionConfig
from switchboard.dev.pump import StreamPump, TriggerSettings
from tests.support.devserver import DevServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/messages/stream/dev"


def record(n: int, event: str = "INSERT", age_s: float = 0.0) -> dict[str, Any]:
    return {
        "eventID": f"e{n}", "eventName": event, "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "eventSourceARN": ARN,
        "dynamodb": {
            "ApproximateCreationDateTime": int(time.time() - age_s),
            "Keys": {"pk": {"S": "runs:1"}, "seq": {"N": str(n)}},
            "SequenceNumber": f"{1000 + n}", "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
        },
    }


def seqs(batch: list[dict[str, Any]]) -> list[int]:
    return [int(r["dynamodb"]["SequenceNumber"]) - 1000 for r in batch]


class Recorder:
    """A fan-out handler that records every invocation and fails as told."""

    def __init__(self, decide: Callable[[list[int], int], Any]) -> None:
        self.decide = decide
        self.calls: list[list[int]] = []
        self.remaining_ms: list[int] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        batch = seqs(event["Records"])
        self.calls.append(batch)
        self.remaining_ms.append(context.get_remaining_time_in_millis())
        return self.decide(batch, len(self.calls))


def pump(handler: Recorder, timeout_s: float = 60.0) -> StreamPump:
    settings = TriggerSettings.deployed(app_module)
    return StreamPump(None, ARN, handler, 0.05, settings,
                      FunctionConfig(FANOUT, timeout_s, 256))


def test_the_settings_are_the_deployed_ones() -> None:
    settings = TriggerSettings.deployed(app_module)
    template = merge_template("dev")
    fanout = next(r for r in template["Resources"].values()
                  if FANOUT_EVENT in r.get("Properties", {}).get("Events", {}))
    deployed = fanout["Properties"]["Events"][FANOUT_EVENT]["Properties"]
    assert settings.bisect_batch_on_function_error == deployed["BisectBatchOnFunctionError"]
    assert settings.maximum_retry_attempts == deployed["MaximumRetryAttempts"]
    assert settings.maximum_record_age_s == deployed["MaximumRecordAgeInSeconds"]
    assert list(settings.function_response_types) == deployed["FunctionResponseTypes"]
    assert [json.loads(f["Pattern"]) for f in deployed["FilterCriteria"]["Filters"]] == list(
        settings.filter_patterns
    )
    assert settings.on_failure_destination == deployed["DestinationConfig"]["OnFailure"]["Type"]
    # What Chalice packages from the decorator (BatchSize, StartingPosition).
    (source,) = [s for s in app_module.app.event_sources if s.name == FANOUT]
    assert (settings.batch_size, settings.starting_position) == (
        source.batch_size, source.starting_position
    )
    assert settings.report_batch_item_failures


def test_the_running_server_uses_them(dev_server: DevServerProcess) -> None:
    status = httpx.get(f"{dev_server.http}/_dev/stream-trigger").json()
    expected = TriggerSettings.deployed(app_module)
    assert status["settings"]["maximum_retry_attempts"] == expected.maximum_retry_attempts
    assert status["settings"]["starting_position"] == expected.starting_position
    assert status["settings"]["filter_patterns"] == list(expected.filter_patterns)
    assert status["function"]["timeout_s"] == 60
    assert status["timeoutEnforced"] is True


def test_only_inserts_reach_the_handler_in_order() -> None:
    handler = Recorder(lambda batch, n: None)
    stream = pump(handler)
    stream.deliver([record(1), record(2, "MODIFY"), record(3), record(4, "REMOVE"), record(5)])
    assert handler.calls == [[1, 3, 5]]
    assert (stream.stats.delivered, stream.stats.filtered) == (3, 2)


def test_a_partial_batch_response_redelivers_from_the_first_failed_record() -> None:
    def decide(batch: list[int], call: int) -> Any:
        if call == 1:
            return {"batchItemFailures": [{"itemIdentifier": "1005"},
                                          {"itemIdentifier": "1003"}]}
        return {"batchItemFailures": []}

    handler = Recorder(decide)
    stream = pump(handler)
    stream.deliver([record(n) for n in range(1, 7)])
    assert handler.calls == [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6]]
    assert stream.stats.delivered == 6 and stream.stats.skipped == 0


def test_a_poison_record_is_isolated_by_bisecting_then_set_aside_after_5_retries() -> None:
    def decide(batch: list[int], call: int) -> Any:
        if 5 in batch:
            raise RuntimeError("poison")
        return None

    handler = Recorder(decide)
    stream = pump(handler)
    stream.deliver([record(n) for n in range(8)])
    assert handler.calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],  # fails: split in two
        [0, 1, 2, 3],  # fine
        [4, 5, 6, 7],  # fails: split
        [4, 5],  # fails: split
        [4],  # fine
        [5], [5], [5], [5], [5], [5],  # the poison record, then 5 retries
        [6, 7],  # the shard moves on, in order
    ]
    assert stream.stats.delivered == 7 and stream.stats.skipped == 1
    (letter,) = stream.stats.dead_letters
    assert letter["condition"] == "RetryAttemptsExhausted"
    assert (letter["startSequenceNumber"], letter["batchSize"]) == ("1005", 1)


def test_records_older_than_the_maximum_age_are_set_aside_unprocessed() -> None:
    handler = Recorder(lambda batch, n: None)
    stream = pump(handler)
    stream.deliver([record(1, age_s=901), record(2, age_s=10)])
    assert handler.calls == [[2]]
    (letter,) = stream.stats.dead_letters
    assert letter["condition"] == "RecordAgeExceeded" and letter["startSequenceNumber"] == "1001"


def test_an_invocation_past_the_functions_timeout_fails_and_is_retried() -> None:
    def decide(batch: list[int], call: int) -> Any:
        if call == 1:
            time.sleep(1.5)
        return None

    handler = Recorder(decide)
    stream = pump(handler, timeout_s=1.0)
    started = time.monotonic()
    stream.deliver([record(1)])
    assert handler.calls == [[1], [1]]
    assert stream.stats.delivered == 1
    assert time.monotonic() - started < 1.5 + 0.2 + 0.5  # not waiting for the first call
    # The context told the handler its real deadline.
    assert all(900 <= ms <= 1000 for ms in handler.remaining_ms)
    stream.stop()
