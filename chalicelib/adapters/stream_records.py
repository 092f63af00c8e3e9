"""DynamoDB stream records (as Lambda delivers them) to stored messages."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.messages import StoredMessage
from .dynamodb import message_from_item


def inserted_messages(records: Iterable[dict[str, Any]]) -> Iterator[tuple[str, StoredMessage]]:
    """(SequenceNumber, message) for every INSERT of a message item, in stream order.

    Lambda's JSON event carries binary attributes base64-encoded; decode them so the image
    reads like a GetItem result.
    """
    for record in records:
        if record.get("eventName") != "INSERT":
            continue
        dynamodb = record.get("dynamodb") or {}
        image = dict(dynamodb.get("NewImage") or {})
        if "body" not in image or "seq" not in image:
            continue
        body = image["body"].get("B")
        if isinstance(body, str):
            image["body"] = {"B": base64.b64decode(body)}
        yield str(dynamodb.get("SequenceNumber", "")), message_from_item(image)
