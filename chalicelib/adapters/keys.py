"""Where API keys come from: an environment variable (dev, tests), Secrets Manager or SSM.

The document is JSON::

    {"keys": [{"id": "k1", "secret": "<random>", "capabilities": {"*": ["*"]},
               "revoked": false}]}

On AWS it lives in Secrets Manager (or an SSM SecureString), never in the repository or in
.chalice/config.json; each Lambda container reads it once and again after ``refresh_s`` (at
most a minute), so a revoked key stops working within a minute — for requests and for the
frames of sockets it already opened — without a database read per request.

Keys are checked when they load (core/capabilities.py ``ApiKey.from_dict``): an id a
credential cannot name, an empty or short secret (it signs tokens) or invalid capabilities
refuse the key. A document given in the environment (dev, tests) must be entirely valid: the
process refuses to start with it. A document fetched on AWS loses only its bad keys (each
logged, never with its secret), so one bad edit cannot lock every backend out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.capabilities import ApiKey, InvalidKeyError
from ..observability import logger


class KeyDocumentError(ValueError):
    """The key document cannot be used as it is; the message lists every problem."""


@dataclass(frozen=True)
class KeyDocument:
    keys: dict[str, ApiKey]
    problems: tuple[str, ...]  # one line per refused key (or the document's own problem)


def read_keys(document: str) -> KeyDocument:
    """The usable keys of a key document, and why any others were refused."""
    try:
        raw = json.loads(document)
    except ValueError:
        return KeyDocument({}, ("The API keys document is not valid JSON.",))
    entries = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        return KeyDocument({}, ('The API keys document must be {"keys": [...]}.',))
    keys: dict[str, ApiKey] = {}
    twice: set[str] = set()
    problems: list[str] = []
    for entry in entries:
        try:
            key = ApiKey.from_dict(entry)
        except InvalidKeyError as error:
            problems.append(str(error))
            continue
        if key.id in keys:
            twice.add(key.id)
        keys[key.id] = key
    for key_id in sorted(twice):
        # Two entries under one id: which one is meant is unknowable; refuse both.
        problems.append(f"Key {key_id!r} is listed more than once: give each key its own id.")
        del keys[key_id]
    return KeyDocument(keys, tuple(problems))


def parse_keys(document: str) -> dict[str, ApiKey]:
    """Every key of the document; :class:`KeyDocumentError` if any is refused."""
    loaded = read_keys(document)
    if loaded.problems:
        raise KeyDocumentError(" ".join(loaded.problems))
    return loaded.keys


class StaticKeyRing:
    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self._keys = keys

    @classmethod
    def from_json(cls, document: str) -> StaticKeyRing:
        return cls(parse_keys(document))

    def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)


class CachedKeyRing:
    """Loads the key document through ``fetch`` and keeps it for ``refresh_s`` seconds.

    Bad keys are dropped and logged. Whatever the document holds replaces what was loaded
    before, even when nothing in it is usable: a broken edit locks backends out (loudly, in
    the logs and the 401 rate) rather than leaving a key the edit removed working."""

    def __init__(
        self, fetch: Callable[[], str], refresh_s: float = 60,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._monotonic = monotonic
        self._keys: dict[str, ApiKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, key_id: str) -> ApiKey | None:
        if self._monotonic() - self._loaded_at > self._refresh_s:
            with self._lock:
                if self._monotonic() - self._loaded_at > self._refresh_s:
                    self._load()
        return self._keys.get(key_id)

    def _load(self) -> None:
        loaded = read_keys(self._fetch())
        for problem in loaded.problems:
            logger.error("API key refused", extra={"problem": problem})
        self._keys = loaded.keys
        self._loaded_at = self._monotonic()


def secrets_manager_fetch(client: object, secret_id: str) -> Callable[[], str]:
    def fetch() -> str:
        return str(client.get_secret_value(SecretId=secret_id)["SecretString"])  # type: ignore[attr-defined]

    return fetch


def ssm_fetch(client: object, name: str) -> Callable[[], str]:
    def fetch() -> str:
        return str(
            client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]  # type: ignore[attr-defined]
        )

    return fetch
