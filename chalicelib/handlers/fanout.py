"""The DynamoDB stream consumer: deliver new messages, report partial batch failures."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from ..adapters.stream_records import inserted_messages
from ..bootstrap import services
from ..observability import logger
from .invocation import deadline_ms

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor


@cache
def _processor() -> BatchProcessor:
    # Imported on first use: only the fan-out function needs it, and every function imports
    # app.py (about 40 ms of each REST and WebSocket cold start, see bench/cold_start.py).
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    return BatchProcessor(
        event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
    )


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Fan one stream batch out; failed records go back as ``batchItemFailures``.

    Grouping by channel and concurrent posting happen across the whole batch first; the
    Powertools processor then turns the per-record outcome into the partial-failure response
    (which takes effect with ReportBatchItemFailures on the event source mapping, see infra/).
    """
    records = event.get("Records", [])
    svc = services()
    report = svc.fanout.fan_out(inserted_messages(records), deadline_ms(svc.sessions.clock))
    if report.failed_records:
        logger.warning("fan-out incomplete", extra={"failed": len(report.failed_records)})

    def outcome(record: Any) -> None:
        if record.dynamodb and str(record.dynamodb.sequence_number) in report.failed_records:
            raise RuntimeError("delivery failed; the stream will retry this record")

    processor = _processor()
    with processor(records=records, handler=outcome, lambda_context=context):
        processor.process()
    return dict(processor.response())
