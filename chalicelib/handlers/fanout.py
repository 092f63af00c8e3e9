"""The DynamoDB stream consumer: deliver new messages, report partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from ..adapters.stream_records import inserted_messages
from ..bootstrap import services
from ..observability import flush_metrics, logger, service_metrics

_processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
)


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Fan one stream batch out; failed records go back as ``batchItemFailures``.

    Grouping by channel and concurrent posting happen across the whole batch first; the
    Powertools processor then turns the per-record outcome into the partial-failure response
    (which takes effect with ReportBatchItemFailures on the event source mapping, see infra/).
    """
    records = event.get("Records", [])
    try:
        report = services(service_metrics).fanout.fan_out(inserted_messages(records))
    finally:
        flush_metrics()
    if report.failed_records:
        logger.warning("fan-out incomplete", extra={"failed": len(report.failed_records)})

    def outcome(record: Any) -> None:
        if record.dynamodb and str(record.dynamodb.sequence_number) in report.failed_records:
            raise RuntimeError("delivery failed; the stream will retry this record")

    with _processor(records=records, handler=outcome, lambda_context=context):
        _processor.process()
    return _processor.response()
