"""The fan-out's DynamoDB stream trigger: what infra/ deploys and `switchboard dev` plays.

One source for both, so they cannot drift: infra/stack.py writes these settings into the
event source mapping of ``fanout_records``, and switchboard/dev/pump.py reads this same file
(tests/e2e/test_dev_stream_trigger.py checks the two agree). Chalice declares the rest of the
mapping from the ``@app.on_dynamodb_record`` decorator in app.py (``batch_size``,
``starting_position``, ``maximum_batching_window_in_seconds``); the pump reads those from the
app, as ``chalice package`` does.

Plain data, no imports beyond the standard library: the dev server loads this file by path.
"""

from __future__ import annotations

import json
from typing import Any

# A poison record is retried a bounded number of times, isolated by bisecting the batch,
# then set aside in the DLQ; it never blocks the shard for 24 hours.
MAX_RETRY_ATTEMPTS = 5
# Live delivery of a message older than this is pointless: subscribers that see the seq gap
# fetch the missing messages from the log (the wire contract's fault rule; the SDKs do it).
MAX_RECORD_AGE_S = 900
BISECT_BATCH_ON_FUNCTION_ERROR = True
FUNCTION_RESPONSE_TYPES = ("ReportBatchItemFailures",)
# Only new messages: TTL expiry writes REMOVE records that would otherwise each invoke the
# fan-out for nothing.
FILTER_PATTERNS: tuple[dict[str, Any], ...] = ({"eventName": ["INSERT"]},)
ON_FAILURE_DESTINATION_TYPE = "SQS"


def event_properties(stream_arn: Any, on_failure_arn: Any) -> dict[str, Any]:
    """The properties infra/ merges into Chalice's event source of ``fanout_records``."""
    return {
        "Stream": stream_arn,
        "FunctionResponseTypes": list(FUNCTION_RESPONSE_TYPES),
        "BisectBatchOnFunctionError": BISECT_BATCH_ON_FUNCTION_ERROR,
        "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
        "MaximumRecordAgeInSeconds": MAX_RECORD_AGE_S,
        "DestinationConfig": {"OnFailure": {
            "Type": ON_FAILURE_DESTINATION_TYPE, "Destination": on_failure_arn,
        }},
        "FilterCriteria": {"Filters": [{"Pattern": json.dumps(p)} for p in FILTER_PATTERNS]},
    }
