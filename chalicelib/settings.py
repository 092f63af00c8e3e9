"""Runtime settings, from environment variables prefixed ``SWITCHBOARD_``.

Read lazily through :func:`get_settings` (never at import): Lambda sets the variables from
.chalice/config.json, ``switchboard dev`` and the tests set them per process, and the Chalice
test client swaps ``os.environ`` for each call.

The rules are pydantic-settings' (names are case-insensitive, ``AWS_REGION`` sets ``region``,
lists and maps are JSON, booleans are ``true``/``false``/``1``/``0``/``yes``/``no``/``on``/
``off``, unknown variables are ignored) and so are the bounds, but this module uses only the
standard library: every function builds its settings on its first event, and importing
pydantic-settings cost more than the rest of a cold start (docs/deploy.md, "Package size and
cold start").

``Settings(...)`` takes values as given (tests); :meth:`Settings.from_env` reads the
environment, as :func:`get_settings` does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

ENV_PREFIX = "SWITCHBOARD_"
# API Gateway carries at most 128 KB per WebSocket message; the frame adds the envelope.
_HARD_MAX_MESSAGE_BYTES = 120 * 1024
# Fields read from a variable other than SWITCHBOARD_<NAME>.
_ALIASES = {"region": "AWS_REGION"}


def _bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
             le: float | None = None) -> Any:
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


@dataclass
class Settings:
    channels_table: str = "switchboard-channels"
    messages_table: str = "switchboard-messages"
    connections_table: str = "switchboard-connections"
    region: str = "us-east-1"  # from AWS_REGION
    # Endpoint of DynamoDB; unset on AWS. `switchboard dev` points it at moto.
    dynamodb_endpoint: str | None = None
    # Management API base URL for posting to sockets. Unset on AWS: each connection stores
    # https://{domain}/{stage} from its $connect event. Set for a custom domain or locally.
    websocket_endpoint: str | None = None

    default_retention_s: int = _bounded(24 * 3600, ge=1, le=365 * 24 * 3600)
    # Per-namespace retention, JSON: SWITCHBOARD_NAMESPACE_RETENTION='{"runs": 3600}'.
    namespace_retention: dict[str, int] = field(default_factory=dict)

    max_message_bytes: int = _bounded(64 * 1024, ge=1, le=_HARD_MAX_MESSAGE_BYTES)
    max_frame_bytes: int = _bounded(128 * 1024, ge=1024)
    # Messages per publish request; stored in transactions of at most 100 items each.
    max_batch: int = _bounded(500, ge=1, le=10_000)
    max_subscriptions_per_connection: int = _bounded(100, ge=1)
    replay_page: int = _bounded(200, ge=1, le=1000)
    history_max_limit: int = _bounded(1000, ge=1)
    connection_ttl_s: int = _bounded(2 * 3600 + 600, ge=60)
    fanout_concurrency: int = _bounded(16, ge=1, le=256)
    send_attempts: int = _bounded(5, ge=1)
    send_backoff_ms: int = _bounded(50, ge=0)
    # How long an append may keep retrying a busy channel when the caller gives no deadline
    # (handlers pass the Lambda's remaining time); then `rate_limited` with a retry hint.
    append_budget_s: float = _bounded(10.0, gt=0, le=900)
    # How long a process trusts what it knows of a channel it appends to (metadata and tail).
    # Never a correctness risk: the log refuses a taken seq; only fewer reads.
    append_cache_s: float = _bounded(60.0, ge=0)
    # A retried publish without an id (its first answer was lost) is looked for among the
    # log's entries of the last `retry_window_s`, at most `retry_scan` of them.
    retry_window_s: float = _bounded(120.0, ge=0)
    retry_scan: int = _bounded(2000, ge=0)
    # Durable Streams live reads (bounded: API Gateway REST ends a request after 29 s).
    long_poll_timeout_s: float = _bounded(20.0, gt=0, le=25)
    # How long a caught-up SSE request waits for new data before it closes (the client
    # reconnects from the last control event).
    sse_hold_s: float = _bounded(1.0, ge=0, le=25)
    # How long every SSE response lasts at least (unless the stream closes or time is up):
    # clients take connections that end within a second for a buffering proxy.
    sse_min_s: float = _bounded(1.5, ge=0, le=25)
    # How long a subscribe may replay (when the caller gives no deadline) before it pauses
    # and tells the client where to continue.
    replay_budget_s: float = _bounded(20.0, gt=0, le=600)

    # -- authentication (docs/auth.md) --
    # Off only for local hacking (`switchboard dev --no-auth`); on everywhere else.
    auth_enabled: bool = True
    # Where API keys come from: a JSON document in this variable (dev and tests only), or the
    # id of a Secrets Manager secret, or the name of an SSM SecureString parameter.
    api_keys: str | None = None
    api_keys_secret_id: str | None = None
    api_keys_parameter: str | None = None
    api_keys_refresh_s: int = _bounded(300, ge=0)
    token_leeway_s: int = _bounded(30, ge=0, le=300)
    token_max_ttl_s: int = _bounded(24 * 3600, ge=60)
    # Browser origins allowed to open WebSockets; ["*"] allows any (the dev server's default).
    allowed_origins: list[str] = field(default_factory=list)
    max_request_bytes: int = _bounded(1024 * 1024, ge=1024)

    def __post_init__(self) -> None:
        """Convert and check every value (strings as the environment gives them are fine)."""
        problems = []
        for f in fields(self):
            try:
                value = _CONVERT[str(f.type)](getattr(self, f.name))
                _check_bounds(value, f.metadata)
                if f.name == "namespace_retention":
                    _check_retention(value)
            except (TypeError, ValueError) as error:
                problems.append(f"{_variable(f.name)}: {error}")
                continue
            setattr(self, f.name, value)
        if problems:
            raise ValueError("Invalid settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> Settings:
        """Settings from the environment (``os.environ`` unless given), then ``values``."""
        env = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
        found: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_variable(f.name).lower())
            if raw is None:
                continue
            if str(f.type) in _JSON_TYPES:
                try:
                    found[f.name] = json.loads(raw)
                except ValueError:
                    raise ValueError(
                        f"Invalid settings: {_variable(f.name)} is not valid JSON"
                    ) from None
            else:
                found[f.name] = raw
        return cls(**{**found, **values})

    def retention_for(self, namespace: str | None) -> int:
        if namespace is not None and namespace in self.namespace_retention:
            return self.namespace_retention[namespace]
        return self.default_retention_s


def _variable(name: str) -> str:
    return _ALIASES.get(name, ENV_PREFIX + name.upper())


# -- conversions (pydantic's lax mode, for the types above) ----------------------------------

_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?", re.ASCII)
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _to_optional_str(value: Any) -> str | None:
    return None if value is None else _to_str(value)


def _to_int(value: Any) -> int:
    if isinstance(value, int):  # bool included, as pydantic allows
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip().split(".")[0])
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def _to_int_map(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"expected a JSON object of integers, got {value!r}")
    return {k: _to_int(v) for k, v in value.items()}


def _to_str_list(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a JSON list of strings, got {value!r}")
    return [_to_str(v) for v in value]


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "str | None": _to_optional_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "dict[str, int]": _to_int_map,
    "list[str]": _to_str_list,
}
_JSON_TYPES = {"dict[str, int]", "list[str]"}


def _check_bounds(value: Any, bounds: Mapping[str, float | None]) -> None:
    ge, gt, le = bounds.get("ge"), bounds.get("gt"), bounds.get("le")
    # Written so that NaN fails every bound, as in pydantic.
    if ge is not None and not value >= ge:
        raise ValueError(f"must be >= {ge}, got {value}")
    if gt is not None and not value > gt:
        raise ValueError(f"must be > {gt}, got {value}")
    if le is not None and not value <= le:
        raise ValueError(f"must be <= {le}, got {value}")


def _check_retention(value: dict[str, int]) -> None:
    for namespace, seconds in value.items():
        if seconds < 1:
            raise ValueError(f"retention for namespace {namespace!r} must be >= 1 s")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
