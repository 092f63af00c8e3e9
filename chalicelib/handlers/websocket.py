"""WebSocket route handlers: $connect, $default (every frame) and $disconnect."""

from __future__ import annotations

from typing import Any

from chalice.app import WebsocketEvent

from ..bootstrap import services
from ..core.capabilities import Principal
from ..core.errors import SwitchboardError
from ..observability import logger
from ..services.sessions import WsContext
from . import principals


def _context(event: WebsocketEvent, principal: Principal) -> WsContext:
    svc = services()
    # On AWS the Management API lives at https://{domain}/{stage}; a setting overrides it
    # (custom domains, the local gateway).
    endpoint = svc.settings.websocket_endpoint or f"https://{event.domain_name}/{event.stage}"
    return WsContext(event.connection_id, endpoint, principal)


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
    principal = principals.connection_principal(event)
    services().sessions.handle(_context(event, principal), event.body)
    return {"statusCode": 200}


def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    principals.forget(event.connection_id)
    try:
        services().sessions.end_connection(event.connection_id)
    except Exception:
        # $disconnect is best effort on AWS too; TTL and Gone-cleanup catch what is missed.
        logger.exception("disconnect cleanup failed")
    return {"statusCode": 200}
