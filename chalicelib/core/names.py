"""Channel names: the address of a channel, chosen by the application."""

from __future__ import annotations

import re

from .errors import InvalidChannelError

MAX_NAME_BYTES = 256
# Durable Streams reserves /v1/stream/__ds/... for its subscription APIs (core/wakes.py), so
# no channel's first segment may be it (``_`` is otherwise a channel character).
RESERVED_NAMESPACE = "__ds"
_SEGMENT = re.compile(r"[A-Za-z0-9._~@-]+\Z")


def validate_channel(name: object) -> str:
    """Return ``name`` if it is a valid channel name, else raise :class:`InvalidChannelError`.

    >>> validate_channel("runs:7f3a")
    'runs:7f3a'
    """
    if not isinstance(name, str) or not name:
        raise InvalidChannelError(
            "A channel name is required: a non-empty string such as 'runs:7f3a'.",
            {"channel": name if isinstance(name, str) else None},
        )
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidChannelError(
            f"Channel names are at most {MAX_NAME_BYTES} bytes; this one is longer.",
            {"channel": name[:64] + "…", "max_bytes": MAX_NAME_BYTES},
        )
    segments = name.split(":")
    if segments[0] == RESERVED_NAMESPACE:
        raise InvalidChannelError(
            f"Channel names starting with {RESERVED_NAMESPACE!r} are reserved (Durable "
            "Streams subscription APIs live under /v1/stream/__ds/).",
            {"channel": name},
        )
    for segment in segments:
        if not _SEGMENT.match(segment):
            raise InvalidChannelError(
                f"Invalid channel name {name!r}: use segments of letters, digits and "
                "'._~@-' separated by ':' (for example 'runs:7f3a'), with no empty segment.",
                {"channel": name},
            )
    return name


def namespace_of(name: str) -> str | None:
    """The namespace of a channel: its first segment, when the name has a ``:``."""
    head, sep, _ = name.partition(":")
    return head if sep else None
