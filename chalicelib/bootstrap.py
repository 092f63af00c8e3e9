"""Composition root: build the services from settings (AWS) or from given adapters (tests).

Nothing here runs at import time; the handlers call :func:`services` on first use and the
result lives as long as the Lambda container. Metrics are wired here too: CloudWatch EMF on
AWS (flushed by app.py's middleware after every invocation), nothing in tests unless a test
passes its own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ports import (
    NO_METRICS,
    Clock,
    ConnectionSender,
    KeyRing,
    LeaseStore,
    MessageStore,
    Metrics,
    PresenceStore,
    SigningKeys,
    SubscriptionStore,
    WakeQueue,
    WakeStore,
    WebhookPoster,
)
from .services.appends import Appender
from .services.channels import ChannelService
from .services.credentials import Authenticator
from .services.fanout import FanoutService
from .services.limits import Limiter
from .services.presence import PresenceService
from .services.sessions import SessionService
from .services.streams import StreamService
from .settings import Settings, get_settings

if TYPE_CHECKING:  # built on first use: most functions never touch subscriptions
    from .services.wakes import WakeService


@dataclass
class Services:
    settings: Settings
    channels: ChannelService
    appender: Appender
    streams: StreamService
    sessions: SessionService
    fanout: FanoutService
    presence: PresenceService
    metrics: Metrics
    limiter: Limiter
    # None when authentication is off (`switchboard dev --no-auth`): everyone may do anything.
    auth: Authenticator | None = None
    # Durable Streams subscriptions, built on first use (the WebSocket functions never use
    # them, and each import is cold-start time: bench/cold_start.py).
    make_wakes: Callable[[], WakeService] | None = None
    _wakes: WakeService | None = None

    @property
    def wakes(self) -> WakeService:
        if self._wakes is None:
            with _lock:
                if self._wakes is None:
                    assert self.make_wakes is not None, "build() sets make_wakes"
                    self._wakes = self.make_wakes()
        return self._wakes

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
    presence: PresenceStore | None = None,
    wake_store: WakeStore | None = None,
    wake_queue: WakeQueue | None = None,
    make_wake_store: Callable[[], WakeStore] | None = None,
    poster: WebhookPoster | None = None,
    signing: SigningKeys | None = None,
) -> Services:
    """The services over the given adapters. ``leases`` defaults to ``store`` when it keeps
    leases too (MemoryStore does). The wake adapters default to in-memory ones (a store, a
    queue on ``clock``), a real webhook poster and the signing keys the settings name (tests
    pass their own); ``make_wake_store`` builds the store on first use instead."""
    rng = rng or random.Random()
    if leases is None:
        if not isinstance(store, LeaseStore):
            raise TypeError("build() needs a LeaseStore: pass leases=, or a store that is one")
        leases = store
    limiter = Limiter(leases, settings, clock, rng)
    channels = ChannelService(store, settings, clock, rng, metrics)
    appender = Appender(channels, settings, clock, rng, metrics)
    if presence is None:
        from .adapters.memory import MemoryPresenceStore

        presence = MemoryPresenceStore()
    members = PresenceService(channels, appender, presence, settings, clock, metrics)
    sessions = SessionService(
        channels, appender, subscriptions, sender, settings, clock, metrics, members,
        limiter=limiter,
    )
    auth = None
    if settings.auth_enabled:
        auth = Authenticator(
            keys or key_ring(settings), clock, settings.token_leeway_s,
            settings.token_max_ttl_s, settings.token_audience,
        )
    def make_wakes() -> WakeService:
        from .adapters.memory_wakes import MemoryWakeQueue, MemoryWakeStore
        from .services.wakes import WakeService

        store = wake_store
        if store is None:
            store = make_wake_store() if make_wake_store is not None else MemoryWakeStore()
        return WakeService(
            store, channels, appender,
            MemoryWakeQueue(clock.now_ms) if wake_queue is None else wake_queue,
            webhook_poster(settings) if poster is None else poster,
            signing_keys(settings) if signing is None else signing, settings, clock, rng,
            metrics,
        )

    return Services(
        settings=settings,
        channels=channels,
        appender=appender,
        streams=StreamService(channels, appender, settings, clock, rng),
        sessions=sessions,
        fanout=FanoutService(sessions, settings, clock, rng, metrics),
        presence=members,
        metrics=metrics,
        limiter=limiter,
        auth=auth,
        make_wakes=make_wakes,
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


def webhook_poster(settings: Settings) -> WebhookPoster:
    from .adapters.webhooks import HttpxWebhookPoster

    return HttpxWebhookPoster(settings.webhook_allow_loopback, settings.webhook_timeout_s)


def signing_keys(settings: Settings) -> SigningKeys:
    """The webhook signing keys: a Secrets Manager secret (AWS, `switchboard dev`), or a seed
    in the settings (tests); read on first use."""
    from .adapters.signing import CachedSigningKeys, Ed25519Keys

    if settings.webhook_signing_seed is not None:
        return Ed25519Keys({"seed": settings.webhook_signing_seed})
    secret_id = settings.webhook_signing_secret_id

    def fetch() -> str:
        if secret_id is None:
            raise RuntimeError(
                "No webhook signing key: set SWITCHBOARD_WEBHOOK_SIGNING_SECRET_ID (infra/ "
                "deploys the secret) or SWITCHBOARD_WEBHOOK_SIGNING_SEED."
            )
        import boto3

        client = boto3.client("secretsmanager", region_name=settings.region,
                              endpoint_url=settings.aws_endpoint)
        return str(client.get_secret_value(SecretId=secret_id)["SecretString"])

    return CachedSigningKeys(fetch, settings.webhook_signing_refresh_s)


def build_aws(settings: Settings) -> Services:
    import boto3
    from botocore.config import Config

    from .adapters.apigateway import ApiGatewaySender
    from .adapters.clock import SystemClock
    from .adapters.dynamodb import (
        DynamoLeaseStore,
        DynamoMessageStore,
        DynamoPresenceStore,
        DynamoSubscriptionStore,
    )
    from .adapters.metrics import PowertoolsMetrics
    from .adapters.sqs import SqsWakeQueue

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
    queue = SqsWakeQueue(
        lambda: session.client("sqs", region_name=settings.region,
                               endpoint_url=settings.aws_endpoint),
        settings.wake_queue_url,
    )
    return build(
        settings, store, subscriptions, sender, SystemClock(), PowertoolsMetrics(),
        leases=DynamoLeaseStore(client, settings.channels_table),
        presence=DynamoPresenceStore(client, settings.connections_table),
        make_wake_store=lambda: dynamo_wake_store(client, settings.wakes_table),
        wake_queue=queue,
    )


def dynamo_wake_store(client: Any, table: str) -> WakeStore:
    from .adapters.dynamodb.wakes import DynamoWakeStore

    return DynamoWakeStore(client, table)


_services: Services | None = None
_override: Services | None = None
_lock = threading.RLock()


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
