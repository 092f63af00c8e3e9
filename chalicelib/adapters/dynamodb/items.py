"""Item codecs and keys shared by the DynamoDB stores (and the stream-record decoder).

Tables (every lookup is a GetItem or a Query on a key designed for it; nothing Scans):

- channels    pk                       channel metadata (``pk = name``; a fork's item also holds
                                       its ancestry), a source's fork bookkeeping per epoch
                                       (``pk = name#forks#epoch``: the sets ``forks`` and
                                       ``pins``), idempotency claims (``pk = name#id#epoch#id``),
                                       producer states (``pk = name#producer#id``) and
                                       concurrency leases (``pk = #lease#scope``; no channel
                                       name starts with ``#``)
- messages    pk = name#epoch, seq     the logs; its stream (NEW_IMAGE) feeds the fan-out
- connections pk, sk                   ``conn#id / conn`` per socket, ``sub#channel / id`` per
                                       subscription (a Query on ``sub#channel`` finds them all)
- wakes       pk, sk                   Durable Streams subscriptions, their links and index
                                       (wakes.py)

``expires_at`` (epoch seconds) is the TTL attribute of every table. DynamoDB deletes expired
items lazily (and moto never does), so reads filter on it themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from ...core.channels import ChannelMeta
from ...core.forks import Ancestor, ForkOrigin
from ...core.logs import EntryKind, LogEntry
from ...core.messages import StoredMessage
from ...core.subscriptions import Subscription, SubscriptionState

TTL_ATTRIBUTE = "expires_at"
_CONFLICT_CODES = {
    "ConditionalCheckFailedException",
    "TransactionCanceledException",
    "TransactionConflictException",
}


def table_definitions(
    channels: str, messages: str, connections: str, wakes: str | None = None
) -> list[dict[str, Any]]:
    """CreateTable arguments for the tables (used by `switchboard dev` and tests; infra/
    declares the same keys for AWS). ``wakes`` (Durable Streams subscriptions, wakes.py) is
    created when named."""

    def table(name: str, keys: list[tuple[str, str, str]], **extra: Any) -> dict[str, Any]:
        return {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": n, "KeyType": k} for n, _, k in keys],
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
            **extra,
        }

    return [
        table(channels, [("pk", "S", "HASH")]),
        table(
            messages,
            [("pk", "S", "HASH"), ("seq", "N", "RANGE")],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        ),
        table(connections, [("pk", "S", "HASH"), ("sk", "S", "RANGE")]),
        *([table(wakes, [("pk", "S", "HASH"), ("sk", "S", "RANGE")])] if wakes else []),
    ]


def log_key(channel: str, epoch: str) -> str:
    return f"{channel}#{epoch}"


def claim_key(channel: str, epoch: str, message_id: str) -> str:
    return f"{channel}#id#{epoch}#{message_id}"


def fork_refs_key(channel: str, epoch: str) -> str:
    # One item per life of a source: its forks, never on the channel's own item.
    return f"{channel}#forks#{epoch}"


def lease_key(scope: str) -> str:
    return f"#lease#{scope}"


def producer_key(channel: str, producer_id: str) -> str:
    # One item per producer id; ``cepoch`` says which life of the channel it belongs to.
    return f"{channel}#producer#{producer_id}"


def conn_key(connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"conn#{connection_id}"}, "sk": {"S": "conn"}}


def sub_key(channel: str, connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"sub#{channel}"}, "sk": {"S": connection_id}}


def num(value: int) -> dict[str, str]:
    return {"N": str(value)}


def is_conflict(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _CONFLICT_CODES


def cancellation_codes(error: ClientError) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def fork_from_item(item: dict[str, Any]) -> ForkOrigin | None:
    if "src" not in item:
        return None
    return ForkOrigin(
        source=item["src"]["S"],
        source_epoch=item["src_epoch"]["S"],
        offset_seq=int(item["fork_at"]["N"]),
        sub_offset=int(item["fork_sub"]["N"]),
        ancestors=tuple(Ancestor(n, e, int(u)) for n, e, u in json.loads(item["anc"]["S"])),
    )


def meta_from_item(item: dict[str, Any]) -> ChannelMeta:
    return ChannelMeta(
        name=item["pk"]["S"],
        epoch=item["epoch"]["S"],
        head=int(item["head"]["N"]),
        created_ms=int(item["created"]["N"]),
        retention_s=int(item["retention"]["N"]),
        content_type=item["ctype"]["S"],
        expires_at=int(item["stream_expires"]["N"]) if "stream_expires" in item else None,
        ttl_s=int(item["ttl_s"]["N"]) if "ttl_s" in item else None,
        closed=bool(item.get("closed", {}).get("BOOL", False)),
        stream_seq=item["wseq"]["S"] if "wseq" in item else None,
        fork=fork_from_item(item),
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
        written_ms=int(item["written"]["N"]) if "written" in item else None,
        previous_epoch=item["prev_epoch"]["S"] if "prev_epoch" in item else None,
    )


def meta_item(meta: ChannelMeta) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": meta.name},
        "epoch": {"S": meta.epoch},
        "head": num(meta.head),
        "created": num(meta.created_ms),
        "retention": num(meta.retention_s),
        "ctype": {"S": meta.content_type},
    }
    if meta.expires_at is not None:
        item["stream_expires"] = num(meta.expires_at)
        # Let DynamoDB drop the metadata of an expired stream a day after it expired.
        item[TTL_ATTRIBUTE] = num(meta.expires_at + 86400)
    if meta.ttl_s is not None:
        item["ttl_s"] = num(meta.ttl_s)
    if meta.closed:
        item["closed"] = {"BOOL": True}
    if meta.stream_seq is not None:
        item["wseq"] = {"S": meta.stream_seq}
    if meta.written_ms is not None:
        item["written"] = num(meta.written_ms)
    if meta.fork is not None:
        item["src"] = {"S": meta.fork.source}
        item["src_epoch"] = {"S": meta.fork.source_epoch}
        item["fork_at"] = num(meta.fork.offset_seq)
        item["fork_sub"] = num(meta.fork.sub_offset)
        item["anc"] = {
            "S": json.dumps(
                [[a.name, a.epoch, a.upto] for a in meta.fork.ancestors], separators=(",", ":")
            )
        }
    return item


def entry_from_item(item: dict[str, Any]) -> LogEntry:
    """What a messages-table item occupies its seq with: a message or a marker."""
    kind = EntryKind(item["kind"]["S"]) if "kind" in item else EntryKind.MESSAGE
    return LogEntry(int(item["seq"]["N"]), kind, item["id"]["S"] if "id" in item else None)


def marker_item(channel: str, epoch: str, seq: int, kind: EntryKind, expires_at: int) -> (
    dict[str, Any]
):
    """A marker that ends a log (core/logs.py): no body, never delivered."""
    return {
        "pk": {"S": log_key(channel, epoch)},
        "seq": num(seq),
        "kind": {"S": kind.value},
        TTL_ATTRIBUTE: num(expires_at),
    }


def is_message(item: dict[str, Any]) -> bool:
    return "kind" not in item


def message_from_item(item: dict[str, Any]) -> StoredMessage:
    """A messages-table item (as GetItem/Query or a stream NewImage return it)."""
    return StoredMessage(
        channel=item["channel"]["S"],
        epoch=item["epoch"]["S"],
        seq=int(item["seq"]["N"]),
        body=bytes(item["body"]["B"]),
        ts=int(item["ts"]["N"]),
        expires_at=int(item[TTL_ATTRIBUTE]["N"]),
        id=item["id"]["S"] if "id" in item else None,
        publisher=item["publisher"]["S"] if "publisher" in item else None,
        token=item["rt"]["S"] if "rt" in item else None,
        raw=bool(item.get("raw", {}).get("BOOL", False)),
    )


def message_item(message: StoredMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": log_key(message.channel, message.epoch)},
        "seq": num(message.seq),
        "channel": {"S": message.channel},
        "epoch": {"S": message.epoch},
        "body": {"B": message.body},
        "ts": num(message.ts),
        TTL_ATTRIBUTE: num(message.expires_at),
    }
    if message.id is not None:
        item["id"] = {"S": message.id}
    if message.publisher is not None:
        item["publisher"] = {"S": message.publisher}
    if message.token is not None:
        item["rt"] = {"S": message.token}
    if message.raw:
        item["raw"] = {"BOOL": True}
    return item


def sub_from_item(item: dict[str, Any]) -> Subscription:
    return Subscription(
        channel=item["pk"]["S"].removeprefix("sub#"),
        connection_id=item["sk"]["S"],
        endpoint=item["endpoint"]["S"],
        epoch=item["epoch"]["S"],
        after_seq=int(item["after"]["N"]),
        state=SubscriptionState(item["state"]["S"]),
        expires_at=int(item[TTL_ATTRIBUTE]["N"]),
        missed=int(item["missed"]["N"]) if "missed" in item else 0,
        batch=bool(item.get("batch", {}).get("BOOL", False)),
        since_ms=int(item["since"]["N"]) if "since" in item else 0,
    )


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def query_all(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a Query, following pagination."""
    while True:
        response = client.query(**kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
