"""Keep a Durable Streams SSE response open across handler invocations (dev only).

API Gateway REST buffers a Lambda's response and Python Lambdas cannot stream, so the Chalice
handler answers ``GET /v1/stream/{channel}?live=sse`` with one bounded response: the events
available now (or within ``SWITCHBOARD_SSE_HOLD_S`` when caught up), ending with a control
event whose ``streamNextOffset`` the client resumes from (docs/durable-streams.md). Durable
Streams clients take a connection that keeps closing for a buffering proxy and fall back.

The dev gateway therefore plays what a streaming deployment would do: it sends the first
invocation's events at once, then invokes the handler again from the last control event's
``streamNextOffset`` (the client's other query parameters unchanged, so its cursor is echoed
as the protocol asks) and streams those events on the same response, until the stream closes
(``streamClosed``), an invocation answers anything but ``200 text/event-stream``, the client
goes away or the server stops. Each invocation is an ordinary one, with the REST timeouts.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

CONTROL = "control"


def is_sse_request(method: str, query: str) -> bool:
    return method == "GET" and ("live", "sse") in parse_qsl(query, keep_blank_values=True)


def is_event_stream(headers: list[tuple[str, str]]) -> bool:
    return any(
        name.lower() == "content-type"
        and value.split(";")[0].strip().lower() == "text/event-stream"
        for name, value in headers
    )


def events(data: bytes) -> list[tuple[str, str]]:
    """The (type, data) of every complete event in ``data`` (SSE framing, any line ends)."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    parsed = []
    for block in text.split("\n\n"):
        kind, lines = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                kind = value
            elif field == "data":
                lines.append(value)
        if lines:
            parsed.append((kind, "\n".join(lines)))
    return parsed


def last_control(data: bytes) -> dict[str, Any] | None:
    """The last control event's fields, if ``data`` has one."""
    for kind, payload in reversed(events(data)):
        if kind == CONTROL:
            try:
                control = json.loads(payload)
            except ValueError:
                return None
            return control if isinstance(control, dict) else None
    return None


def next_query(query: str, control: dict[str, Any]) -> str | None:
    """The query of the next invocation, or None when the response should end."""
    offset = control.get("streamNextOffset")
    if control.get("streamClosed") or not isinstance(offset, str) or not offset:
        return None
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "offset"]
    return urlencode([*pairs, ("offset", offset)])
