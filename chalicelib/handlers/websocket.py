"""WebSocket route handlers: $connect, $default (every frame) and $disconnect."""

from __future__ import annotations

from typing import Any

from chalice.app import WebsocketEvent

from ..bootstrap import services
from ..core.auth import Principal
from ..core.errors import SwitchboardError
from ..observability import flush_metrics, logger, service_metrics
from ..services import WsContext
from . import authn


def _context(event: WebsocketEvent, principal: Principal) -> WsContext:
    svc = services(service_metrics)
    # On AWS the Management API lives at https://{domain}/{stage}; a setting overrides it
    # (custom domains, the local gateway).
    endpoint = svc.settings.websocket_endpoint or f"https://{event.domain_name}/{event.stage}"
    return WsContext(event.connection_id, endpoint, principal)


def connect(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    raw = event.to_dict()
    try:
        principal = authn.connect_principal(
            raw.get("queryStringParameters"), raw.get("headers"), raw.get("requestContext", {})
        )
        services(service_metrics).sessions.connect(_context(event, principal))
        authn.remember(event.connection_id, principal)
    except SwitchboardError as error:
        logger.info("connection refused", extra={"code": error.code})
        authn.forget(event.connection_id)
        return {"statusCode": error.status}
    except Exception:
        logger.exception("connect failed")
        return {"statusCode": 500}
    finally:
        flush_metrics()
    return {"statusCode": 200}


def message(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    try:
        principal = authn.connection_principal(event)
        services(service_metrics).sessions.handle(_context(event, principal), event.body)
    finally:
        flush_metrics()
    return {"statusCode": 200}


def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    logger.thread_safe_append_keys(connection_id=event.connection_id)
    authn.forget(event.connection_id)
    try:
        services(service_metrics).sessions.disconnect(event.connection_id)
    except Exception:
        # $disconnect is best effort on AWS too; TTL and Gone-cleanup catch what is missed.
        logger.exception("disconnect cleanup failed")
    finally:
        flush_metrics()
    return {"statusCode": 200}
