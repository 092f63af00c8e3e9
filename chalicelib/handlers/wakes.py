"""``/v1/stream/__ds/...``: the reserved Durable Streams subscription APIs, and the two
Lambda bodies that drive wakes (the messages stream consumer and the wake job queue).

Parsing requests and building responses only: the protocol's model is core/wakes.py, the
state machine services/wakes.py. Errors on these routes use the protocol's upper-case codes
(``{"error": {"code": "FENCED", "message": …, "detail": …, "generation": 3}}``); the
contract's own codes that can occur here are upper-cased (``unauthorized`` -> ``UNAUTHORIZED``,
any ``invalid_*`` -> ``INVALID_REQUEST``).

Who may do what (docs/durable-streams.md, "Subscriptions"): creating, reading, changing and
deleting a subscription needs ``admin`` on everything it covers (each explicit stream, the
wake stream, and every channel its pattern can match: ``events/*`` needs ``admin`` on
``events:*``); claiming needs ``subscribe`` on the wake stream. Callbacks, acks and releases
carry the wake's own token instead of a Switchboard credential; the JWKS is public.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any, ParamSpec
from urllib.parse import unquote

from chalice.app import Request, Response

from ..adapters.stream_records import inserted_messages
from ..bootstrap import services
from ..core import wakes as w
from ..core.capabilities import ADMIN, SUBSCRIBE, Capabilities, Principal
from ..core.errors import (
    ForbiddenError,
    InternalError,
    InvalidChannelError,
    InvalidRequestError,
    SwitchboardError,
)
from ..observability import logger
from ..services.wakes import scope_channels
from .http import int_param, json_response, parse_json
from .principals import http_principal

P = ParamSpec("P")
JWKS_TYPE = "application/jwk-set+json"
JOB_THREADS = 10


def _error(error: SwitchboardError) -> Response:
    body = error.to_dict()
    if not isinstance(error, w.SubscriptionError):
        code = error.code
        body["code"] = "INVALID_REQUEST" if code.startswith("invalid_") else code.upper()
    return json_response({"error": body}, error.status)


def subscription_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except SwitchboardError as error:
            logger.info("subscription request rejected", extra={"code": error.code})
            return _error(error)
        except Exception:
            logger.exception("subscription request failed")
            return _error(InternalError("The server failed; retry the request."))

    return wrapper


def _body(request: Request) -> Any:
    raw = request.raw_body
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    limit = services().settings.max_request_bytes
    if raw and len(raw) > limit:
        raise w.InvalidSubscriptionRequestError(f"The body is over {limit} bytes.")
    try:
        return parse_json(raw)
    except InvalidRequestError as error:
        raise w.InvalidSubscriptionRequestError(error.message) from None


def base_url(request: Request) -> str:
    """Where this API is reached: the configured public URL, else the request's own."""
    configured = services().settings.public_url
    if configured:
        return configured.rstrip("/")
    headers = request.headers
    host = headers.get("host", "localhost")
    scheme = headers.get("x-forwarded-proto") or (
        "http" if host.startswith(("127.", "localhost", "[::1]")) else "https"
    )
    stage = (request.context or {}).get("stage")
    # On API Gateway's default domain the stage is part of the URL.
    prefix = f"/{stage}" if stage and host.endswith(".amazonaws.com") else ""
    return f"{scheme}://{host}{prefix}"


def _sub_id(raw: str) -> str:
    return w.validate_id(unquote(raw))


def _now_s() -> float:
    return services().channels.clock.now_ms() / 1000


def require_scope(principal: Principal, config: w.SubscriptionConfig, operation: str) -> None:
    """``operation`` on every channel the subscription covers (its pattern: on every channel
    the pattern's literal prefix starts)."""
    if principal.kind == "anonymous":
        return
    channels, prefix = scope_channels(config)
    for channel in channels:
        principal.require(channel, operation, _now_s())
    if prefix is not None and not principal.capabilities.covers(
        Capabilities.parse({f"{prefix}*": [operation]})
    ):
        raise ForbiddenError(
            f"Your credentials do not allow {operation!r} on every channel of "
            f"{prefix}* (the subscription's pattern).",
            {"pattern": config.pattern.text if config.pattern else None,
             "operation": operation},
        )


# -- routes ---------------------------------------------------------------------------------


@subscription_errors
def jwks(request: Request) -> Response:
    return Response(
        body=json.dumps(services().wakes.jwks(), separators=(",", ":")),
        status_code=200,
        headers={"Content-Type": JWKS_TYPE, "Cache-Control": "public, max-age=300"},
    )


@subscription_errors
def subscription(request: Request, raw_id: str) -> Response:
    sub_id = _sub_id(raw_id)
    wakes = services().wakes
    method = request.method.upper()
    principal = http_principal(request)  # 401 before anything else
    if method == "PUT":
        body = _body(request)
        config = w.parse_config(body, services().settings.webhook_allow_loopback)
        require_scope(principal, config, ADMIN)
        info, created = wakes.put(sub_id, body, base_url(request))
        return json_response(_with_signing(info, request), 201 if created else 200)
    if method == "GET":
        sub = wakes.get(sub_id)
        require_scope(principal, sub.config, ADMIN)
        return json_response(_with_signing(wakes.info(sub_id), request))
    if method == "DELETE":
        existing = wakes.store.get(sub_id)
        if existing is not None:
            require_scope(principal, existing.config, ADMIN)
            wakes.delete(sub_id)
        return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})
    raise w.InvalidSubscriptionRequestError(f"Method {method} is not supported here.")


