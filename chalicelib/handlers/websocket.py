"""WebSocket route handlers: $connect, $default (every frame) and $disconnect."""

from __future__ import annotations

import contextlib
from typing import Any

from chalice.app import WebsocketEvent

from ..bootstrap import services
from ..core import frames
from ..core.capabilities import Principal
from ..core.errors import SwitchboardError, UnauthorizedError
from ..observability import logger
from ..ports import ConnectionGoneError, SendFailedError, SendThrottledError
from ..services.sessions import WsContext
from . import invocation, principals


def management_endpoint(event: WebsocketEvent, region: str, configured: str | None) -> str:
    """Where to post to this event's connections: the setting if given (the local gateway),
    else the API's own execute-api URL, built from its id and region. Not from the event's
    domain: behind a custom domain the base-path mapping replaces the stage, and posts to
    https://{custom domain}/{stage} fail."""
    if configured:
        return configured
    context = event.to_dict().get("requestContext") or {}
    api_id = context.get("apiId")
    if not api_id:
        return f"https://{event.domain_name}/{event.stage}"
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{event.stage}"


def _context(event: WebsocketEvent, principal: Principal) -> WsContext:
    svc = services()
    endpoint = management_endpoint(event, svc.settings.region, svc.settings.websocket_endpoint)
    received = (event.to_dict().get("requestContext") or {}).get("requestTimeEpoch")
    return WsContext(
        event.connection_id, endpoint, principal, invocation.deadline_ms(svc.sessions.clock),
        int(received) if isinstance(received, int | float) else None,
    )


def connect(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    raw = event.to_dict()
    try:
        principal = principals.connect_principal(
            raw.get("queryStringParameters"), raw.get("headers"), raw.get("requestContext", {})
        )
        services().sessions.connect(_context(event, principal))
        principals.remember(event.connection_id, principal)
    except SwitchboardError as error:
        logger.info("connection refused", extra={"code": error.code})
        principals.forget(event.connection_id)
        return {"statusCode": error.status}
    except Exception:
        logger.exception("connect failed")
        return {"statusCode": 500}
    return {"statusCode": 200}


def message(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    try:
        principal = principals.connection_principal(event)
    except UnauthorizedError as error:
        _refuse_revoked(event, error)
        return {"statusCode": 200}
    services().sessions.handle(_context(event, principal), event.body)
    return {"statusCode": 200}


def _refuse_revoked(event: WebsocketEvent, error: UnauthorizedError) -> None:
    """The key behind this socket was revoked: the frame is answered `unauthorized` (with its
    ref) and the connection's subscriptions end, so nothing more is delivered to it. The
    socket stays open, as for an expired token: the SDKs ask for a fresh token and reconnect
    (which fails while the key stays revoked)."""
    sessions = services().sessions
    ctx = _context(event, Principal.unauthenticated())
    logger.info("frame refused: revoked key")
    sessions.end_connection(event.connection_id)
    principals.forget(event.connection_id)
    with contextlib.suppress(ConnectionGoneError, SendFailedError, SendThrottledError):
        sessions.sender.send(
            ctx.endpoint, ctx.connection_id,
            frames.error_frame(error, frames.ref_of(event.body), None),
        )


def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    principals.forget(event.connection_id)
    try:
        services().sessions.end_connection(event.connection_id)
    except Exception:
        # $disconnect is best effort on AWS too; TTL and Gone-cleanup catch what is missed.
        logger.exception("disconnect cleanup failed")
    return {"statusCode": 200}
