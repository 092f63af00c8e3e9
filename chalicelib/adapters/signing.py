"""The webhook signing keys (Ed25519) and the wake-token keys, from one secret.

The secret is a JSON document::

    {"seed": "<random string>",
     "previous": [{"seed": "<older random string>", "retire_after": <epoch seconds>}]}

Every key is derived from its seed with HKDF-SHA256, so a random string that CloudFormation
generates (infra/stack.py, ``GenerateSecretString``) is all a deployment needs, and every
Lambda container derives the same keys. ``seed`` signs; ``previous`` keys stay published in
the JWKS (and keep verifying wake tokens) until ``retire_after``: rotate by moving the
current seed there with ``retire_after`` = now + 5 minutes (the receivers' replay window) +
the longest retry, then putting a new seed (docs/durable-streams.md, "Signing keys").

The ``kid`` is ``ds_`` + the RFC 7638 thumbprint of the public key: stable, and the same in
every container.

Signing is PyNaCl's (libsodium). Not ``cryptography``: PyJWT imports most of it whenever it is
installed, which put ~75 ms on the cold start of every function that checks a token
(docs/deploy.md); the Lambda zip therefore carries PyNaCl and no ``cryptography``. HKDF is
RFC 5869 over the standard library's HMAC (PyNaCl has none), checked against the RFC's test
vectors and against ``cryptography``'s HKDF in tests/unit/test_signing.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from ..core.wakes import _b64

_SIGNING_INFO = b"switchboard webhook signing key v1"
_TOKEN_INFO = b"switchboard wake token key v1"


def hkdf_sha256(key_material: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt`` (none: 32 zero bytes), then expand."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 derives at most 8,160 bytes")
    prk = hmac.new(salt or bytes(32), key_material, hashlib.sha256).digest()
    output, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
    return output[:length]


def _derive(seed: str, info: bytes) -> bytes:
    return hkdf_sha256(seed.encode("utf-8"), info)


@dataclass(frozen=True)
class _Key:
    kid: str
    private: SigningKey
    jwk: dict[str, str]
    token_key: bytes
    retire_after: int | None


def _key(seed: str, retire_after: int | None) -> _Key:
    if len(seed) < 32:
        raise ValueError("a signing seed must be at least 32 characters of randomness")
    private = SigningKey(_derive(seed, _SIGNING_INFO))  # the 32-byte Ed25519 seed
    x = _b64(bytes(private.verify_key))
    thumbprint = _b64(hashlib.sha256(
        json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":")).encode()
    ).digest())
    kid = f"ds_{thumbprint}"
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}
    return _Key(kid, private, jwk, _derive(seed, _TOKEN_INFO), retire_after)


class Ed25519Keys:
    """SigningKeys from a parsed secret document."""

    def __init__(self, document: dict[str, Any], now_s: Callable[[], float] = time.time) -> None:
        seed = document.get("seed")
        if not isinstance(seed, str):
            raise ValueError("the signing secret has no 'seed'")
        self._active = _key(seed, None)
        self._previous = [_key(str(p["seed"]), int(p["retire_after"]))
                          for p in document.get("previous", [])]
        self._now_s = now_s

    @classmethod
    def from_json(cls, text: str) -> Ed25519Keys:
        return cls(json.loads(text))

    def _live(self) -> list[_Key]:
        now = self._now_s()
        return [self._active, *(k for k in self._previous
                                if k.retire_after is None or k.retire_after > now)]

    def sign(self, message: bytes) -> tuple[str, bytes]:
        return self._active.kid, self._active.private.sign(message).signature

    def active_kid(self) -> str:
        return self._active.kid

    def jwks(self) -> dict[str, object]:
        return {"keys": [dict(k.jwk) for k in self._live()]}

    def token_keys(self) -> list[bytes]:
        return [k.token_key for k in self._live()]


class CachedSigningKeys:
    """SigningKeys read through ``fetch`` (Secrets Manager) and kept ``refresh_s`` seconds."""

    def __init__(self, fetch: Callable[[], str], refresh_s: float = 300) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._keys: Ed25519Keys | None = None
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _current(self) -> Ed25519Keys:
        if self._keys is None or time.monotonic() - self._loaded_at > self._refresh_s:
            with self._lock:
                if self._keys is None or time.monotonic() - self._loaded_at > self._refresh_s:
                    self._keys = Ed25519Keys.from_json(self._fetch())
                    self._loaded_at = time.monotonic()
        return self._keys

    def sign(self, message: bytes) -> tuple[str, bytes]:
        return self._current().sign(message)

    def active_kid(self) -> str:
        return self._current().active_kid()

    def jwks(self) -> dict[str, object]:
        return self._current().jwks()

    def token_keys(self) -> list[bytes]:
        return self._current().token_keys()
