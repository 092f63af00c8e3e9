"""Powertools Logger and Metrics, shared by every handler.

Metrics are flushed as CloudWatch EMF at the end of each invocation, and only when something
was counted (an empty flush would log a warning per request).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from .services import Metrics as ServiceMetrics

logger = Logger(service="switchboard")
metrics = Metrics(namespace="Switchboard", service="switchboard")


def _add(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


service_metrics = ServiceMetrics(_add)


def flush_metrics() -> None:
    if metrics.metric_set:
        metrics.flush_metrics()
