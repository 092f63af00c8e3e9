"""Runtime settings, from environment variables prefixed ``SWITCHBOARD_``.

Read lazily through :func:`get_settings` (never at import): Lambda sets the variables from
.chalice/config.json, ``switchboard dev`` and the tests set them per process, and the Chalice
test client swaps ``os.environ`` for each call.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# API Gateway carries at most 128 KB per WebSocket message; the frame adds the envelope.
_HARD_MAX_MESSAGE_BYTES = 120 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    channels_table: str = "switchboard-channels"
    messages_table: str = "switchboard-messages"
    connections_table: str = "switchboard-connections"
    # Durable Streams subscriptions (docs/durable-streams.md, "Subscriptions").
    wakes_table: str = "switchboard-wakes"
    region: str = Field("us-east-1", validation_alias="AWS_REGION")
    # Endpoint of DynamoDB; unset on AWS. `switchboard dev` points it at moto.
    dynamodb_endpoint: str | None = None
    # Management API base URL for posting to sockets. Unset on AWS: each connection stores
    # https://{domain}/{stage} from its $connect event. Set for a custom domain or locally.
    websocket_endpoint: str | None = None

    default_retention_s: int = Field(24 * 3600, ge=1, le=365 * 24 * 3600)
    # Per-namespace retention, JSON: SWITCHBOARD_NAMESPACE_RETENTION='{"runs": 3600}'.
    namespace_retention: dict[str, int] = Field(default_factory=dict)

    max_message_bytes: int = Field(64 * 1024, ge=1, le=_HARD_MAX_MESSAGE_BYTES)
    max_frame_bytes: int = Field(128 * 1024, ge=1024)
    # Messages per publish request; stored in transactions of at most 100 items each.
    max_batch: int = Field(500, ge=1, le=10_000)
    max_subscriptions_per_connection: int = Field(100, ge=1)
    replay_page: int = Field(200, ge=1, le=1000)
    history_max_limit: int = Field(1000, ge=1)
    connection_ttl_s: int = Field(2 * 3600 + 600, ge=60)
    fanout_concurrency: int = Field(16, ge=1, le=256)
    send_attempts: int = Field(5, ge=1)
    send_backoff_ms: int = Field(50, ge=0)
    # How long an append may keep retrying a busy channel when the caller gives no deadline
    # (handlers pass the Lambda's remaining time); then `rate_limited` with a retry hint.
    append_budget_s: float = Field(10.0, gt=0, le=900)
    # How long a process trusts what it knows of a channel it appends to (metadata and tail).
    # Never a correctness risk: the log refuses a taken seq; only fewer reads.
    append_cache_s: float = Field(60.0, ge=0)
    # A retried publish without an id (its first answer was lost) is looked for among the
    # log's entries of the last `retry_window_s`, at most `retry_scan` of them.
    retry_window_s: float = Field(120.0, ge=0)
    retry_scan: int = Field(2000, ge=0)
    # Durable Streams forks one stream may have (its bookkeeping item holds their names:
    # at most 500 keeps it far under DynamoDB's 400 KB whatever the names).
    max_forks_per_stream: int = Field(100, ge=1, le=500)
    # Durable Streams live reads (bounded: API Gateway REST ends a request after 29 s).
    long_poll_timeout_s: float = Field(20.0, gt=0, le=25)
    # How long a caught-up SSE request waits for new data before it closes (the client
    # reconnects from the last control event).
    sse_hold_s: float = Field(1.0, ge=0, le=25)
    # How long every SSE response lasts at least (unless the stream closes or time is up):
    # clients take connections that end within a second for a buffering proxy.
    sse_min_s: float = Field(1.5, ge=0, le=25)
    # How long a subscribe may replay (when the caller gives no deadline) before it pauses
    # and tells the client where to continue.
    replay_budget_s: float = Field(20.0, gt=0, le=600)
    # How much one principal (an API key, or one client id of a token; without auth, one
    # source IP) or one WebSocket connection may run at once (services/limits.py): long-poll
    # and SSE responses, and replays longer than one page. Over it: `rate_limited`.
    max_live_reads_per_principal: int = Field(20, ge=1, le=1000)
    max_replays_per_principal: int = Field(20, ge=1, le=1000)
    max_replays_per_connection: int = Field(4, ge=1, le=100)

    # -- presence (core/presence.py) --
    presence_ttl_s: int = Field(40, ge=5, le=3600)  # gone this long after the last heartbeat
    presence_max_members: int = Field(200, ge=1, le=10_000)
    presence_max_updates_per_s: float = Field(2.0, gt=0, le=100)
    # How far back the very first sweep looks (later ones start where the last one ended).
    presence_sweep_minutes: int = Field(3, ge=1, le=60)

    # -- authentication (docs/auth.md) --
    # Off only for local hacking (`switchboard dev --no-auth`); on everywhere else.
    auth_enabled: bool = True
    # Where API keys come from: a JSON document in this variable (dev and tests only), or the
    # id of a Secrets Manager secret, or the name of an SSM SecureString parameter.
    api_keys: str | None = None
    api_keys_secret_id: str | None = None
    api_keys_parameter: str | None = None
    # How long a container trusts the key document it read: a revoked key stops working,
    # for requests and for the frames of open sockets, within this (at most a minute).
    api_keys_refresh_s: int = Field(60, ge=0, le=60)
    # The audience (`aud`) of the tokens this deployment issues and accepts: a token signed
    # with the same key for anything else is refused.
    token_audience: str = Field("switchboard", min_length=1, max_length=128)
    token_leeway_s: int = Field(30, ge=0, le=300)
    token_max_ttl_s: int = Field(24 * 3600, ge=60)
    # Browser origins allowed to open WebSockets; ["*"] allows any (the dev server's default).
    allowed_origins: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(1024 * 1024, ge=1024)

    # -- Durable Streams subscriptions (webhooks and pull-wake) --
    # The SQS queue of delayed wake jobs (deliveries, retries, lease checks).
    wake_queue_url: str | None = None
    # Endpoint of SQS and Secrets Manager; unset on AWS. `switchboard dev` points them at moto.
    aws_endpoint: str | None = None
    # The webhook signing secret (adapters/signing.py): a Secrets Manager secret id on AWS, or
    # the seed itself (dev and tests only).
    webhook_signing_secret_id: str | None = None
    webhook_signing_seed: str | None = None
    webhook_signing_refresh_s: int = Field(300, ge=0)
    # http:// webhooks to loopback (localhost, 127.0.0.0/8, [::1]): `switchboard dev` and
    # tests only. Off on AWS, where 127.0.0.1:9001 is the Lambda runtime API.
    webhook_allow_loopback: bool = False
    webhook_timeout_s: float = Field(10.0, gt=0, le=25)
    # The public base URL of the REST API (a custom domain); callback and JWKS URLs are built
    # from it. Unset: from the request that created the subscription.
    public_url: str | None = None

    @field_validator("namespace_retention")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for namespace, seconds in value.items():
            if seconds < 1:
                raise ValueError(f"retention for namespace {namespace!r} must be >= 1 s")
        return value

    def retention_for(self, namespace: str | None) -> int:
        if namespace is not None and namespace in self.namespace_retention:
            return self.namespace_retention[namespace]
        return self.default_retention_s


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
