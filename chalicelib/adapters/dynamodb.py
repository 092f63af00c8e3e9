"""The DynamoDB adapter: channels, messages, connections and subscriptions.

Tables (every lookup is a GetItem or a Query on a key designed for it; nothing Scans):

- channels    pk                       channel metadata (``pk = name``; a fork's item also holds
                                       its ancestry, a source's the set of its forks) and
                                       idempotency claims (``pk = name#id#epoch#id``)
- messages    pk = name#epoch, seq     the logs; its stream (NEW_IMAGE) feeds the fan-out
- connections pk, sk                   ``conn#id / conn`` per socket, ``sub#channel / id`` per
                                       subscription (a Query on ``sub#channel`` finds them all)

``expires_at`` (epoch seconds) is the TTL attribute of every table. DynamoDB deletes expired
items lazily (and moto never does), so reads filter on it themselves.

The low-level client is used on purpose: no resource layer to import on a cold start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..core.channels import ChannelMeta
from ..core.forks import Ancestor, ForkOrigin, fork_member
from ..core.messages import NewMessage, StoredMessage
from ..core.producers import ProducerState
from ..core.subscriptions import Connection, Subscription, SubscriptionState
from ..ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    Deletion,
    ForkSourceChangedError,
    GoLive,
    SubscriptionLimitError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

TTL_ATTRIBUTE = "expires_at"
_CONFLICT_CODES = {
    "ConditionalCheckFailedException",
    "TransactionCanceledException",
    "TransactionConflictException",
}


def table_definitions(channels: str, messages: str, connections: str) -> list[dict[str, Any]]:
    """CreateTable arguments for the three tables (used by `switchboard dev` and tests; infra/
    declares the same keys for AWS)."""

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
    ]


def log_key(channel: str, epoch: str) -> str:
    return f"{channel}#{epoch}"


def _claim_key(channel: str, epoch: str, message_id: str) -> str:
    return f"{channel}#id#{epoch}#{message_id}"


def _producer_key(channel: str, producer_id: str) -> str:
    # One item per producer id; ``cepoch`` says which life of the channel it belongs to.
    return f"{channel}#producer#{producer_id}"


def _conn_key(connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"conn#{connection_id}"}, "sk": {"S": "conn"}}


def _sub_key(channel: str, connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"sub#{channel}"}, "sk": {"S": connection_id}}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _is_conflict(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _CONFLICT_CODES


def _cancellation_codes(error: ClientError) -> list[str]:
    reasons = error.response.get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def _fork_from_item(item: dict[str, Any]) -> ForkOrigin | None:
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
        fork=_fork_from_item(item),
        forks=frozenset(item.get("forks", {}).get("SS", [])),
        deleted=bool(item.get("deleted", {}).get("BOOL", False)),
    )


def _meta_item(meta: ChannelMeta) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": meta.name},
        "epoch": {"S": meta.epoch},
        "head": _n(meta.head),
        "created": _n(meta.created_ms),
        "retention": _n(meta.retention_s),
        "ctype": {"S": meta.content_type},
    }
    if meta.expires_at is not None:
        item["stream_expires"] = _n(meta.expires_at)
        # Let DynamoDB drop the metadata of an expired stream a day after it expired.
        item[TTL_ATTRIBUTE] = _n(meta.expires_at + 86400)
    if meta.ttl_s is not None:
        item["ttl_s"] = _n(meta.ttl_s)
    if meta.closed:
        item["closed"] = {"BOOL": True}
    if meta.stream_seq is not None:
        item["wseq"] = {"S": meta.stream_seq}
    if meta.fork is not None:
        item["src"] = {"S": meta.fork.source}
        item["src_epoch"] = {"S": meta.fork.source_epoch}
        item["fork_at"] = _n(meta.fork.offset_seq)
        item["fork_sub"] = _n(meta.fork.sub_offset)
        item["anc"] = {
            "S": json.dumps(
                [[a.name, a.epoch, a.upto] for a in meta.fork.ancestors], separators=(",", ":")
            )
        }
    return item


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
    )


def message_item(message: StoredMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": log_key(message.channel, message.epoch)},
        "seq": _n(message.seq),
        "channel": {"S": message.channel},
        "epoch": {"S": message.epoch},
        "body": {"B": message.body},
        "ts": _n(message.ts),
        TTL_ATTRIBUTE: _n(message.expires_at),
    }
    if message.id is not None:
        item["id"] = {"S": message.id}
    if message.publisher is not None:
        item["publisher"] = {"S": message.publisher}
    return item


def _sub_from_item(item: dict[str, Any]) -> Subscription:
    return Subscription(
        channel=item["pk"]["S"].removeprefix("sub#"),
        connection_id=item["sk"]["S"],
        endpoint=item["endpoint"]["S"],
        epoch=item["epoch"]["S"],
        after_seq=int(item["after"]["N"]),
        state=SubscriptionState(item["state"]["S"]),
        expires_at=int(item[TTL_ATTRIBUTE]["N"]),
    )


class DynamoStore:
    """Implements both MessageStore and SubscriptionStore over three tables."""

    def __init__(
        self, client: DynamoDBClient, channels_table: str, messages_table: str,
        connections_table: str,
    ) -> None:
        self.client = client
        self.channels_table = channels_table
        self.messages_table = messages_table
        self.connections_table = connections_table

    # -- MessageStore ----------------------------------------------------------------------

    def get_channel(self, name: str) -> ChannelMeta | None:
        item = self.client.get_item(
            TableName=self.channels_table, Key={"pk": {"S": name}}, ConsistentRead=True
        ).get("Item")
        return meta_from_item(item) if item else None

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        try:
            self.client.put_item(
                TableName=self.channels_table,
                Item=_meta_item(meta),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if _is_conflict(error):
                existing = meta_from_item(old) if old else self.get_channel(meta.name)
                if existing is not None:
                    raise ChannelExistsError(existing) from None
                return self.create_channel(meta)  # deleted in between: try again
            raise
        return meta

    def delete_channel(self, meta: ChannelMeta, purge: bool = False) -> Deletion | None:
        # The log items of this epoch become unreachable (keys include the epoch) and expire
        # through TTL: deleting a channel is one write whatever its length. Forks read those
        # items by (name, epoch) until they expire, whatever happens to this item.
        key = {"pk": {"S": meta.name}}
        epoch = {":e": {"S": meta.epoch}}
        for _ in range(10):  # each step is conditional; loop only while forks come and go
            try:
                self.client.delete_item(
                    TableName=self.channels_table,
                    Key=key,
                    ConditionExpression=(
                        "epoch = :e" if purge else "epoch = :e AND attribute_not_exists(forks)"
                    ),
                    ExpressionAttributeValues=epoch,
                )
                return Deletion(soft=False)
            except ClientError as error:
                if not _is_conflict(error):
                    raise
            if purge:
                return None
            try:
                # Forks still read its log: keep the item, marked deleted, until the last
                # fork releases it (release_fork).
                self.client.update_item(
                    TableName=self.channels_table,
                    Key=key,
                    UpdateExpression="SET deleted = :t",
                    ConditionExpression="epoch = :e AND attribute_exists(forks)",
                    ExpressionAttributeValues={**epoch, ":t": {"BOOL": True}},
                )
                return Deletion(soft=True)
            except ClientError as error:
                if not _is_conflict(error):
                    raise
            current = self.get_channel(meta.name)
            if current is None or current.epoch != meta.epoch:
                return None
        raise AppendConflictError(meta.name)

    def create_fork(self, meta: ChannelMeta, prefix: StoredMessage | None = None) -> ChannelMeta:
        assert meta.fork is not None
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.channels_table,
                    "Item": _meta_item(meta),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                # The source records the fork: a soft delete keeps it while any is listed.
                "Update": {
                    "TableName": self.channels_table,
                    "Key": {"pk": {"S": meta.fork.source}},
                    "UpdateExpression": "ADD forks :m",
                    "ConditionExpression": "epoch = :e AND attribute_not_exists(deleted)",
                    "ExpressionAttributeValues": {
                        ":m": {"SS": [fork_member(meta.name, meta.epoch)]},
                        ":e": {"S": meta.fork.source_epoch},
                    },
                }
            },
        ]
        if prefix is not None:
            items.append({"Put": {"TableName": self.messages_table, "Item": message_item(prefix)}})
        try:
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            if not _is_conflict(error):
                raise
            codes = _cancellation_codes(error)
            if codes and codes[0] == "ConditionalCheckFailed":
                existing = self.get_channel(meta.name)
                if existing is not None:
                    raise ChannelExistsError(existing) from None
            raise ForkSourceChangedError(meta.fork.source) from None
        return meta

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        try:
            item = self.client.update_item(
                TableName=self.channels_table,
                Key={"pk": {"S": name}},
                UpdateExpression="DELETE forks :m",
                ConditionExpression="epoch = :e",
                ExpressionAttributeValues={":m": {"SS": [member]}, ":e": {"S": epoch}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if _is_conflict(error):
                return None  # gone or re-created: it holds nothing of ours
            raise
        meta = meta_from_item(item)
        if not meta.deleted or meta.forks:
            return None
        try:
            # The last reference of a soft-deleted channel: collect it (an empty set is no
            # attribute in DynamoDB, so "no forks" is attribute_not_exists).
            self.client.delete_item(
                TableName=self.channels_table,
                Key={"pk": {"S": name}},
                ConditionExpression="epoch = :e AND deleted = :t AND attribute_not_exists(forks)",
                ExpressionAttributeValues={":e": {"S": epoch}, ":t": {"BOOL": True}},
            )
        except ClientError as error:
            if _is_conflict(error):
                return None  # another release collected it
            raise
        return meta

    def append(
        self,
        meta: ChannelMeta,
        messages: Sequence[NewMessage],
        ts: int,
        expires_at: int,
        guard: AppendGuard | None = None,
    ) -> list[StoredMessage]:
        new_head = meta.head + len(messages)
        head_update: dict[str, Any] = {
            "TableName": self.channels_table,
            "Key": {"pk": {"S": meta.name}},
            "UpdateExpression": "SET head = :new",
            "ConditionExpression": "epoch = :e AND head = :h AND attribute_not_exists(deleted)",
            "ExpressionAttributeValues": {
                ":new": _n(new_head), ":e": {"S": meta.epoch}, ":h": _n(meta.head),
            },
        }
        items: list[dict[str, Any]] = [{"Update": head_update}]
        if guard is not None:
            self._guard(meta, guard, head_update, items, expires_at)
        stored: list[StoredMessage] = []
        for offset, message in enumerate(messages, start=1):
            seq = meta.head + offset
            stored_message = StoredMessage(
                channel=meta.name, epoch=meta.epoch, seq=seq, body=message.body, ts=ts,
                expires_at=expires_at, id=message.id, publisher=message.publisher,
            )
            if message.id is not None:
                items.append(
                    {
                        "Put": {
                            "TableName": self.channels_table,
                            "Item": {
                                "pk": {"S": _claim_key(meta.name, meta.epoch, message.id)},
                                "seq": _n(seq),
                                TTL_ATTRIBUTE: _n(expires_at),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
            items.append(
                {"Put": {"TableName": self.messages_table, "Item": message_item(stored_message)}}
            )
            stored.append(stored_message)
        try:
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            if _is_conflict(error):
                raise AppendConflictError(meta.name) from None
            raise
        return stored

    def _guard(
        self,
        meta: ChannelMeta,
        guard: AppendGuard,
        head_update: dict[str, Any],
        items: list[dict[str, Any]],
        expires_at: int,
    ) -> None:
        """Add a Durable Streams guard to an append transaction: the stream must still be
        open and the producer's state unchanged; the new state commits with the messages."""
        values = head_update["ExpressionAttributeValues"]
        head_update["ConditionExpression"] += " AND attribute_not_exists(closed)"
        sets = []
        if guard.close:
            sets.append("closed = :closed")
            values[":closed"] = {"BOOL": True}
        if guard.stream_seq is not None:
            sets.append("wseq = :wseq")
            values[":wseq"] = {"S": guard.stream_seq}
        if guard.stream_expires_at is not None:
            sets.append(f"stream_expires = :sexp, {TTL_ATTRIBUTE} = :mexp")
            values[":sexp"] = _n(guard.stream_expires_at)
            values[":mexp"] = _n(guard.stream_expires_at + 86400)
        if sets:
            head_update["UpdateExpression"] += ", " + ", ".join(sets)
        producer = guard.producer
        if producer is None:
            return
        before = guard.producer_before
        condition_values: dict[str, Any] = {":ce": {"S": meta.epoch}}
        if before is None:
            condition = "attribute_not_exists(pk) OR cepoch <> :ce"
        else:
            condition = "cepoch = :ce AND pepoch = :pe AND pseq = :ps"
            condition_values.update({":pe": _n(before.epoch), ":ps": _n(before.last_seq)})
        items.append(
            {
                "Put": {
                    "TableName": self.channels_table,
                    "Item": {
                        "pk": {"S": _producer_key(meta.name, producer.producer_id)},
                        "cepoch": {"S": meta.epoch},
                        "pepoch": _n(producer.epoch),
                        "pseq": _n(producer.last_seq),
                        # Kept as long as the data it deduplicates.
                        TTL_ATTRIBUTE: _n(expires_at),
                    },
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": condition_values,
                }
            }
        )

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        item = self.client.get_item(
            TableName=self.channels_table,
            Key={"pk": {"S": _producer_key(meta.name, producer_id)}},
            ConsistentRead=True,
        ).get("Item")
        if not item or item["cepoch"]["S"] != meta.epoch:
            return None  # none yet, or a leftover of a deleted life of the channel
        return ProducerState(producer_id, int(item["pepoch"]["N"]), int(item["pseq"]["N"]))

    def extend_expiry(self, meta: ChannelMeta, stream_expires_at: int) -> None:
        try:
            self.client.update_item(
                TableName=self.channels_table,
                Key={"pk": {"S": meta.name}},
                UpdateExpression=f"SET stream_expires = :sexp, {TTL_ATTRIBUTE} = :mexp",
                ConditionExpression=(
                    "epoch = :e AND (attribute_not_exists(stream_expires) "
                    "OR stream_expires < :sexp)"
                ),
                ExpressionAttributeValues={
                    ":e": {"S": meta.epoch},
                    ":sexp": _n(stream_expires_at),
                    ":mexp": _n(stream_expires_at + 86400),
                },
            )
        except ClientError as error:
            if not _is_conflict(error):  # already later, or the stream is gone: fine
                raise

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), 100):
            keys: list[dict[str, Any]] = [
                {"pk": {"S": _claim_key(meta.name, meta.epoch, i)}}
                for i in wanted[start : start + 100]
            ]
            request: dict[str, Any] = {
                self.channels_table: {"Keys": keys, "ConsistentRead": True}
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.channels_table, []):
                    message_id = item["pk"]["S"].split("#", 3)[3]
                    found[message_id] = int(item["seq"]["N"])
                request = dict(response.get("UnprocessedKeys") or {})
        return found

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        upper = until_seq if until_seq is not None else 2**63 - 1
        if upper <= after_seq or limit <= 0:
            return []
        response = self.client.query(
            TableName=self.messages_table,
            KeyConditionExpression="pk = :pk AND seq BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": log_key(name, epoch)}, ":lo": _n(after_seq + 1), ":hi": _n(upper),
            },
            Limit=limit,
            ConsistentRead=True,
        )
        return [message_from_item(item) for item in response.get("Items", [])]

    def first_retained(self, name: str, epoch: str, now_s: int, head: int) -> int:
        response = self.client.query(
            TableName=self.messages_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": log_key(name, epoch)}},
            ProjectionExpression="seq, expires_at",
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items:
            return head + 1
        first = int(items[0]["seq"]["N"])
        if int(items[0][TTL_ATTRIBUTE]["N"]) > now_s:
            return first
        # Expired but not yet deleted: messages expire in seq order, so binary-search for the
        # first live one with GetItems (log2 of the expired stretch, not a scan of it).
        lo, hi = first + 1, head + 1
        while lo < hi:
            mid = (lo + hi) // 2
            item = self.client.get_item(
                TableName=self.messages_table,
                Key={"pk": {"S": log_key(name, epoch)}, "seq": _n(mid)},
                ProjectionExpression="expires_at",
                ConsistentRead=True,
            ).get("Item")
            if item is not None and int(item[TTL_ATTRIBUTE]["N"]) > now_s:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # -- SubscriptionStore -----------------------------------------------------------------

    def put_connection(self, connection: Connection) -> None:
        item: dict[str, Any] = {
            **_conn_key(connection.connection_id),
            "endpoint": {"S": connection.endpoint},
            "connected": _n(connection.connected_ms),
            TTL_ATTRIBUTE: _n(connection.expires_at),
        }
        if connection.principal is not None:
            item["principal"] = {"S": connection.principal}
        if connection.claims is not None:
            item["claims"] = {"S": connection.claims}
        self.client.put_item(TableName=self.connections_table, Item=item)

    def get_connection(self, connection_id: str) -> Connection | None:
        item = self.client.get_item(
            TableName=self.connections_table, Key=_conn_key(connection_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return Connection(
            connection_id=connection_id,
            endpoint=item["endpoint"]["S"],
            connected_ms=int(item["connected"]["N"]),
            expires_at=int(item[TTL_ATTRIBUTE]["N"]),
            principal=item["principal"]["S"] if "principal" in item else None,
            claims=item["claims"]["S"] if "claims" in item else None,
        )

    def delete_connection(self, connection_id: str) -> None:
        item = self.client.get_item(
            TableName=self.connections_table,
            Key=_conn_key(connection_id),
            ProjectionExpression="channels",
            ConsistentRead=True,
        ).get("Item") or {}
        keys = [_sub_key(c, connection_id) for c in item.get("channels", {}).get("SS", [])]
        keys.append(_conn_key(connection_id))
        for batch in _chunks(keys, 25):
            request: dict[str, Any] = {
                self.connections_table: [{"DeleteRequest": {"Key": k}} for k in batch]
            }
            while request:
                response = self.client.batch_write_item(RequestItems=request)
                request = dict(response.get("UnprocessedItems") or {})

    def subscribe(self, subscription: Subscription, max_per_connection: int) -> None:
        try:
            # The connection item holds the set of its channels: the limit is enforced
            # atomically and $disconnect finds the subscriptions without an index.
            self.client.update_item(
                TableName=self.connections_table,
                Key=_conn_key(subscription.connection_id),
                UpdateExpression=(
                    "ADD channels :c SET endpoint = if_not_exists(endpoint, :ep), "
                    "expires_at = if_not_exists(expires_at, :exp), "
                    "connected = if_not_exists(connected, :zero)"
                ),
                ConditionExpression=(
                    "attribute_not_exists(channels) OR contains(channels, :name) "
                    "OR size(channels) < :max"
                ),
                ExpressionAttributeValues={
                    ":c": {"SS": [subscription.channel]},
                    ":name": {"S": subscription.channel},
                    ":max": _n(max_per_connection),
                    ":ep": {"S": subscription.endpoint},
                    ":exp": _n(subscription.expires_at),
                    ":zero": _n(0),
                },
            )
        except ClientError as error:
            if _is_conflict(error):
                raise SubscriptionLimitError(subscription.connection_id) from None
            raise
        self.client.put_item(
            TableName=self.connections_table,
            Item={
                **_sub_key(subscription.channel, subscription.connection_id),
                "endpoint": {"S": subscription.endpoint},
                "epoch": {"S": subscription.epoch},
                "after": _n(subscription.after_seq),
                "state": {"S": SubscriptionState.REPLAYING.value},
                TTL_ATTRIBUTE: _n(subscription.expires_at),
            },
        )

    def unsubscribe(self, channel: str, connection_id: str) -> bool:
        old = self.client.delete_item(
            TableName=self.connections_table,
            Key=_sub_key(channel, connection_id),
            ReturnValues="ALL_OLD",
        ).get("Attributes")
        if not old:
            return False
        try:
            self.client.update_item(
                TableName=self.connections_table,
                Key=_conn_key(connection_id),
                UpdateExpression="DELETE channels :c",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":c": {"SS": [channel]}},
            )
        except ClientError as error:
            if not _is_conflict(error):  # the connection is already gone: nothing to tidy
                raise
        return True

    def go_live(self, subscription: Subscription, head: int) -> GoLive:
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.channels_table,
                            "Key": {"pk": {"S": subscription.channel}},
                            "ConditionExpression": "epoch = :e AND head = :h",
                            "ExpressionAttributeValues": {
                                ":e": {"S": subscription.epoch}, ":h": _n(head),
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.connections_table,
                            "Key": _sub_key(subscription.channel, subscription.connection_id),
                            "UpdateExpression": "SET #s = :live, #a = :h",
                            "ConditionExpression": "attribute_exists(pk) AND epoch = :e",
                            "ExpressionAttributeNames": {"#s": "state", "#a": "after"},
                            "ExpressionAttributeValues": {
                                ":live": {"S": SubscriptionState.LIVE.value},
                                ":h": _n(head),
                                ":e": {"S": subscription.epoch},
                            },
                        }
                    },
                ]
            )
        except ClientError as error:
            if not _is_conflict(error):
                raise
            codes = _cancellation_codes(error)
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return GoLive.GONE
            return GoLive.HEAD_MOVED
        return GoLive.LIVE

    def subscribers(self, channel: str) -> list[Subscription]:
        # Strongly consistent: a subscription that went live before a message was committed
        # must be seen by that message's fan-out.
        return [_sub_from_item(item) for item in self._query_all(
            TableName=self.connections_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"sub#{channel}"}},
            ConsistentRead=True,
        )]

    def _query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self.client.query(**kwargs)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
