"""Tunables of the client, with defaults sized for API Gateway's limits."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """Timing and retry settings. The defaults suit production; tests shorten them.

    API Gateway closes a WebSocket after 10 idle minutes and after 2 hours, whatever happens:
    the client pings well inside the first and reconnects on its own schedule before the
    second (with jitter, so a fleet started together does not reconnect together).
    """

    #: Seconds between application-level pings on an otherwise idle socket.
    ping_interval: float = 120.0
    #: Seconds to wait for a pong (or any frame) before declaring the socket dead.
    pong_timeout: float = 20.0
    #: Reconnect proactively after this many seconds (API Gateway's hard limit is 7,200).
    max_connection_age: float = 6_600.0
    #: Reconnect backoff: full jitter between 0 and min(max, initial * 2**attempt) seconds.
    backoff_initial: float = 0.25
    backoff_max: float = 15.0
    #: Seconds to wait for a reply to one request (ack, subscribed, HTTP response).
    request_timeout: float = 10.0
    #: How long a publish keeps retrying (same id, so nothing is stored twice) before failing.
    publish_deadline: float = 60.0
    #: Attempts for one HTTP request when the failure is transient.
    http_attempts: int = 5
    #: Seconds to open the socket.
    connect_timeout: float = 10.0
    #: Seconds a subscription may stay silent after its last message before the client asks
    #: the server for the channel's head (a ``ping`` with ``channels``), to find a last
    #: message the fan-out gave up on; later keep-alive pings ask again. 0 turns it off.
    idle_check: float = 25.0
    #: Ask for batched ``messages`` frames when subscribing (a backlog replays faster and
    #: costs fewer API Gateway messages). False: one ``message`` frame per message.
    batch_frames: bool = True
    #: A publish whose encoded frame is larger goes over HTTP instead of the socket: API
    #: Gateway closes a WebSocket (1009) on an inbound frame over 32 KB.
    max_frame_bytes: int = 32_000


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff (attempt counts from 0)."""
    return rng.uniform(0, min(cap, initial * (2 ** min(attempt, 30))))
