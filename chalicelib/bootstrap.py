"""Composition root: build the services from settings (AWS) or from given adapters (tests).

Nothing here runs at import time; app.py calls :func:`services` on first use and keeps the
result for the life of the Lambda container.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from .ports import Clock, ConnectionSender, MessageStore, SubscriptionStore
from .services import ChannelService, FanoutService, Metrics, SessionService
from .settings import Settings, get_settings


@dataclass
class Services:
    settings: Settings
    channels: ChannelService
    sessions: SessionService
    fanout: FanoutService


def build(
    settings: Settings,
    store: MessageStore,
    subscriptions: SubscriptionStore,
    sender: ConnectionSender,
    clock: Clock,
    metrics: Metrics | None = None,
    rng: random.Random | None = None,
) -> Services:
    rng = rng or random.Random()
    metrics = metrics or Metrics()
    channels = ChannelService(store, settings, clock, rng, metrics)
    return Services(
        settings=settings,
        channels=channels,
        sessions=SessionService(channels, subscriptions, sender, settings, clock, metrics),
        fanout=FanoutService(subscriptions, sender, settings, clock, rng, metrics),
    )


def build_aws(settings: Settings, metrics: Metrics | None = None) -> Services:
    import boto3
    from botocore.config import Config

    from .adapters.apigateway import ApiGatewaySender
    from .adapters.clock import SystemClock
    from .adapters.dynamodb import DynamoStore

    session = boto3.session.Session()
    client: Any = session.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=max(10, settings.fanout_concurrency),
        ),
    )
    store = DynamoStore(
        client, settings.channels_table, settings.messages_table, settings.connections_table
    )
    sender = ApiGatewaySender(
        session, settings.region, max_pool_connections=settings.fanout_concurrency * 2
    )
    return build(settings, store, store, sender, SystemClock(), metrics)


_services: Services | None = None
_override: Services | None = None
_lock = threading.Lock()


def services(metrics: Metrics | None = None) -> Services:
    """The process-wide services: the override if a test installed one, else AWS."""
    global _services
    if _override is not None:
        return _override
    if _services is None:
        with _lock:
            if _services is None:
                _services = build_aws(get_settings(), metrics)
    return _services


def install(override: Services | None) -> None:
    """Use ``override`` instead of AWS adapters (tests, the in-memory dev mode); None resets."""
    global _override, _services
    _override = override
    _services = None
