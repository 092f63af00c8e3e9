"""Around every invocation (app.py's middleware): tagged log lines, flushed metrics.

Imported by app.py at import time, so it imports nothing heavy until an event arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def observed(get_response: Callable[[Any], Any], event: Any, context: Any) -> Any:
    """Run one invocation with its log lines tagged (Lambda's request id and function
    name) and its metrics flushed at the end, whatever happened."""
    from .. import bootstrap
    from ..observability import logger

    if context is not None:
        logger.thread_safe_append_keys(
            request_id=getattr(context, "aws_request_id", None),
            function=getattr(context, "function_name", None),
        )
    try:
        return get_response(event)
    finally:
        built = bootstrap.built()
        if built is not None:
            built.flush_metrics()
