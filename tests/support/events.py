"""API Gateway- and Lambda-shaped events, as AWS sends them, for invoking handlers directly."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
STAGE = "api"
_ids = itertools.count(1)


def ws_event(route: str, connection_id: str, body: str | None = None) -> dict[str, Any]:
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    n = next(_ids)
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "connectionId": connection_id,
            "domainName": DOMAIN,
            "stage": STAGE,
            "apiId": "abc123",
            "requestId": f"req-{n}",
            "extendedRequestId": f"ext-{n}",
            "messageDirection": "IN",
            "connectedAt": 1764430000000,
            "requestTimeEpoch": 1764430000000 + n,
            "requestTime": "29/Nov/2026:20:00:00 +0000",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "isBase64Encoded": False,
    }
    if route == "$connect":
        event["headers"] = {"Host": DOMAIN}
        event["multiValueHeaders"] = {"Host": [DOMAIN]}
    if body is not None:
        event["body"] = body
    return event


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def stream_event(items: list[dict[str, Any]], first_sequence: int = 100) -> dict[str, Any]:
    """A Lambda DynamoDB stream event with INSERT records for messages-table items."""
    records = []
    for offset, item in enumerate(items):
        image = dict(item)
        if isinstance(image.get("body", {}).get("B"), bytes):
            image["body"] = {"B": base64.b64encode(image["body"]["B"]).decode()}
        records.append(
            {
                "eventID": f"ev-{first_sequence + offset}",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/m/stream/x",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1764430000,
                    "Keys": {"pk": image["pk"], "seq": image["seq"]},
                    "NewImage": image,
                    "SequenceNumber": str(first_sequence + offset),
                    "SizeBytes": 100,
                    "StreamViewType": "NEW_IMAGE",
                },
            }
        )
    return {"Records": records}
