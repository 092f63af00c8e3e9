"""The MessageStore on DynamoDB: channels, logs, idempotency claims, producer states.

The low-level client is used on purpose: no resource layer to import on a cold start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...core.channels import ChannelMeta
from ...core.forks import fork_member
from ...core.messages import NewMessage, StoredMessage
from ...core.producers import ProducerState
from ...ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    Deletion,
    ForkSourceChangedError,
)
from .items import (
    TTL_ATTRIBUTE,
    cancellation_codes,
    claim_key,
    is_conflict,
    log_key,
    message_from_item,
    message_item,
    meta_from_item,
    meta_item,
    num,
    producer_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any


class DynamoMessageStore:
    """The MessageStore: channel metadata, claims and producer states in the channels table,
    logs in the messages table."""

    def __init__(self, client: DynamoDBClient, channels_table: str, messages_table: str) -> None:
        self.client = client
        self.channels_table = channels_table
        self.messages_table = messages_table

    def get_channel(self, name: str) -> ChannelMeta | None:
        item = self.client.get_item(
            TableName=self.channels_table, Key={"pk": {"S": name}}, ConsistentRead=True
        ).get("Item")
        return meta_from_item(item) if item else None

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        try:
            self.client.put_item(
                TableName=self.channels_table,
                Item=meta_item(meta),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if is_conflict(error):
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
                if not is_conflict(error):
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
                if not is_conflict(error):
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
                    "Item": meta_item(meta),
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
            if not is_conflict(error):
                raise
            codes = cancellation_codes(error)
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
            if is_conflict(error):
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
            if is_conflict(error):
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
                ":new": num(new_head), ":e": {"S": meta.epoch}, ":h": num(meta.head),
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
                                "pk": {"S": claim_key(meta.name, meta.epoch, message.id)},
                                "seq": num(seq),
                                TTL_ATTRIBUTE: num(expires_at),
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
            if is_conflict(error):
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
            values[":sexp"] = num(guard.stream_expires_at)
            values[":mexp"] = num(guard.stream_expires_at + 86400)
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
            condition_values.update({":pe": num(before.epoch), ":ps": num(before.last_seq)})
        items.append(
            {
                "Put": {
                    "TableName": self.channels_table,
                    "Item": {
                        "pk": {"S": producer_key(meta.name, producer.producer_id)},
                        "cepoch": {"S": meta.epoch},
                        "pepoch": num(producer.epoch),
                        "pseq": num(producer.last_seq),
                        # Kept as long as the data it deduplicates.
                        TTL_ATTRIBUTE: num(expires_at),
                    },
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": condition_values,
                }
            }
        )

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        item = self.client.get_item(
            TableName=self.channels_table,
            Key={"pk": {"S": producer_key(meta.name, producer_id)}},
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
                    ":sexp": num(stream_expires_at),
                    ":mexp": num(stream_expires_at + 86400),
                },
            )
        except ClientError as error:
            if not is_conflict(error):  # already later, or the stream is gone: fine
                raise

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), 100):
            keys: list[dict[str, Any]] = [
                {"pk": {"S": claim_key(meta.name, meta.epoch, i)}}
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
                ":pk": {"S": log_key(name, epoch)}, ":lo": num(after_seq + 1), ":hi": num(upper),
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
                Key={"pk": {"S": log_key(name, epoch)}, "seq": num(mid)},
                ProjectionExpression="expires_at",
                ConsistentRead=True,
            ).get("Item")
            if item is not None and int(item[TTL_ATTRIBUTE]["N"]) > now_s:
                hi = mid
            else:
                lo = mid + 1
        return lo
