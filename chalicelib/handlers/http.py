"""Helpers shared by the HTTP handlers: JSON responses and the contract's error shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec
from urllib.parse import unquote

from chalice.app import Response

from ..core.errors import InternalError, InvalidRequestError, SwitchboardError, TooLargeError
from ..core.names import validate_channel
from ..observability import logger

P = ParamSpec("P")

NO_STORE = {"Cache-Control": "no-store"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers={"Content-Type": "application/json", **NO_STORE, **(headers or {})},
    )


def error_response(error: SwitchboardError, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": error.to_dict()}, error.status, headers)


def handles_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Turn SwitchboardErrors into contract errors and anything else into a plain 500."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except SwitchboardError as error:
            logger.info("request rejected", extra={"code": error.code})
            return error_response(error)
        except Exception:
            logger.exception("request failed")
            return error_response(InternalError("The server failed; retry the request."))

    return wrapper


def request_body(request: Any, limit: int) -> bytes:
    """The request's body as bytes, refused with ``too_large`` over ``limit`` bytes (every
    append path: a request never stores more than this, whatever it splits into)."""
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > limit:
        raise TooLargeError(
            f"The request body is {len(raw)} bytes; the limit is {limit} "
            "(SWITCHBOARD_MAX_REQUEST_BYTES). Send it in smaller requests.",
            {"size": len(raw), "max_bytes": limit},
        )
    return bytes(raw)


def path_channel(raw: str) -> str:
    """The channel named by a path parameter. API Gateway passes path parameters as the
    client sent them, percent-encoding included: ``runs%3A1`` is ``runs:1``, and ``a%3Bb`` is
    ``a;b`` (refused like ``a;b``)."""
    return validate_channel(unquote(raw))


def stream_path_channel(raw: str) -> str:
    """The channel named by a Durable Streams path: ``events/a`` (or ``events%2Fa``, or
    ``events:a``) is the channel ``events:a`` (docs/durable-streams.md, "Stream paths")."""
    return validate_channel(unquote(raw).strip("/").replace("/", ":"))


def parse_json(raw: bytes | None, what: str = "The request body") -> Any:
    if not raw:
        raise InvalidRequestError(f"{what} is empty; send JSON.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestError(f"{what} is not valid JSON.") from None


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRequestError(
            f"'{name}' must be an integer from {low} to {high}.", {"field": name}
        )
    return int(value)
