"""The REST side of the gateway: HTTP request -> API Gateway proxy event -> the Chalice app.

Chalice's own ``LocalGateway`` (what ``chalice local`` runs) does the routing, CORS preflight
and authorizers; we complete its event to the shape API Gateway's REST API sends (request
ids, stage, ``queryStringParameters``, ``multiValueHeaders``, base64 for bodies that are not
text) and give it the Lambda context of ``api_handler`` (its timeout and memory from
``.chalice/config.json``).

As API Gateway does, the path reaches the handler as the client sent it, percent-encoding
included (``path`` and ``pathParameters`` are not URL-decoded; query string parameters are),
and the response goes back the way API Gateway returns it: a Lambda response over 6 MB is a
502, and a base64-encoded (binary) body is decoded only when the request's first ``Accept``
value matches one of the API's binary media types; otherwise the client gets the base64 text.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, MatchResult, RouteMatcher

from .events import API_ID, STAGE, LambdaContext
from .limits import API_HANDLER, FunctionConfig, Limits

FUNCTION_NAME = "switchboard-dev-APIHandler"
INTERNAL_ERROR = b'{"message": "Internal server error"}'
log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those


class ApiGatewayRouteMatcher(RouteMatcher):
    """Routes matched as API Gateway matches them, where Chalice's local matcher differs:

    - the path is everything before ``?``: a ``;`` is an ordinary path character (Chalice
      parses it as ``urlparse``'s parameter separator, so ``/v1/stream/a;b`` reached the
      channel ``a``);
    - a greedy ``{name+}`` segment (the last of a route) matches one or more segments;
    - the most specific route wins, segment by segment from the left: a literal segment
      over a ``{capture}``, a capture over a greedy tail (so ``/v1/stream/__ds/...`` is
      never a stream, and ``/{proxy+}`` only takes what nothing else does).
    """

    def match_route(self, url: str) -> MatchResult:
        parsed = urlsplit(url)
        query_params = parse_qs(parsed.query, keep_blank_values=True)
        path = parsed.path
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        best: tuple[tuple[int, ...], str, dict[str, str]] | None = None
        for route_url in self.route_urls:
            url_parts = route_url.split("/")
            captured: dict[str, str] = {}
            score: tuple[int, ...] | None = None
            if url_parts[-1].startswith("{") and url_parts[-1].endswith("+}"):
                fixed = url_parts[:-1]
                if len(parts) > len(fixed) and _same(parts, fixed, captured):
                    captured[url_parts[-1][1:-2]] = "/".join(parts[len(fixed):])
                    score = (*_specificity(fixed), 0)
            elif len(parts) == len(url_parts) and _same(parts, url_parts, captured):
                score = (*_specificity(url_parts), 3)
            if score is not None and (best is None or score > best[0]):
                best = (score, route_url, captured)
        if best is None:
            raise ValueError(f"No matching route found for: {url}")
        return MatchResult(best[1], best[2], query_params)


def _same(parts: list[str], route_parts: list[str], captured: dict[str, str]) -> bool:
    for part, route_part in zip(parts, route_parts, strict=False):
        if route_part.startswith("{") and route_part.endswith("}"):
            captured[route_part[1:-1]] = part
        elif part != route_part:
            return False
    return True


def _specificity(route_parts: list[str]) -> tuple[int, ...]:
    return tuple(1 if p.startswith("{") and p.endswith("}") else 2 for p in route_parts)


class DevRestGateway(LocalGateway):
    """``LocalGateway`` with API Gateway's routing, complete proxy event and binary-safe
    bodies."""

    def __init__(
        self, app: Chalice, domain_name: str, function: FunctionConfig | None = None
    ) -> None:
        super().__init__(app, Config(chalice_stage="dev", function_name=FUNCTION_NAME))
        self._domain_name = domain_name
        self.function = function or FunctionConfig(API_HANDLER, 30.0, 256)
        self.event_converter._route_matcher = ApiGatewayRouteMatcher(list(app.routes))

    @property
    def binary_types(self) -> list[str]:
        """The API's binaryMediaTypes as infra/ deploys them (the app's, and ``*/*``)."""
        from infra.api import deployed_binary_media_types  # the checkout's (server.py)

        return deployed_binary_media_types(list(self._app_object.api.binary_types))

    def _generate_lambda_context(self) -> Any:
        return LambdaContext(
            FUNCTION_NAME, timeout_s=self.function.timeout_s, memory_mb=self.function.memory_mb
        )

    def _generate_lambda_event(
        self, method: str, path: str, headers: Any, body: bytes | None
    ) -> dict[str, Any]:
        event: dict[str, Any] = super()._generate_lambda_event(method, path, headers, None)
        multi_query = event.get("multiValueQueryStringParameters")
        now_ms = int(time.time() * 1000)
        event.update(
            {
                "resource": event["requestContext"]["resourcePath"],
                "path": event["requestContext"]["path"],
                "httpMethod": method,
                "multiValueHeaders": {k: [v] for k, v in event["headers"].items()},
                "queryStringParameters": (
                    {k: v[-1] for k, v in multi_query.items()} if multi_query else None
                ),
                "isBase64Encoded": False,
            }
        )
        event["requestContext"].update(
            {
                "resourceId": "dev",
                "stage": STAGE,
                "requestId": str(uuid.uuid4()),
                "extendedRequestId": uuid.uuid4().hex[:16],
                "domainName": self._domain_name,
                "apiId": API_ID,
                "protocol": "HTTP/1.1",
                "requestTimeEpoch": now_ms,
                "accountId": "123456789012",
            }
        )
        event["body"] = None
        if body:
            content_type = str(event["headers"].get("content-type", "")).split(";")[0].strip()
            try:
                if content_type in self._app_object.api.binary_types:
                    raise UnicodeDecodeError("utf-8", b"", 0, 1, "binary media type")
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                # API Gateway base64-encodes binary media types; we also do it for any body
                # that is not UTF-8, so no byte is ever lost on the way to the handler.
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event


def _gateway_body(raw: bytes | None) -> bytes:
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        match = re.search(r'"message":\s*"(.*)"\s*}\s*$', text, re.DOTALL)
        message = match.group(1) if match else text
    return json.dumps({"message": message}).encode()


def _media_range(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def accepts_binary(accept: str | None, binary_types: list[str]) -> bool:
    """API Gateway's rule: the request's *first* Accept value matches a binary media type.

    The binary media types may hold wildcards (``image/*``, ``*/*``); the Accept value is
    taken as it is, so ``Accept: */*`` matches only an API whose binary types include ``*/*``.
    """
    if not accept:
        return False
    first = _media_range(accept.split(",", 1)[0])
    kind, _, _subtype = first.partition("/")
    for pattern in (t.lower() for t in binary_types):
        if pattern in ("*/*", first) or (pattern.endswith("/*") and pattern[:-2] == kind):
            return True
    return False


def _response_bytes(response: dict[str, Any]) -> int:
    """What the Lambda runtime would send back: the handler's result serialized as JSON."""
    return len(json.dumps(response).encode("utf-8"))


