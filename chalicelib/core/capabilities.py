"""Who may do what on which channel: capabilities and principals (pure, no I/O).

A capability maps channel-name patterns to operations, as in Ably and Centrifugo::

    {"runs:7f3a": ["subscribe", "publish"], "runs:*": ["history"], "*": ["subscribe"]}

Patterns: ``*`` (every channel), ``prefix*`` (every channel whose name starts with
``prefix``, e.g. ``runs:*``), or an exact channel name. Operations: ``subscribe``,
``publish``, ``history`` (reads over HTTP), ``admin`` (create, delete, retention),
``presence`` (enter, update and leave presence) and ``*``. A channel's presence log
(``<channel>@presence``) is governed by the channel's own grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ForbiddenError, InvalidRequestError, UnauthorizedError
from .names import validate_channel
from .presence import base_channel, is_presence_log

SUBSCRIBE = "subscribe"
PUBLISH = "publish"
HISTORY = "history"
ADMIN = "admin"
PRESENCE = "presence"  # enter, update and leave presence (core/presence.py)
OPERATIONS = (SUBSCRIBE, PUBLISH, HISTORY, ADMIN, PRESENCE)
MAX_GRANTS = 100


def _valid_pattern(pattern: object) -> bool:
    if not isinstance(pattern, str) or not pattern or len(pattern) > 256:
        return False
    if pattern == "*":
        return True
    body = pattern[:-1] if pattern.endswith("*") else pattern
    if "*" in body:
        return False
    if pattern.endswith("*"):
        # A prefix: validate it as a name once the trailing separator is completed.
        probe = body + "x" if body.endswith(":") or not body else body
        try:
            validate_channel(probe)
        except Exception:
            return False
        return True
    try:
        validate_channel(body)
    except Exception:
        return False
    return True


def _pattern_matches(pattern: str, channel: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return channel.startswith(pattern[:-1])
    return channel == pattern


def _pattern_within(inner: str, outer: str) -> bool:
    """Every channel ``inner`` matches is also matched by ``outer``."""
    if outer == "*":
        return True
    if outer.endswith("*"):
        return inner != "*" and inner.rstrip("*").startswith(outer[:-1])
    return inner == outer


@dataclass(frozen=True)
class Capabilities:
    grants: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def parse(cls, raw: object) -> Capabilities:
        """Validate a capability object; :class:`InvalidRequestError` says what is wrong."""
        example = '{"runs:*": ["subscribe", "history"]}'
        if not isinstance(raw, dict) or not raw or len(raw) > MAX_GRANTS:
            raise InvalidRequestError(
                f"'capabilities' must be an object of 1 to {MAX_GRANTS} channel patterns "
                f"mapped to operations, for example {example}."
            )
        grants = []
        for pattern, ops in raw.items():
            if not _valid_pattern(pattern):
                raise InvalidRequestError(
                    f"{pattern!r} is not a channel pattern: use '*', 'prefix*' or a channel "
                    "name.",
                    {"pattern": str(pattern)[:80]},
                )
            if (
                not isinstance(ops, list)
                or not ops
                or any(op not in (*OPERATIONS, "*") for op in ops)
            ):
                raise InvalidRequestError(
                    f"Operations for {pattern!r} must be a non-empty list of "
                    f"{', '.join(OPERATIONS)} or '*'.",
                    {"pattern": pattern},
                )
            grants.append((pattern, frozenset(OPERATIONS if "*" in ops else ops)))
        return cls(tuple(grants))

    @classmethod
    def everything(cls) -> Capabilities:
        return cls((("*", frozenset(OPERATIONS)),))

    def allows(self, channel: str, operation: str) -> bool:
        # A channel's presence log (``runs:1@presence``) is read with the channel's rights.
        channel = base_channel(channel)
        return any(
            operation in ops and _pattern_matches(pattern, channel) for pattern, ops in self.grants
        )

    def covers(self, other: Capabilities) -> bool:
        """True when ``other`` grants nothing that this does not (a token vs. its key)."""
        return all(
            any(_pattern_within(pattern, mine) and ops <= my_ops for mine, my_ops in self.grants)
            for pattern, ops in other.grants
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {
            pattern: ["*"] if ops == frozenset(OPERATIONS) else sorted(ops)
            for pattern, ops in self.grants
        }


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key (backend) or a token (client), or anyone when
    authentication is off."""

    kind: str  # "key" | "token" | "anonymous"
    client_id: str | None
    capabilities: Capabilities
    key_id: str | None = None
    expires_at: int | None = None  # epoch seconds, tokens only

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous", None, Capabilities.everything())

    @property
    def publisher(self) -> str | None:
        """The id recorded as ``publisher`` on messages this principal publishes."""
        if self.kind == "key":
            return f"key:{self.key_id}"
        return self.client_id

    @classmethod
    def unauthenticated(cls) -> Principal:
        """A connection with no valid credentials: every action is refused."""
        return cls("unauthenticated", None, Capabilities(()))

    def require(self, channel: str, operation: str, now_s: float) -> None:
        if self.kind == "unauthenticated":
            raise UnauthorizedError(
                "This connection is not authenticated: reconnect with ?token=<token>."
            )
        if self.expires_at is not None and now_s >= self.expires_at:
            raise UnauthorizedError(
                "Your token has expired; get a fresh one and reconnect (the SDKs do this "
                "through their auth callback).",
                {"expired_at": self.expires_at},
            )
        if not self.capabilities.allows(channel, operation):
            raise ForbiddenError(
                f"Your credentials do not allow {operation!r} on channel {channel!r}.",
                {"channel": channel, "operation": operation},
            )

    def may_create(self, channel: str) -> bool:
        """Whether an implicit creation of ``channel`` (a first publish or subscribe) is this
        principal's to make: it needs ``publish`` or ``admin`` there, never ``subscribe``
        alone (a reader must not create, and so configure, a channel). A presence log is
        the exception: only presence writes it and nobody configures it, so any subscriber
        of its channel may have it created."""
        if is_presence_log(channel):
            return True
        return self.capabilities.allows(channel, PUBLISH) or self.capabilities.allows(
            channel, ADMIN
        )

    def to_claims(self) -> dict[str, Any]:
        """Compact form carried in an authorizer context or a connection record."""
        return {
            "kind": self.kind,
            "client_id": self.client_id,
            "caps": self.capabilities.to_dict(),
            "key": self.key_id,
            "exp": self.expires_at,
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        return cls(
            kind=str(claims["kind"]),
            client_id=claims.get("client_id"),
            capabilities=Capabilities.parse(claims["caps"]),
            key_id=claims.get("key"),
            expires_at=int(claims["exp"]) if claims.get("exp") is not None else None,
        )


# An API key's secret signs its tokens (HS256): a short one can be guessed offline from any
# token. 32 characters of base64url is 192 bits; `secrets.token_urlsafe(32)` gives 43.
MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")


class InvalidKeyError(ValueError):
    """An API key in the key document cannot be used; the message says which and why (never
    its secret)."""


@dataclass(frozen=True)
class ApiKey:
    """A backend's credential: ``<id>:<secret>``. The secret also signs its tokens."""

    id: str
    secret: str
    capabilities: Capabilities
    revoked: bool = False

    @classmethod
    def from_dict(cls, raw: object) -> ApiKey:
        """A key of the key document; :class:`InvalidKeyError` for an id that a credential
        cannot name, an empty or short secret, or invalid capabilities."""
        if not isinstance(raw, dict):
            raise InvalidKeyError("Each entry of 'keys' must be an object with 'id' and 'secret'.")
        key_id = raw.get("id")
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise InvalidKeyError(
                f"Key id {str(key_id)[:70]!r} is not usable: ids are 1 to 64 characters of "
                "A-Z a-z 0-9 . _ ~ - (no ':', which separates the id from the secret)."
            )
        secret = raw.get("secret")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
            length = len(secret) if isinstance(secret, str) else 0
            raise InvalidKeyError(
                f"Key {key_id!r} is refused: its secret is {length} characters, and a secret "
                f"needs at least {MIN_SECRET_CHARS} random ones (it signs tokens). Generate "
                "one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\""
            )
        try:
            capabilities = Capabilities.parse(raw.get("capabilities", {"*": ["*"]}))
        except InvalidRequestError as error:
            raise InvalidKeyError(f"Key {key_id!r} is refused: {error.message}") from None
        revoked = raw.get("revoked", False)
        if not isinstance(revoked, bool):
            raise InvalidKeyError(f"Key {key_id!r} is refused: 'revoked' must be true or false.")
        return cls(id=key_id, secret=secret, capabilities=capabilities, revoked=revoked)
