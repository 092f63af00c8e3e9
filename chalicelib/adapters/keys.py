"""Where API keys come from: an environment variable (dev, tests), Secrets Manager or SSM.

The document is JSON::

    {"keys": [{"id": "k1", "secret": "<random>", "capabilities": {"*": ["*"]},
               "revoked": false}]}

On AWS it lives in Secrets Manager (or an SSM SecureString), never in the repository or in
.chalice/config.json; each Lambda container reads it once and again after ``refresh_s``, so a
revoked key stops working within minutes without a database read per request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.capabilities import ApiKey


def parse_keys(document: str) -> dict[str, ApiKey]:
    raw = json.loads(document)
    return {key.id: key for key in (ApiKey.from_dict(k) for k in raw.get("keys", []))}


class StaticKeyRing:
    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self._keys = keys

    @classmethod
    def from_json(cls, document: str) -> StaticKeyRing:
        return cls(parse_keys(document))

    def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)


class CachedKeyRing:
    """Loads the key document through ``fetch`` and keeps it for ``refresh_s`` seconds."""

    def __init__(self, fetch: Callable[[], str], refresh_s: float = 300) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._keys: dict[str, ApiKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, key_id: str) -> ApiKey | None:
        if time.monotonic() - self._loaded_at > self._refresh_s:
            with self._lock:
                if time.monotonic() - self._loaded_at > self._refresh_s:
                    self._keys = parse_keys(self._fetch())
                    self._loaded_at = time.monotonic()
        return self._keys.get(key_id)


def secrets_manager_fetch(client: Any, secret_id: str) -> Callable[[], str]:
    def fetch() -> str:
        return str(client.get_secret_value(SecretId=secret_id)["SecretString"])

    return fetch


def ssm_fetch(client: Any, name: str) -> Callable[[], str]:
    def fetch() -> str:
        return str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])

    return fetch
