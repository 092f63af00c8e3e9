"""Lambda events and contexts shaped exactly as AWS sends them, for the real handlers.

- WebSocket ``$connect`` / ``$default`` / ``$disconnect`` events as API Gateway's WebSocket
  API delivers them to a Lambda proxy integration (they validate against Powertools'
  ``APIGatewayWebSocket*EventModel``, which is stricter than Chalice).
- DynamoDB stream records as Lambda's event source mapping delivers them (moto's
  GetRecords output differs: no ``eventSourceARN``, a datetime, binary already decoded).
- A Lambda context object with the attributes and method the runtime provides.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_ID = "local000dev"  # API Gateway ids are 10 lowercase alphanumerics; this one is fake
STAGE = "api"  # Chalice's api_gateway_stage


def new_connection_id() -> str:
    """An id shaped like API Gateway's (``L0SM9cOFvHcCIhw=``), URL-safe.

    Standard base64 can produce ``/``, which breaks ``/@connections/{id}`` routing once the
    path is decoded (shared notes, section 5), so use the URL-safe alphabet.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(10)).decode("ascii")


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_ids() -> tuple[str, str]:
    extended = base64.urlsafe_b64encode(secrets.token_bytes(6)).decode("ascii")
    return str(uuid.uuid4()), extended


@dataclass
class WsPeer:
    """What API Gateway knows about one WebSocket connection."""

    connection_id: str
    domain_name: str
    source_ip: str
    user_agent: str | None
    connected_at_ms: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)
    # What the $connect authorizer returned (context + principalId): API Gateway adds it to
    # the requestContext of every event of the connection.
    authorizer: dict[str, Any] | None = None


def _request_context(
    peer: WsPeer, route: str, event_type: str, now_ms: int, **extra: Any
) -> dict[str, Any]:
    request_id, extended = _request_ids()
    identity: dict[str, Any] = {"sourceIp": peer.source_ip}
    if peer.user_agent is not None:
        identity["userAgent"] = peer.user_agent
    return {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": extended,
        "requestTime": _request_time(now_ms),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": peer.connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": peer.domain_name,
        "connectionId": peer.connection_id,
        "apiId": API_ID,
        **({"authorizer": dict(peer.authorizer)} if peer.authorizer is not None else {}),
        **extra,
    }


def _multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """API Gateway's two views of repeated names: last value wins, and every value."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def connect_event(peer: WsPeer, now_ms: int | None = None) -> dict[str, Any]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    headers, multi_headers = _multi(peer.headers)
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "requestContext": _request_context(peer, "$connect", "CONNECT", now_ms),
        "isBase64Encoded": False,
    }
    if peer.query:  # API Gateway omits both keys when there is no query string
        query, multi_query = _multi(peer.query)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    return event


def authorizer_event(peer: WsPeer, now_ms: int | None = None) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway sends before ``$connect``."""
    event = connect_event(peer, now_ms)
    event.update(
        {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{API_ID}/{STAGE}/$connect",
            "stageVariables": {},
        }
    )
    event.setdefault("queryStringParameters", {})
    return event


def message_event(
    peer: WsPeer, body: str | bytes, now_ms: int | None = None
) -> dict[str, Any]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    message_id = base64.urlsafe_b64encode(secrets.token_bytes(6)).decode("ascii")
    binary = isinstance(body, bytes)
    return {
        "requestContext": _request_context(
            peer, "$default", "MESSAGE", now_ms, messageId=message_id
        ),
        # Binary frames reach the Lambda base64-encoded.
        "body": base64.b64encode(body).decode("ascii") if isinstance(body, bytes) else body,
        "isBase64Encoded": binary,
    }


def disconnect_event(
    peer: WsPeer, status_code: int, reason: str, now_ms: int | None = None
) -> dict[str, Any]:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    host = peer.domain_name
    headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": _request_context(
            peer, "$disconnect", "DISCONNECT", now_ms,
            disconnectStatusCode=status_code, disconnectReason=reason,
        ),
        "isBase64Encoded": False,
    }


# -- DynamoDB stream records ----------------------------------------------------------------


def lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """One AttributeValue as boto3 returns it -> as Lambda's JSON carries it.

    boto3 decodes ``B``/``BS`` to bytes; Lambda's event has them base64-encoded, at any depth.
    """
    (kind, inner), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode("ascii") for b in inner]}
    if kind == "M":
        return {"M": {k: lambda_attribute(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [lambda_attribute(v) for v in inner]}
    return {kind: inner}


def _image(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: lambda_attribute(value) for name, value in image.items()}


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record from ``dynamodbstreams.get_records`` (boto3) -> Lambda's event record."""
    source = record["dynamodb"]
    created = source.get("ApproximateCreationDateTime")
    dynamodb: dict[str, Any] = {
        # Lambda sends epoch seconds as a JSON number; boto3 parsed it into a datetime.
        "ApproximateCreationDateTime": int(created.timestamp())
        if isinstance(created, datetime) else created,
        "Keys": _image(source.get("Keys", {})),
        "SequenceNumber": source["SequenceNumber"],
        "SizeBytes": source.get("SizeBytes", 0),
        "StreamViewType": source.get("StreamViewType", "NEW_IMAGE"),
    }
    for name in ("NewImage", "OldImage"):
        if name in source:
            dynamodb[name] = _image(source[name])
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": record.get("eventSource", "aws:dynamodb"),
        "awsRegion": record["awsRegion"],
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


# -- Lambda context -------------------------------------------------------------------------


class LambdaContext:
    """The context object the Lambda Python runtime passes to a handler."""

    def __init__(
        self, function_name: str, timeout_s: float = 60, memory_mb: int = 512,
        region: str = "us-east-1", account: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        )
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = (
            f"{time.strftime('%Y/%m/%d')}/[$LATEST]{secrets.token_hex(16)}"
        )
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
