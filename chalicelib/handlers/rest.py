"""The /v1 JSON API: health, tokens, channel metadata, history and publish."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from chalice.app import Request, Response

from .. import __version__
from ..bootstrap import services
from ..core.capabilities import ADMIN, HISTORY, PRESENCE, PUBLISH, SUBSCRIBE
from ..core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    UnauthorizedError,
)
from ..core.messages import NewMessage, PublishResult, validate_id
from ..core.offsets import parse_start
from ..core.presence import is_presence_log, validate_instance
from ..services.appends import AppendRequest
from . import invocation
from .http import (
    handles_errors,
    int_param,
    json_response,
    parse_json,
    path_channel,
    request_body,
)
from .principals import http_principal


def _body(request: Request) -> bytes | None:
    return request_body(request, services().settings.max_request_bytes) or None


@handles_errors
def no_such_route(request: Request) -> Response:
    path = str((request.context or {}).get("path") or "")
    hint = ""
    if path.startswith("/v1/channels/"):
        hint = " Channel names hold no '/': segments are separated by ':' (runs:7f3a)."
    raise NotFoundError(
        f"No such route: {request.method} {path[:200]}.{hint} The API is described at "
        "GET /v1/openapi.json.",
        {"path": path[:200]},
    )


@handles_errors
def health() -> Response:
    return json_response({"status": "ok", "service": "switchboard", "version": __version__})


@handles_errors
def openapi() -> Response:
    from ..openapi import document

    return json_response(document(), headers={"Cache-Control": "public, max-age=300"})


@handles_errors
def issue_token(request: Request) -> Response:
    """``POST /v1/tokens`` with an API key: a short-lived token for one client."""
    svc = services()
    if svc.auth is None:
        raise UnauthorizedError(
            "Authentication is off on this server (switchboard dev --no-auth): no tokens "
            "are needed or issued."
        )
    issuer = http_principal(request)
    body = parse_json(_body(request))
    if not isinstance(body, dict) or set(body) - {"client_id", "capabilities", "ttl"}:
        raise InvalidRequestError(
            'The body is {"client_id": "...", "capabilities": {"runs:*": ["subscribe"]}, '
            '"ttl": seconds}.'
        )
    issued = svc.auth.issue(
        issuer, body.get("client_id"), body.get("capabilities"), body.get("ttl", 3600)
    )
    return json_response(issued, 201)


@handles_errors
def get_channel(request: Request, channel: str) -> Response:
    channel = path_channel(channel)
    http_principal(request, channel, HISTORY)
    return json_response(services().channels.info(channel))


@handles_errors
def put_channel(request: Request, channel: str) -> Response:
    """Create a channel with settings (``{"retention": seconds}``); idempotent."""
    channel = path_channel(channel)
    http_principal(request, channel, ADMIN)
    if is_presence_log(channel):
        # As on /v1/stream: presence creates its log, with the defaults; nobody configures it.
        raise ForbiddenError(
            f"{channel!r} is a presence log: presence creates it and writes it (enter, "
            "update, leave presence); read it with GET.",
            {"channel": channel},
        )
    raw = _body(request)
    body = parse_json(raw) if raw else {}
    if not isinstance(body, dict) or set(body) - {"retention"}:
        raise InvalidRequestError('The body must be an object with optional "retention" (seconds).')
    retention = body.get("retention")
    if retention is not None and (
        not isinstance(retention, int) or isinstance(retention, bool) or retention < 1
    ):
        raise InvalidRequestError("'retention' must be a positive number of seconds.")
    channels = services().channels
    meta, created = channels.create(channel, retention_s=retention)
    if not created and retention is not None and meta.retention_s != retention:
        raise ConflictError(
            f"Channel {channel!r} exists with retention {meta.retention_s} s.",
            {"retention": meta.retention_s},
        )
    return json_response(meta.to_dict(), 201 if created else 200)


@handles_errors
def delete_channel(request: Request, channel: str) -> Response:
    channel = path_channel(channel)
    http_principal(request, channel, ADMIN)
    services().channels.delete(channel)
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})


@handles_errors
def get_messages(request: Request, channel: str) -> Response:
    channel = path_channel(channel)
    http_principal(request, channel, HISTORY)
    params: Mapping[str, str] = request.query_params or {}
    svc = services()
    limit = int_param(params.get("limit"), "limit", 100, 1, svc.settings.history_max_limit)
    result = svc.channels.read(channel, parse_start(params.get("from"), default="-1"), limit)
    return json_response(
        {
            "messages": [m.to_dict() for m in result.messages],
            "next": result.next_offset,
            "up_to_date": result.up_to_date,
        }
    )


@handles_errors
def post_messages(request: Request, channel: str) -> Response:
    channel = path_channel(channel)
    principal = http_principal(request, channel, PUBLISH)
    body = parse_json(_body(request))
    svc = services()
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidRequestError("The list of messages is empty; send at least one.")
    messages = [_new_message(svc.channels.encode, item) for item in items]
    retry = request.headers.get("x-switchboard-retry", "").lower() == "true"
    outcome = svc.appender.append(
        AppendRequest(
            channel, messages, implicit_create=True, publisher=principal.publisher, retry=retry
        ),
        invocation.deadline_ms(svc.channels.clock),
    )
    results = outcome.results
    acks = [_ack(r) for r in results]
    status = 200 if all(r.duplicate for r in results) else 201
    return json_response(acks if isinstance(body, list) else acks[0], status)


def _new_message(encode: Any, item: Any) -> NewMessage:
    if not isinstance(item, dict) or "data" not in item or set(item) - {"data", "id", "token"}:
        raise InvalidRequestError(
            'Each message is an object {"data": <any JSON>, "id": "<optional idempotency key>"}'
            ' (or, without an id, an optional "token" that a retry sent with '
            "X-Switchboard-Retry: true can be recognised by)."
        )
    return NewMessage(
        encode(item["data"]),
        validate_id(item.get("id")),
        token=validate_id(item.get("token"), "token"),
    )


def _ack(result: PublishResult) -> dict[str, Any]:
    return {
        "channel": result.channel,
        "seq": result.seq,
        "offset": result.offset,
        "duplicate": result.duplicate,
    }


# -- presence ---------------------------------------------------------------------------------


@handles_errors
def get_presence(request: Request, channel: str) -> Response:
    channel = path_channel(channel)
    principal = http_principal(request)
    # Who is here is what a subscriber sees anyway (its `members` snapshot): either right.
    if not principal.capabilities.allows(channel, SUBSCRIBE):
        principal.require(channel, HISTORY, services().channels.clock.now_ms() / 1000)
    members = services().presence.members(channel)
    return json_response({"channel": channel, "members": [m.to_dict() for m in members]})


@handles_errors
def put_presence(request: Request, channel: str, instance: str) -> Response:
    """Enter or update presence as a backend without a WebSocket (``{"data": {...}}``), or,
    with no body, heartbeat: a member that stops is gone after ``expires_in`` seconds."""
    channel = path_channel(channel)
    instance = validate_instance(unquote(instance))
    principal = http_principal(request, channel, PRESENCE)
    raw = _body(request)
    svc = services()
    if raw:
        body = parse_json(raw)
        if not isinstance(body, dict) or set(body) - {"data"}:
            raise InvalidRequestError(
                'The body is {"data": {...}} to enter or update; send no body to heartbeat.'
            )
        member = svc.presence.enter(
            principal, channel, instance, body.get("data"),
            deadline_ms=invocation.deadline_ms(svc.channels.clock),
        )
    else:
        member = svc.presence.heartbeat(principal, channel, instance)
    return json_response({
        "channel": channel, "member": member.key, "heartbeat_s": svc.presence.heartbeat_s,
        "expires_in": svc.settings.presence_ttl_s,
    })


@handles_errors
def delete_presence(request: Request, channel: str, instance: str) -> Response:
    channel = path_channel(channel)
    instance = validate_instance(unquote(instance))
    principal = http_principal(request, channel, PRESENCE)
    svc = services()
    if not svc.presence.leave(principal, channel, instance,
                              invocation.deadline_ms(svc.channels.clock)):
        raise NotFoundError(f"{instance!r} is not in {channel!r}'s presence.",
                            {"channel": channel})
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})
