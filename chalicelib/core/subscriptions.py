"""Connections and their subscriptions, and the pure fan-out rule of who gets what."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SubscriptionState(StrEnum):
    # Registered, replay in progress: the fan-out skips it so nothing overtakes the replay.
    REPLAYING = "replaying"
    # Caught up: the fan-out delivers every message with seq > after_seq.
    LIVE = "live"


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

    def wants(self, epoch: str, seq: int) -> bool:
        """Whether the fan-out should deliver message ``seq`` of ``epoch`` to this subscriber."""
        return self.state is SubscriptionState.LIVE and epoch == self.epoch and seq > self.after_seq
