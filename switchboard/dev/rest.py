"""The REST side of the gateway: HTTP request -> API Gateway proxy event -> the Chalice app.

Chalice's own ``LocalGateway`` (what ``chalice local`` runs) does the routing, CORS preflight
and authorizers; we complete its event to the shape API Gateway's REST API sends (request
ids, stage, ``queryStringParameters``, ``multiValueHeaders``, base64 for bodies that are not
text) and give it a real-looking Lambda context.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException

from .events import API_ID, STAGE, LambdaContext

FUNCTION_NAME = "switchboard-dev-APIHandler"


class DevRestGateway(LocalGateway):
    """``LocalGateway`` with API Gateway's complete proxy event and binary-safe bodies."""

    def __init__(self, app: Chalice, domain_name: str) -> None:
        super().__init__(app, Config(chalice_stage="dev", function_name=FUNCTION_NAME))
        self._domain_name = domain_name

    def _generate_lambda_context(self) -> Any:
        return LambdaContext(FUNCTION_NAME, timeout_s=60)

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


def invoke(
    gateway: DevRestGateway, method: str, path_with_query: str, headers: dict[str, str],
    body: bytes | None,
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
        data = base64.b64decode(payload)
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = str(payload).encode("utf-8")
    return int(response["statusCode"]), out_headers, data
