"""The dev server's log: one plain line per event, whoever logs it.

On AWS the handlers log JSON through Powertools (CloudWatch reads it); on a terminal the
same records read better as the gateway's lines do:

    14:02:11 GET /v1/channels/runs:7f3a 401 3.1 ms
    14:02:11 APIHandler: request rejected code=unauthorized

Three things Powertools does that suit Lambda and not one process serving every function:

* it prints JSON on stdout: :func:`adopt_powertools` (called before the app exists and after)
  sets up the service's logger so that its records render as plain lines on stderr, next to
  everyone else's, and only once (Chalice adds a handler of its own to the same logger);
* it adds a filter to the root handlers that drops every record whose logger name contains
  its service name ("switchboard"), so ``logging.getLogger("switchboard.anything")`` would
  vanish: the filter goes, and the Powertools logger stops propagating instead (which is
  what the filter was preventing: each record printed twice);
* keys appended with ``thread_safe_append_keys`` live on the thread, and here one thread
  pool runs every function: :func:`invocation_reset` clears them before each invocation, as a
  fresh Lambda invocation would not carry a WebSocket ``connection_id`` into a REST request.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

#: Powertools' logger is named after the service (POWERTOOLS_SERVICE_NAME, set by the server).
SERVICE = "switchboard"
DATE_FORMAT = "%H:%M:%S"
LINE_FORMAT = "%(asctime)s %(message)s"
_FUNCTION_PREFIX = "switchboard-dev-"
#: Keys every Powertools record carries that a terminal reader does not need.
_QUIET_KEYS = frozenset({
    "level", "location", "message", "timestamp", "service", "function", "request_id",
    "exception", "exception_name", "stack_trace", "xray_trace_id", "sampling_rate",
    "cold_start", "function_name", "function_memory_size", "function_arn",
    "function_request_id",
})


def configure(level: int = logging.INFO) -> None:
    """Plain lines on stderr for every logger (call before the app is imported)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LINE_FORMAT,
                        datefmt=DATE_FORMAT)


def render(log: Mapping[str, Any]) -> str:
    """One Powertools record (its JSON fields) as a plain line; a traceback follows it."""
    when = time.strftime(DATE_FORMAT)
    function = str(log.get("function") or "")
    function = function.removeprefix(_FUNCTION_PREFIX)
    message = log.get("message")
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    level = str(log.get("level") or "INFO")
    parts = [when]
    if level != "INFO":
        parts.append(level)
    parts.append(f"{function}: {text}" if function else text)
    parts.extend(
        f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
        for key, value in log.items() if key not in _QUIET_KEYS and value is not None
    )
    line = " ".join(parts)
    exception = log.get("exception")
    return f"{line}\n{exception}" if isinstance(exception, str) and exception else line


def _powertools_handler(service: str) -> logging.Handler | None:
    handler = getattr(logging.getLogger(service), "powertools_handler", None)
    return handler if isinstance(handler, logging.Handler) else None


#: The level Powertools chose for each adopted logger (POWERTOOLS_LOG_LEVEL, else INFO).
_LEVELS: dict[str, int] = {}


def adopt_powertools(service: str = SERVICE) -> bool:
    """Make the handlers' Powertools logger print plain lines on stderr, alone, and stop
    hiding other loggers named "switchboard..."; False if Powertools is not installed.

    Call it before the app is imported, and again once it is. The first call creates the
    service's Powertools logger, so the app's ``Logger(service=...)``, whenever the app creates
    it (handlers are imported on first use), finds it configured and reuses this handler. The
    second undoes what importing the app did to the same logger: Chalice names its own logger
    after the app ("switchboard" too), adds a handler that would print every record a second
    time, and sets it to ERROR.
    """
    try:
        from aws_lambda_powertools import Logger
    except ImportError:
        return False
    logger = logging.getLogger(service)
    if _powertools_handler(service) is None:
        Logger(service=service)
        _LEVELS[service] = logger.level
    handler = _powertools_handler(service)
    if handler is None:
        return False
    formatter = handler.formatter
    if formatter is not None and hasattr(formatter, "json_serializer"):
        formatter.json_serializer = render  # Powertools serializes its dict through this
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    for other in [h for h in logger.handlers if h is not handler]:
        logger.removeHandler(other)
    if service in _LEVELS:
        logger.setLevel(_LEVELS[service])
    logger.propagate = False  # its handler prints it; the root must not print it again
    for root_handler in logging.root.handlers:
        for log_filter in list(root_handler.filters):
            if type(log_filter).__name__ == "SuppressFilter":
                root_handler.removeFilter(log_filter)
    return True


def invocation_reset(service: str = SERVICE) -> Callable[[], None]:
    """What to call before each handler invocation: drops the log keys the last invocation
    on this thread appended (nothing to drop before the app has created its logger)."""

    def reset() -> None:
        handler = _powertools_handler(service)
        clear = getattr(handler.formatter if handler else None, "thread_safe_clear_keys", None)
        if callable(clear):
            clear()

    return reset
