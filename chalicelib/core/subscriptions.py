"""Connections and their subscriptions, and the pure fan-out rule of who gets what."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class SubscriptionState(StrEnum):
    """How a subscription goes from replay to live delivery with one sender at a time, and
    without contending with publishers (nothing here touches the channel's item):

    REPLAYING  the subscribe handler sends the backlog. The fan-out sends nothing; it notes on
               the subscription the highest seq it would have sent (``missed``).
    LIVE       the handler switched it, at the last seq it sent, only if nothing noted is past
               that seq (else it sends the rest and tries again); the fan-out then delivers
               every message with seq > ``after_seq``. Frames arrive in seq order, once.
    """

    REPLAYING = "replaying"
    LIVE = "live"


class Handover(Enum):
    """What switching a replaying subscription to live did."""

    LIVE = "live"
    BEHIND = "behind"  # the fan-out noted a later seq meanwhile: send it, then try again
    GONE = "gone"  # unsubscribed, disconnected, or replaced by a later subscription


@dataclass(frozen=True)
class Connection:
    connection_id: str
    endpoint: str  # Management API base URL, https://{domain}/{stage} on AWS
    connected_ms: int
    expires_at: int  # epoch seconds; API Gateway closes sockets after 2 h
    principal: str | None = None  # the client id, for logs and `publisher`
    # Principal.to_claims() as JSON: read back when no authorizer context is available.
    claims: str | None = None


@dataclass(frozen=True)
class Subscription:
    channel: str
    connection_id: str
    endpoint: str
    epoch: str
    after_seq: int
    state: SubscriptionState
    expires_at: int
    missed: int = 0  # while replaying: the highest seq the fan-out held back
    batch: bool = False  # several messages per frame (core/frames.py message_frames)
    # When API Gateway received the subscribe frame (epoch ms): frames of one connection are
    # handled concurrently, so an unsubscribe removes only subscriptions received before it.
    since_ms: int = 0

    def wants(self, epoch: str, seq: int) -> bool:
        """Whether message ``seq`` of ``epoch`` is for this subscriber (the fan-out sends it
        when LIVE, and notes it when REPLAYING)."""
        return epoch == self.epoch and seq > self.after_seq