def invoke(
    gateway: DevRestGateway, method: str, path_with_query: str, headers: dict[str, str],
    body: bytes | None, limits: Limits | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one request through the app: (status, headers, body), as API Gateway answers."""
    try:
        response = gateway.handle_request(method, path_with_query, headers, body)
    except LocalGatewayException as error:
        # API Gateway's own answers (no such route: 403 "Missing Authentication Token", and
        # friends). Chalice builds their JSON by hand and can emit invalid escapes: re-encode.
        error_headers = [(k, str(v)) for k, v in error.headers.items()]
        error_headers.append(("Content-Type", "application/json"))
        return error.CODE, error_headers, _gateway_body(error.body)
    limit = limits.lambda_response_bytes if limits is not None else None
    if limit is not None and (size := _response_bytes(response)) > limit:
        # Lambda fails the invocation ("Response payload size exceeded maximum allowed
        # payload size"); API Gateway answers a failed Lambda integration with a bare 502.
        log.error("%s %s: the response is %d bytes, over Lambda's %d-byte limit: 502 "
                  "on AWS", method, path_with_query.split("?")[0], size, limit)
        return 502, [("Content-Type", "application/json"),
                     ("x-amzn-ErrorType", "InternalServerErrorException")], INTERNAL_ERROR
    out_headers: list[tuple[str, str]] = []
    multi = response.get("multiValueHeaders") or {}
    for name, value in (response.get("headers") or {}).items():
        if name not in multi:
            out_headers.append((name, str(value)))
    for name, values in multi.items():
        out_headers.extend((name, str(v)) for v in values)
    payload = response.get("body")
    if payload is None:
        data = b""
    elif response.get("isBase64Encoded"):
        accept = next((v for k, v in headers.items() if k.lower() == "accept"), None)
        if limits is None or not limits.binary_needs_accept or accepts_binary(
            accept, gateway.binary_types
        ):
            data = base64.b64decode(payload)
        else:
            data = str(payload).encode("ascii")  # API Gateway passes the base64 text through
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = str(payload).encode("utf-8")
    return int(response["statusCode"]), out_headers, data
