"""Presence: who is on a channel right now, and in what state. Pure rules, no I/O.

A *member* is one client on one channel: a WebSocket connection that entered, or a backend
that keeps membership alive over HTTP under an instance name it chooses. Its key is
``<who>/<instance>``: ``who`` is the authenticated publisher (client id, or ``key:<id>``),
``instance`` the connection id or the HTTP instance name. A member carries a small JSON
object (``{"role": "agent", "state": "thinking"}``).

Every change (enter, update, leave) is also appended to the channel's **presence log**, the
channel ``<channel>@presence``: an ordinary log, so Durable Streams readers and late joiners
read it by name and subscribers get its events in order with each other. Its messages have
the Durable Streams state protocol's change shape::

    {"type": "presence", "key": "<member key>",
     "value": {"client_id": …, "data": {…}},          (absent on delete)
     "headers": {"operation": "insert" | "update" | "delete"}}

The application's own log is untouched: its seqs, costs and readers see no presence.
Members stay while they heartbeat: one that stops (its connection vanished with no
``$disconnect``) is removed, and its leave logged, once its TTL (``presence_ttl_s``, 40 s by
default) has passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequestError, TooLargeError

PRESENCE_SUFFIX = "@presence"
MAX_DATA_BYTES = 1024
MAX_INSTANCE_LENGTH = 128
HEARTBEAT_S = 15  # what clients are told to heartbeat at (40 % of a shorter TTL)
INSERT, UPDATE, DELETE = "insert", "update", "delete"


def is_presence_log(channel: str) -> bool:
    return channel.endswith(PRESENCE_SUFFIX)


def presence_log(channel: str) -> str:
    return channel + PRESENCE_SUFFIX


def base_channel(channel: str) -> str:
    """The channel a presence log belongs to (the channel itself otherwise)."""
    return channel[: -len(PRESENCE_SUFFIX)] if is_presence_log(channel) else channel


@dataclass(frozen=True)
class Member:
    channel: str
    key: str  # <who>/<instance>
    client_id: str | None
    data: dict[str, Any]
    connection_id: str | None  # None for a member kept alive over HTTP
    entered_ms: int
    updated_ms: int
    expires_at: int  # epoch seconds: gone unless heard from before then

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "client_id": self.client_id,
            "data": self.data,
            "entered": self.entered_ms,
            "updated": self.updated_ms,
            "via": "websocket" if self.connection_id else "http",
        }


def member_key(who: str | None, instance: str) -> str:
    return f"{who or 'anonymous'}/{instance}"


def validate_instance(value: object) -> str:
    """An HTTP member's instance name: what tells a backend's members apart."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_INSTANCE_LENGTH
        or any(c in value for c in "/#\x1f ")
    ):
        raise InvalidRequestError(
            f"The presence instance must be 1 to {MAX_INSTANCE_LENGTH} characters without "
            "'/', '#' or spaces (for example 'worker-3').",
            {"field": "instance"},
        )
    return value


def validate_data(value: object) -> dict[str, Any]:
    """A member's data: a JSON object of at most ``MAX_DATA_BYTES`` encoded."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(
            'Presence data must be a JSON object, for example {"role": "agent", "state": '
            '"thinking"}.',
            {"field": "data"},
        )
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequestError("Presence data must be plain JSON.", {"field": "data"}) from None
    if size > MAX_DATA_BYTES:
        raise TooLargeError(
            f"Presence data is {size} bytes encoded; the limit is {MAX_DATA_BYTES}. Keep it "
            "to a small state (role, status); put the rest in messages.",
            {"size": size, "max_bytes": MAX_DATA_BYTES},
        )
    return value


def change(operation: str, member: Member) -> dict[str, Any]:
    """The presence log's message for a change of ``member`` (state protocol shape)."""
    event: dict[str, Any] = {"type": "presence", "key": member.key,
                             "headers": {"operation": operation}}
    if operation != DELETE:
        event["value"] = {"client_id": member.client_id, "data": member.data}
    return event


def due_bucket(expires_at: int) -> int:
    """The minute in which a member with this expiry is checked by the sweeper."""
    return expires_at // 60
