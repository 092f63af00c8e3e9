"""Metrics adapters: CloudWatch EMF through Powertools, or a plain callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CallbackMetrics:
    """Hands every count to ``sink`` (tests and benchmarks record them)."""

    def __init__(self, sink: Callable[[str, float], None]) -> None:
        self._sink = sink

    def count(self, name: str, value: float = 1) -> None:
        if value:
            self._sink(name, value)


class PowertoolsMetrics:
    """Counts as CloudWatch embedded metrics, flushed once per invocation (app.py's
    middleware calls :meth:`flush`). Powertools is imported on first use, not at import."""

    def __init__(self, namespace: str = "Switchboard", service: str = "switchboard") -> None:
        self._namespace = namespace
        self._service = service
        self._metrics: Any = None

    def _powertools(self) -> Any:
        if self._metrics is None:
            from aws_lambda_powertools import Metrics

            self._metrics = Metrics(namespace=self._namespace, service=self._service)
        return self._metrics

    def count(self, name: str, value: float = 1) -> None:
        if not value:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        self._powertools().add_metric(name=name, unit=MetricUnit.Count, value=value)

    def flush(self) -> None:
        # Only when something was counted: an empty flush logs a warning per request.
        if self._metrics is not None and self._metrics.metric_set:
            self._metrics.flush_metrics()
