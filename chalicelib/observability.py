"""The logger every layer shares (Powertools, structured JSON on Lambda).

Powertools is imported when the first line is logged, not with this module: importing it
costs a noticeable part of a cold start (docs/deploy.md), and most invocations log nothing.
Keys appended before then (``thread_safe_append_keys``, as the middleware does on every
invocation) are kept per context, as Powertools keeps them, and handed over when it loads, so
every line carries the same keys either way.

Metrics are a port (ports.Metrics), wired by bootstrap.py and flushed by app.py's middleware.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

# Keys appended in this context (thread, task) while Powertools was not loaded yet.
_pending: ContextVar[dict[str, Any] | None] = ContextVar("switchboard_log_keys", default=None)


class _LazyLogger:
    """Stands for ``aws_lambda_powertools.Logger(service=...)``; creates it on first use."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._logger: Logger | None = None
        self._lock = threading.Lock()

    def _load(self) -> Logger:
        if self._logger is None:
            with self._lock:
                if self._logger is None:
                    from aws_lambda_powertools import Logger

                    self._logger = Logger(service=self._service)
        pending = _pending.get()
        if pending is not None:
            _pending.set(None)
            self._logger.thread_safe_append_keys(**pending)
        return self._logger

    def thread_safe_append_keys(self, **keys: Any) -> None:
        if self._logger is None:
            _pending.set({**(_pending.get() or {}), **keys})
        else:
            self._load().thread_safe_append_keys(**keys)

    def thread_safe_remove_keys(self, keys: Iterable[str]) -> None:
        if self._logger is None:
            pending = _pending.get()
            if pending is not None:
                names = set(keys)
                _pending.set({k: v for k, v in pending.items() if k not in names})
        else:
            self._load().thread_safe_remove_keys(keys)

    def __getattr__(self, name: str) -> Any:
        # info, warning, exception, debug, ...: everything else is Powertools' own.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)


logger: Logger = _LazyLogger(service="switchboard")  # type: ignore[assignment]
