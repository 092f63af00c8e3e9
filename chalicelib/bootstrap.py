"""Composition root: build the services from settings (AWS) or from given adapters (tests).

Nothing here runs at import time; the handlers call :func:`services` on first use and the
result lives as long as the Lambda container. Metrics are wired here too: CloudWatch EMF on
AWS (flushed by app.py's middleware after every invocation), nothing in tests unless a test
passes its own.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from .ports import (
    NO_METRICS,
    Clock,
    ConnectionSender,
    KeyRing,
    LeaseStore,
    MessageStore,
    Metrics,
    SubscriptionStore,
)
from .services.appends import Appender
from .services.channels import ChannelService
from .services.credentials import Authenticator
from .services.fanout import FanoutService
from .services.limits import Limiter
from .services.sessions import SessionService
from .services.streams import StreamService
from .settings import Settings, get_settings


@dataclass
class Services:
    settings: Settings
    channels: ChannelService
    appender: Appender
    streams: StreamService
    sessions: SessionService
    fanout: FanoutService
    metrics: Metrics
    limiter: Limiter
    # None when authentication is off (`switchboard dev --no-auth`): everyone may do anything.
    auth: Authenticator | None = None

    def flush_metrics(self) -> None:
        flush = getattr(self.metrics, "flush", None)
        if flush is not None:
            flush()


def build(
    settings: Settings,
    store: MessageStore,
    subscriptions: SubscriptionStore,
    sender: ConnectionSender,
    clock: Clock,
    metrics: Metrics = NO_METRICS,
    rng: random.Random | None = None,
    keys: KeyRing | None = None,
    leases: LeaseStore | None = None,
) -> Services:
    """The services over the given adapters. ``leases`` defaults to ``store`` when it keeps
    leases too (MemoryStore does)."""
    rng = rng or random.Random()
    if leases is None:
        if not isinstance(store, LeaseStore):
            raise TypeError("build() needs a LeaseStore: pass leases=, or a store that is one")
        leases = store
    limiter = Limiter(leases, settings, clock, rng)
    channels = ChannelService(store, settings, clock, rng, metrics)
    appender = Appender(channels, settings, clock, rng, metrics)
    sessions = SessionService(
        channels, appender, subscriptions, sender, settings, clock, metrics, limiter
    )
    auth = None
    if settings.auth_enabled:
        auth = Authenticator(
            keys or key_ring(settings), clock, settings.token_leeway_s,
            settings.token_max_ttl_s, settings.token_audience,
        )
    return Services(
        settings=settings,
        channels=channels,
        appender=appender,
        streams=StreamService(channels, appender, settings, clock, rng),
        sessions=sessions,
        fanout=FanoutService(sessions, settings, clock, rng, metrics),
        metrics=metrics,
        limiter=limiter,
        auth=auth,
    )


def key_ring(settings: Settings) -> KeyRing:
    """API keys from wherever the settings say (read lazily, refreshed every few minutes)."""
    from .adapters.keys import (
        CachedKeyRing,
        StaticKeyRing,
        secrets_manager_fetch,
        ssm_fetch,
    )

    if settings.api_keys is not None:
        return StaticKeyRing.from_json(settings.api_keys)
    if settings.api_keys_secret_id is not None or settings.api_keys_parameter is not None:
        import boto3

        if settings.api_keys_secret_id is not None:
            client = boto3.client("secretsmanager", region_name=settings.region)
            fetch = secrets_manager_fetch(client, settings.api_keys_secret_id)
        else:
            client = boto3.client("ssm", region_name=settings.region)
            fetch = ssm_fetch(client, str(settings.api_keys_parameter))
        return CachedKeyRing(fetch, settings.api_keys_refresh_s)
    return StaticKeyRing({})  # authentication on and no keys: nobody gets in


def build_aws(settings: Settings) -> Services:
    import boto3
    from botocore.config import Config

    from .adapters.apigateway import ApiGatewaySender
    from .adapters.clock import SystemClock
    from .adapters.dynamodb import DynamoLeaseStore, DynamoMessageStore, DynamoSubscriptionStore
    from .adapters.metrics import PowertoolsMetrics

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
    store = DynamoMessageStore(client, settings.channels_table, settings.messages_table)
    subscriptions = DynamoSubscriptionStore(client, settings.connections_table)
    sender = ApiGatewaySender(
        session, settings.region, max_pool_connections=settings.fanout_concurrency * 2
    )
    leases = DynamoLeaseStore(client, settings.channels_table)
    return build(
        settings, store, subscriptions, sender, SystemClock(), PowertoolsMetrics(),
        leases=leases,
    )


_services: Services | None = None
_override: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    """The process-wide services: the override if a test installed one, else AWS."""
    global _services
    if _override is not None:
        return _override
    if _services is None:
        with _lock:
            if _services is None:
                _services = build_aws(get_settings())
    return _services


def built() -> Services | None:
    """The services if something already built them (the middleware flushes only then)."""
    return _override if _override is not None else _services


def install(override: Services | None) -> None:
    """Use ``override`` instead of AWS adapters (tests, the in-memory dev mode); None resets."""
    global _override, _services
    _override = override
    _services = None
