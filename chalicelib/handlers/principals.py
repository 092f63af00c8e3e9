"""Resolve who is calling, for HTTP requests and WebSocket events.

HTTP: ``Authorization: Bearer <token | key_id:secret>`` on every request.
WebSocket: the token travels in the ``token`` query parameter of the upgrade (browsers cannot
set headers there) and is verified once, at ``$connect``. Every later frame is authorized
against the principal from then, with no database read: on AWS the ``$connect`` authorizer
(``ws_authorizer``) hands its context to every event of the connection; where no authorizer
is configured, the claims stored on the connection record are read once per container and
kept briefly in memory. Every frame also re-checks that the key behind the principal is
still valid (the key ring's cache, at most a minute old): a revoked key's sockets get
``unauthorized`` for every frame, and their subscriptions end.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

from chalice.app import Request, WebsocketEvent

from ..bootstrap import Services, services
from ..core.capabilities import Principal
from ..core.errors import ForbiddenError, SwitchboardError, UnauthorizedError
from ..observability import logger

_CACHE_SIZE = 10_000
_CACHE_TTL_S = 60.0
_cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
_cache_lock = threading.Lock()


def http_principal(
    request: Request, channel: str | None = None, operation: str | None = None
) -> Principal:
    svc = services()
    if svc.auth is None:
        return Principal.anonymous()
    principal = svc.auth.from_bearer(request.headers.get("authorization"))
    if channel is not None and operation is not None:
        principal.require(channel, operation, svc.channels.clock.now_ms() / 1000)
    return principal


def _authorizer_claims(request_context: dict[str, Any]) -> dict[str, Any] | None:
    raw = (request_context.get("authorizer") or {}).get("claims")
    return json.loads(raw) if isinstance(raw, str) else None


def _check_origin(svc: Services, headers: dict[str, str]) -> None:
    allowed = svc.settings.allowed_origins
    origin = next((v for k, v in headers.items() if k.lower() == "origin"), None)
    if origin is not None and "*" not in allowed and origin not in allowed:
        raise ForbiddenError(f"Origin {origin} may not open connections here.")


def connect_principal(
    query: dict[str, str] | None, headers: dict[str, str] | None,
    request_context: dict[str, Any],
) -> Principal:
    """The principal of a new connection, or UnauthorizedError / ForbiddenError."""
    svc = services()
    _check_origin(svc, headers or {})
    if svc.auth is None:
        return Principal.anonymous()
    claims = _authorizer_claims(request_context)
    if claims is not None:
        return Principal.from_claims(claims)
    token = (query or {}).get("token")
    if not token:
        raise UnauthorizedError("Connect with ?token=<token> (issued by POST /v1/tokens).")
    return svc.auth.from_token(token)


def connection_principal(event: WebsocketEvent) -> Principal:
    """The principal of an existing connection, for authorizing one of its frames;
    :class:`UnauthorizedError` if the key behind it was revoked since it connected."""
    svc = services()
    if svc.auth is None:
        return Principal.anonymous()
    principal = _frame_principal(svc, event)
    svc.auth.check_key(principal)
    return principal


def _frame_principal(svc: Services, event: WebsocketEvent) -> Principal:
    claims = _authorizer_claims(event.to_dict().get("requestContext", {}))
    if claims is not None:
        return Principal.from_claims(claims)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(event.connection_id)
        if hit is not None and now - hit[0] < _CACHE_TTL_S:
            _cache.move_to_end(event.connection_id)
            return hit[1]
    connection = svc.sessions.subscriptions.get_connection(event.connection_id)
    principal = (
        Principal.from_claims(json.loads(connection.claims))
        if connection is not None and connection.claims
        else Principal.unauthenticated()
    )
    remember(event.connection_id, principal)
    with _cache_lock:
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return principal


def remember(connection_id: str, principal: Principal) -> None:
    with _cache_lock:
        _cache[connection_id] = (time.monotonic(), principal)


def forget(connection_id: str) -> None:
    with _cache_lock:
        _cache.pop(connection_id, None)


def authorize_connect(event: dict[str, Any]) -> dict[str, Any]:
    """API Gateway REQUEST authorizer for the WebSocket ``$connect`` route.

    Allow with the principal's claims as context (API Gateway passes it to every event of
    the connection), or raise ``Unauthorized`` (API Gateway answers 401).
    """
    try:
        principal = connect_principal(
            event.get("queryStringParameters"), event.get("headers"),
            event.get("requestContext") or {},
        )
    except SwitchboardError as error:
        logger.info("connection refused", extra={"code": error.code})
        raise Exception("Unauthorized") from None  # API Gateway's contract for a 401
    return {
        "principalId": principal.publisher or "anonymous",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow",
                 "Resource": event.get("methodArn", "*")}
            ],
        },
        "context": {"claims": json.dumps(principal.to_claims(), separators=(",", ":"))},
    }
