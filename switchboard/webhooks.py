"""Verify Switchboard's (Durable Streams) webhook signatures.

Every wake a webhook subscription delivers is a ``POST`` with the header::

    Webhook-Signature: t=<unix seconds>,kid=<key id>,ed25519=<base64url signature>

signed with Ed25519 over ``<t>.`` followed by the raw body. The public keys are a JWK set at
``{base}/v1/stream/__ds/jwks.json`` (the subscription's ``webhook.signing.jwks_url``).
A receiver checks the key id against that set, the signature, and that ``t`` is within five
minutes of its own clock (a replayed request is refused), *before* parsing the body.

Examples:
    >>> verifier = WebhookVerifier("http://127.0.0.1:8765/v1/stream/__ds/jwks.json")
    >>> wake = verifier.verify(raw_body, request.headers["webhook-signature"])  # doctest: +SKIP
    >>> wake["streams"][0]["path"]  # doctest: +SKIP
    'runs/7f3a'

Needs ``cryptography`` (``pip install 'switchboard[webhooks]'``).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["TOLERANCE_S", "WebhookVerificationError", "WebhookVerifier", "verify_signature"]

TOLERANCE_S = 300
_HEADER = re.compile(r"t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)\Z")


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh webhook from this server: answer 401."""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key(jwk: Mapping[str, Any]) -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError(
            "switchboard.webhooks needs the 'cryptography' package: "
            "pip install 'switchboard[webhooks]'"
        ) from None
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "x" not in jwk:
        raise WebhookVerificationError(f"key {jwk.get('kid')!r} is not an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(_unb64(str(jwk["x"])))


def parse_header(header: str | None) -> tuple[int, str, bytes]:
    match = _HEADER.match((header or "").strip())
    if not match:
        raise WebhookVerificationError(
            "missing or malformed Webhook-Signature (t=<seconds>,kid=<id>,ed25519=<sig>)")
    try:
        return int(match.group(1)), match.group(2), _unb64(match.group(3))
    except ValueError:
        raise WebhookVerificationError("the signature is not base64url") from None


def verify_signature(
    body: bytes, header: str | None, jwks: Mapping[str, Any], now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> dict[str, Any]:
    """Check ``header`` against ``body`` with the keys of ``jwks``; return the parsed body.

    Raises :class:`WebhookVerificationError` for an unknown key id, a bad signature, or a
    timestamp more than ``tolerance_s`` from ``now``.
    """
    from cryptography.exceptions import InvalidSignature

    timestamp, kid, signature = parse_header(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"the signature's timestamp is {abs(now - timestamp):.0f} s away from now "
            f"(at most {tolerance_s} s): a replay, or a clock far off")
    key = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
    if key is None:
        raise WebhookVerificationError(f"unknown key id {kid!r}")
    try:
        _public_key(key).verify(signature, f"{timestamp}.".encode() + body)
    except InvalidSignature:
        raise WebhookVerificationError("the signature does not match the body") from None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise WebhookVerificationError("the body is not a JSON object")
    return parsed


class WebhookVerifier:
    """:func:`verify_signature` with the JWKS fetched from ``jwks_url`` and cached; an unknown
    key id fetches it again (at most once a minute), so a key rotation needs no restart."""

    def __init__(
        self, jwks_url: str | None = None, *, jwks: Mapping[str, Any] | None = None,
        tolerance_s: int = TOLERANCE_S, timeout_s: float = 10.0,
    ) -> None:
        if jwks_url is None and jwks is None:
            raise ValueError("give the subscription's jwks_url, or a JWK set")
        self.jwks_url = jwks_url
        self.tolerance_s = tolerance_s
        self.timeout_s = timeout_s
        self._jwks: Mapping[str, Any] | None = jwks
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def _known(self, kid: str) -> bool:
        return self._jwks is not None and any(
            k.get("kid") == kid for k in self._jwks.get("keys", []))

    def _store(self, document: Any) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise WebhookVerificationError(f"{self.jwks_url} did not answer a JWK set")
        self._jwks = document
        self._fetched = time.monotonic()

    def _stale(self, kid: str) -> bool:
        return self.jwks_url is not None and not self._known(kid) and (
            time.monotonic() - self._fetched > 60)

    def verify(self, body: bytes, header: str | None, now: float | None = None) -> dict[str, Any]:
        _, kid, _ = parse_header(header)
        if self._stale(kid):
            with self._lock:
                if self._stale(kid):
                    assert self.jwks_url is not None
                    response = httpx.get(self.jwks_url, timeout=self.timeout_s)
                    response.raise_for_status()
                    self._store(response.json())
        return verify_signature(body, header, self._jwks or {}, now, self.tolerance_s)

    async def averify(
        self, body: bytes, header: str | None, now: float | None = None
    ) -> dict[str, Any]:
        """:meth:`verify` for asyncio code (the JWKS is fetched without blocking)."""
        _, kid, _ = parse_header(header)
        if self._stale(kid):
            assert self.jwks_url is not None
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(self.jwks_url)
            response.raise_for_status()
            self._store(response.json())
        return verify_signature(body, header, self._jwks or {}, now, self.tolerance_s)
