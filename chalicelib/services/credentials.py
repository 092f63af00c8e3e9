"""Authentication: API keys for backends, short-lived signed tokens for clients.

Tokens are JWTs (PyJWT), HS256, signed with the issuing key's secret and naming it in the
``kid`` header, so any Lambda verifies them with no database read: signature, expiry (with a
little clock skew), issuer, audience, and that the claimed capabilities stay within the
key's. ``alg: none`` and every other algorithm are refused; a revoked or unknown key
invalidates its tokens. A token is at most ``MAX_TOKEN_CHARS`` long, so the WebSocket URL
that carries it stays under API Gateway's 4,096 characters.

PyJWT is imported when a token is first verified or issued, not with this module: requests
authenticated with an API key, and functions that never see a token, do not pay for it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from ..core.capabilities import ApiKey, Capabilities, Principal
from ..core.errors import (
    ForbiddenError,
    InvalidRequestError,
    TooLargeError,
    UnauthorizedError,
)
from ..ports import Clock, KeyRing

ISSUER = "switchboard"
AUDIENCE = "switchboard"  # the default of SWITCHBOARD_TOKEN_AUDIENCE
ALGORITHM = "HS256"
MAX_CLIENT_ID = 128
# API Gateway refuses a WebSocket URL over 4,096 characters, and the token travels in it
# (`?token=`): this leaves ~600 for the scheme, host, stage and anything else in the URL.
MAX_TOKEN_CHARS = 3500
WS_URL_MAX_CHARS = 4096


def new_api_key(key_id: str, capabilities: dict[str, list[str]] | None = None) -> ApiKey:
    """A fresh key with a 256-bit secret (what `switchboard dev` and infra generate)."""
    return ApiKey(
        key_id, secrets.token_urlsafe(32), Capabilities.parse(capabilities or {"*": ["*"]})
    )


class Authenticator:
    def __init__(
        self, keys: KeyRing, clock: Clock, leeway_s: int = 30, max_ttl_s: int = 86400,
        audience: str = AUDIENCE,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.leeway_s = leeway_s
        self.max_ttl_s = max_ttl_s
        self.audience = audience

    # -- verifying -------------------------------------------------------------------------

    def from_bearer(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization: Bearer <token | key_id:secret>`` header."""
        if not authorization:
            raise UnauthorizedError(
                "Credentials are required: send 'Authorization: Bearer <token>' (or an API "
                "key as 'Bearer <key id>:<secret>' from a backend)."
            )
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise UnauthorizedError("Use 'Authorization: Bearer <token>'.")
        return self.from_credential(credential.strip())

    def from_credential(self, credential: str) -> Principal:
        if ":" in credential and credential.count(".") != 2:
            return self.from_api_key(credential)
        return self.from_token(credential)

    def from_api_key(self, credential: str) -> Principal:
        key_id, _, secret = credential.partition(":")
        key = self.keys.get(key_id)
        # Compare even when the key is unknown, so timing does not tell which ids exist.
        expected = key.secret if key is not None else secrets.token_urlsafe(32)
        if not hmac.compare_digest(expected.encode(), secret.encode()) or key is None:
            raise UnauthorizedError("Unknown API key or wrong secret.")
        if key.revoked:
            raise UnauthorizedError("This API key has been revoked.")
        return Principal("key", None, key.capabilities, key_id=key.id)

    def check_key(self, principal: Principal) -> None:
        """:class:`UnauthorizedError` if the key behind ``principal`` (an API key, or the key
        that issued its token) is unknown or revoked now: what a socket's frames re-check,
        through the key ring's cache (at most a minute old)."""
        if principal.kind not in ("key", "token"):
            return
        key = self.keys.get(principal.key_id) if principal.key_id is not None else None
        if key is None or key.revoked:
            raise UnauthorizedError(
                "The API key behind this connection's token has been revoked (or removed): "
                "get a token issued with a valid key and reconnect."
            )
        if not key.capabilities.covers(principal.capabilities):
            raise UnauthorizedError(
                "The API key behind this connection's token no longer allows what the token "
                "claims: get a new token and reconnect."
            )

    def from_token(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise UnauthorizedError(
                f"The token is {len(token)} characters; tokens are at most {MAX_TOKEN_CHARS}. "
                "Request a new one."
            )
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("The token is malformed; request a new one.") from None
        key_id = header.get("kid")
        key = self.keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise UnauthorizedError("The token was not issued by a known key.")
        if key.revoked:
            raise UnauthorizedError("The key that issued this token has been revoked.")
        try:
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],  # never "none", never what the header asks for
                issuer=ISSUER,
                audience=self.audience,
                # Times are checked below against our clock (the one tests control).
                options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise UnauthorizedError(
                "The token is not for this service (its audience differs); request a token "
                "from this deployment's POST /v1/tokens."
            ) from None
        except jwt.PyJWTError:
            raise UnauthorizedError("The token is invalid; request a new one.") from None
        now = self.clock.now_ms() / 1000
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise UnauthorizedError("The token's times are invalid; request a new one.")
        if now >= exp + self.leeway_s:
            raise UnauthorizedError("The token has expired; request a new one.")
        if now < nbf - self.leeway_s:
            raise UnauthorizedError("The token is not valid yet (check the clocks).")
        try:
            capabilities = Capabilities.parse(claims.get("caps"))
        except InvalidRequestError:
            raise UnauthorizedError("The token's capabilities are invalid.") from None
        if not key.capabilities.covers(capabilities) or not isinstance(claims["sub"], str):
            raise UnauthorizedError("The token claims more than its key allows.")
        return Principal(
            "token", claims["sub"], capabilities, key_id=key.id, expires_at=int(claims["exp"])
        )

    # -- issuing ---------------------------------------------------------------------------

    def issue(
        self,
        issuer: Principal,
        client_id: object,
        capabilities: object,
        ttl_s: object = 3600,
    ) -> dict[str, Any]:
        """A token for ``client_id``; only an API key may issue, and never beyond its rights."""
        if issuer.kind != "key" or issuer.key_id is None:
            raise UnauthorizedError("Tokens are issued with an API key, not with a token.")
        key = self.keys.get(issuer.key_id)
        if key is None or key.revoked:
            raise UnauthorizedError("The issuing key is unknown or revoked.")
        if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
            raise InvalidRequestError(
                f"'client_id' must be a string of 1 to {MAX_CLIENT_ID} characters: who the "
                "token is for (it becomes 'publisher' on their messages)."
            )
        if (
            not isinstance(ttl_s, int)
            or isinstance(ttl_s, bool)
            or not 1 <= ttl_s <= self.max_ttl_s
        ):
            raise InvalidRequestError(f"'ttl' must be 1 to {self.max_ttl_s} seconds.")
        caps = Capabilities.parse(capabilities)
        if not key.capabilities.covers(caps):
            raise ForbiddenError(
                "The requested capabilities exceed the issuing key's.",
                {"key_capabilities": key.capabilities.to_dict()},
            )
        now = self.clock.now_ms() // 1000
        claims = {
            "iss": ISSUER, "aud": self.audience, "sub": client_id, "iat": now, "nbf": now,
            "exp": now + ttl_s, "caps": caps.to_dict(),
        }
        import jwt

        token = jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.id})
        if len(token) > MAX_TOKEN_CHARS:
            raise TooLargeError(
                f"This token would be {len(token)} characters; a token is at most "
                f"{MAX_TOKEN_CHARS} so that a WebSocket URL carrying it stays under API "
                f"Gateway's {WS_URL_MAX_CHARS}. Grant fewer or broader patterns (runs:* "
                "instead of one entry per channel), or a shorter client_id.",
                {"size": len(token), "max_chars": MAX_TOKEN_CHARS},
            )
        return {"token": token, "client_id": client_id, "expires": (now + ttl_s) * 1000,
                "capabilities": caps.to_dict()}