@subscription_errors
def list_subscriptions(request: Request) -> Response:
    """``GET /v1/stream/__ds/subscriptions`` (a Switchboard addition): the subscriptions the
    caller may administer, in id order, 100 at most per page (``?after=<id>`` continues)."""
    params: Mapping[str, str] = request.query_params or {}
    after = params.get("after")
    if after is not None:
        w.validate_id(after)
    limit = int_param(params.get("limit"), "limit", 100, 1, 100)
    principal = http_principal(request)
    subs, next_after = services().wakes.page(after, limit)
    visible = []
    for sub in subs:
        try:
            require_scope(principal, sub.config, ADMIN)
        except SwitchboardError:
            continue
        visible.append({"id": sub.id, "type": sub.config.type,
                        "pattern": sub.config.pattern.text if sub.config.pattern else None,
                        "streams": [w.path_of_channel(c) for c in sub.config.streams],
                        "status": "failed" if sub.failing else "active",
                        "description": sub.config.description})
    return json_response({"subscriptions": visible, "next": next_after})


def _with_signing(info: dict[str, Any], request: Request) -> dict[str, Any]:
    if "webhook" in info:
        info["webhook"]["signing"] = {
            "alg": "ed25519",
            "kid": services().wakes.keys.active_kid(),
            "jwks_url": w.jwks_url(base_url(request)),
        }
    return info


@subscription_errors
def add_streams(request: Request, raw_id: str) -> Response:
    principal = http_principal(request)  # 401 before anything else
    wakes = services().wakes
    sub = wakes.get(_sub_id(raw_id))
    body = _body(request)
    if not isinstance(body, dict) or set(body) != {"streams"}:
        raise w.InvalidSubscriptionRequestError('The body is {"streams": ["path", ...]}.')
    channels = w.parse_streams(body["streams"])
    require_scope(principal, sub.config, ADMIN)
    for channel in channels:
        if principal.kind != "anonymous":
            principal.require(channel, ADMIN, _now_s())
    wakes.add_streams(sub.id, channels)
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})


@subscription_errors
def remove_stream(request: Request, raw_id: str) -> Response:
    """``DELETE …/streams/{path}``: the path URL-encoded (``manual%2Fb``) or not
    (``manual/b``, the greedy tail of the route)."""
    principal = http_principal(request)  # 401 before anything else
    wakes = services().wakes
    sub = wakes.get(_sub_id(raw_id))
    require_scope(principal, sub.config, ADMIN)
    raw = greedy_param(request, "stream", f"/v1/stream/__ds/subscriptions/{raw_id}/streams/")
    try:
        channel = w.channel_of_path(unquote(raw))
    except InvalidChannelError as error:
        raise w.InvalidSubscriptionRequestError(error.message) from None
    wakes.remove_stream(sub.id, channel)
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})


@subscription_errors
def callback(request: Request, raw_id: str) -> Response:
    result = services().wakes.callback(
        _sub_id(raw_id), request.headers.get("authorization"), _body(request))
    return json_response(result)


@subscription_errors
def claim(request: Request, raw_id: str) -> Response:
    principal = http_principal(request)  # 401 before anything else
    wakes = services().wakes
    sub = wakes.get(_sub_id(raw_id))
    if principal.kind != "anonymous" and sub.config.wake_stream is not None:
        principal.require(sub.config.wake_stream, SUBSCRIBE, _now_s())
    return json_response(wakes.claim(sub.id, _body(request)))


@subscription_errors
def ack(request: Request, raw_id: str) -> Response:
    result = services().wakes.ack(
        _sub_id(raw_id), request.headers.get("authorization"), _body(request))
    return json_response(result)


@subscription_errors
def release(request: Request, raw_id: str) -> Response:
    services().wakes.release(
        _sub_id(raw_id), request.headers.get("authorization"), _body(request))
    return Response(body="", status_code=204, headers={"Cache-Control": "no-store"})


@subscription_errors
def no_such_api(request: Request) -> Response:
    path = str((request.context or {}).get("path") or "")
    raise w.SubscriptionNotFoundError(
        f"No such reserved API: {request.method} {path[:200]}.", {"path": path[:200]})


def greedy_param(request: Request, name: str, prefix: str) -> str:
    """The value of a greedy ``{name+}`` path segment. Chalice matches the route but passes
    only ``{plain}`` parameters to the view: read it from the event's path parameters (API
    Gateway and the dev gateway put it there), else cut it from the path."""
    value = (request.uri_params or {}).get(name)
    if value:
        return str(value)
    path = str((request.context or {}).get("path") or "")
    _, found, rest = path.partition(prefix)
    if not found or not rest:
        raise w.InvalidSubscriptionRequestError("The stream path is missing.")
    return rest


# -- the Lambda bodies that drive wakes -----------------------------------------------------


def handle_records(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The messages stream's second consumer: raise links, start wakes. Channels that failed
    are reported (the stream re-delivers from the lowest failed record)."""
    records = event.get("Records", [])
    failed = services().wakes.on_messages(inserted_messages(records))
    if failed:
        logger.warning("wake consumer incomplete", extra={"failed": len(failed)})
    order = [str((r.get("dynamodb") or {}).get("SequenceNumber", "")) for r in records]
    first = next((s for s in order if s in failed), None)
    return {"batchItemFailures": [{"itemIdentifier": first}] if first else []}


def handle_jobs(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The wake queue's consumer: each message is one job; jobs run concurrently (a webhook
    may take seconds to answer). A job that raised goes back to the queue (then the DLQ)."""
    records = event.get("Records", [])
    wakes = services().wakes

    def run(record: dict[str, Any]) -> str | None:
        try:
            wakes.run_job(str(record["body"]))
            return None
        except Exception:
            logger.exception("wake job failed", extra={"job": str(record.get("body"))[:300]})
            return str(record.get("messageId"))

    with ThreadPoolExecutor(min(JOB_THREADS, max(1, len(records)))) as pool:
        failed = [m for m in pool.map(run, records) if m is not None]
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
