"""Switchboard Python SDK: exactly-once, in-order channels that survive reconnects.

Async API (this module) and a blocking twin (:mod:`switchboard.client.sync`).

    from switchboard.client import Switchboard

    async with Switchboard("http://127.0.0.1:8765") as sb:
        ch = sb.channel("runs:7f3a")
        await ch.publish({"type": "status", "text": "started"})
        async for msg in ch.subscribe(from_="-1"):
            print(msg.seq, msg.data)

        await ch.presence.enter({"role": "agent", "state": "thinking"})

See docs/sdk.md for recovery semantics, presence, token streaming and the agent inbox.
"""

from ._client import Channel, Subscription, Switchboard
from ._connection import ConnectionStats
from ._errors import (
    ClosedError,
    ConflictError,
    EpochMismatchError,
    ForbiddenError,
    InternalError,
    InvalidChannelError,
    InvalidFrameError,
    InvalidOffsetError,
    InvalidRequestError,
    NotFoundError,
    OffsetExpiredError,
    RateLimitedError,
    SwitchboardError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from ._options import Options
from ._presence import Presence, PresenceEvent, PresenceMember, PresenceSubscription
from ._recovery import Gap, Recovery, RecoveryStats
from ._subscriptions import Subscriptions, Wake
from ._tokens import AgentRun, StreamResult, TextAssembler, read_text, stream_text
from ._types import BEGINNING, NOW, Ack, ChannelInfo, HistoryPage, Message

__all__ = [
    "BEGINNING",
    "NOW",
    "Ack",
    "AgentRun",
    "Channel",
    "ChannelInfo",
    "ClosedError",
    "ConflictError",
    "ConnectionStats",
    "EpochMismatchError",
    "ForbiddenError",
    "Gap",
    "HistoryPage",
    "InternalError",
    "InvalidChannelError",
    "InvalidFrameError",
    "InvalidOffsetError",
    "InvalidRequestError",
    "Message",
    "NotFoundError",
    "OffsetExpiredError",
    "Options",
    "Presence",
    "PresenceEvent",
    "PresenceMember",
    "PresenceSubscription",
    "RateLimitedError",
    "Recovery",
    "RecoveryStats",
    "StreamResult",
    "Subscription",
    "Subscriptions",
    "Switchboard",
    "SwitchboardError",
    "TextAssembler",
    "TooLargeError",
    "UnauthorizedError",
    "UnavailableError",
    "Wake",
    "read_text",
    "stream_text",
]
