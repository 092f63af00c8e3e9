"""The WakeStore on DynamoDB: one table (``pk``, ``sk``, both strings), every lookup a key.

    pk                 sk                       what
    sub#<id>           meta                     the subscription: ``doc`` (JSON: config and
                                                delivery state), ``ver`` (compare-and-set)
    sub#<id>           link#<incarnation>#<ch>  one stream's cursor: ``acked``, ``tail``,
                                                ``types`` (glob, explicit)
    idx#<namespace>    <id>                     a pattern subscription, found by the first
                                                segment of a channel (one Query per channel)
    all                <id>                     every subscription (listing; read rarely)
    exp#<channel>      <id>                     an explicit link, found by its channel

The incarnation (the subscription's creation time) in link keys keeps the links of a deleted
subscription, which a racing stream consumer may still write, away from a new one with the
same id. Nothing expires: a subscription lives until it is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...core.batches import TRANSACTION_ITEMS
from ...core.wakes import EXPLICIT, GLOB, IndexEntry, Link, WakeSubscription
from .items import chunks, is_conflict, num, query_all

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

META = "meta"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _meta_key(sub_id: str) -> dict[str, Any]:
    return {"pk": _s(f"sub#{sub_id}"), "sk": _s(META)}


def _link_key(sub_id: str, incarnation: str, channel: str) -> dict[str, Any]:
    return {"pk": _s(f"sub#{sub_id}"), "sk": _s(f"link#{incarnation}#{channel}")}


def _link(item: Mapping[str, Any]) -> Link:
    channel = item["sk"]["S"].split("#", 2)[2]
    return Link(channel, frozenset(item.get("types", {}).get("SS", [])),
                item["acked"]["S"], item["tail"]["S"])


def _entry(item: Mapping[str, Any]) -> IndexEntry:
    return IndexEntry.from_doc(item["doc"]["S"])


def _failed_condition(error: ClientError) -> bool:
    return is_conflict(error)


class DynamoWakeStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self.client = client
        self.table = table

    # -- subscriptions ---------------------------------------------------------------------

    def _meta_item(self, sub: WakeSubscription, version: int) -> dict[str, Any]:
        return {**_meta_key(sub.id), "doc": _s(sub.to_doc()), "ver": num(version)}

    def create(self, sub: WakeSubscription) -> bool:
        items: list[Any] = [{"Put": {
            "TableName": self.table, "Item": self._meta_item(sub, 1),
            "ConditionExpression": "attribute_not_exists(pk)",
        }}, {"Put": {"TableName": self.table, "Item": {"pk": _s("all"), "sk": _s(sub.id)}}}]
        pattern = sub.config.pattern
        if pattern is not None:
            entry = IndexEntry(sub.id, sub.created_ms, sub.config.type, pattern,
                               sub.config.wake_stream)
            items.append({"Put": {"TableName": self.table, "Item": {
                "pk": _s(f"idx#{pattern.namespace}"), "sk": _s(sub.id),
                "doc": _s(entry.to_doc())}}})
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if _failed_condition(error):
                return False
            raise
        return True

    def get(self, sub_id: str) -> WakeSubscription | None:
        item = self.client.get_item(TableName=self.table, Key=_meta_key(sub_id),
                                    ConsistentRead=True).get("Item")
        if not item:
            return None
        return WakeSubscription.from_doc(item["doc"]["S"], int(item["ver"]["N"]))

    def list_ids(self, after: str | None, limit: int) -> list[str]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s("all")}, "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"pk": _s("all"), "sk": _s(after)}
        items = self.client.query(**kwargs).get("Items", [])
        return [item["sk"]["S"] for item in items]

    def save(
        self, sub: WakeSubscription, expected_version: int,
        unchanged: Mapping[str, str | None] | None = None,
    ) -> bool:
        put = {
            "TableName": self.table, "Item": self._meta_item(sub, expected_version + 1),
            "ConditionExpression": "ver = :v",
            "ExpressionAttributeValues": {":v": num(expected_version)},
        }
        checks = list((unchanged or {}).items())[: TRANSACTION_ITEMS - 1]
        try:
            if not checks:
                self.client.put_item(**put)  # type: ignore[arg-type]
                return True
            items: list[Any] = [{"Put": put}]
            for channel, tail in checks:
                check: dict[str, Any] = {
                    "TableName": self.table, "Key": _link_key(sub.id, sub.incarnation, channel),
                }
                if tail is None:
                    check["ConditionExpression"] = "attribute_not_exists(pk)"
                else:
                    check["ConditionExpression"] = "tail = :t"
                    check["ExpressionAttributeValues"] = {":t": _s(tail)}
                items.append({"ConditionCheck": check})
            self.client.transact_write_items(TransactItems=items)
            return True
        except ClientError as error:
            if _failed_condition(error):
                return False
            raise

    def delete(self, sub: WakeSubscription) -> None:
        self.client.delete_item(TableName=self.table, Key=_meta_key(sub.id))
        self.client.delete_item(TableName=self.table, Key={"pk": _s("all"), "sk": _s(sub.id)})
        if sub.config.pattern is not None:
            self.client.delete_item(TableName=self.table, Key={
                "pk": _s(f"idx#{sub.config.pattern.namespace}"), "sk": _s(sub.id)})
        links = list(self.links(sub.id, sub.incarnation).values())
        for link in links:
            if EXPLICIT in link.link_types:
                self.client.delete_item(TableName=self.table, Key={
                    "pk": _s(f"exp#{link.channel}"), "sk": _s(sub.id)})
        for batch in chunks(links, 25):
            requests: dict[str, Any] = {self.table: [
                {"DeleteRequest": {"Key": _link_key(sub.id, sub.incarnation, link.channel)}}
                for link in batch
            ]}
            while requests:
                requests = self.client.batch_write_item(
                    RequestItems=requests).get("UnprocessedItems") or {}

    # -- the index -------------------------------------------------------------------------

    def matching(self, channel: str) -> list[IndexEntry]:
        namespace = channel.split(":", 1)[0]
        entries: list[IndexEntry] = []
        for pk in (f"idx#{namespace}", f"exp#{channel}"):
            entries.extend(_entry(item) for item in query_all(
                self.client, TableName=self.table, KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": _s(pk)},
            ))
        return entries

    # -- links -----------------------------------------------------------------------------

    def link_explicit(self, sub: WakeSubscription, channel: str, at: str) -> Link:
        item = self.client.update_item(
            TableName=self.table, Key=_link_key(sub.id, sub.incarnation, channel),
            UpdateExpression="SET acked = if_not_exists(acked, :a), "
                             "tail = if_not_exists(tail, :a) ADD types :e",
            ExpressionAttributeValues={":a": _s(at), ":e": {"SS": [EXPLICIT]}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        entry = IndexEntry(sub.id, sub.created_ms, sub.config.type, None,
                           sub.config.wake_stream)
        self.client.put_item(TableName=self.table, Item={
            "pk": _s(f"exp#{channel}"), "sk": _s(sub.id), "doc": _s(entry.to_doc())})
        return _link(item)

    def unlink_explicit(self, sub: WakeSubscription, channel: str) -> None:
        self.client.delete_item(TableName=self.table, Key={
            "pk": _s(f"exp#{channel}"), "sk": _s(sub.id)})
        key = _link_key(sub.id, sub.incarnation, channel)
        try:
            item = self.client.update_item(
                TableName=self.table, Key=key, UpdateExpression="DELETE types :e",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":e": {"SS": [EXPLICIT]}}, ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if _failed_condition(error):
                return
            raise
        if not item.get("types"):
            try:
                self.client.delete_item(TableName=self.table, Key=key,
                                        ConditionExpression="attribute_not_exists(types)")
            except ClientError as error:
                if not _failed_condition(error):
                    raise

    def advance(
        self, sub_id: str, incarnation: str, channel: str, tail: str,
        new_acked: str | None = None,
    ) -> Link | None:
        key = _link_key(sub_id, incarnation, channel)
        if new_acked is not None:
            update = "SET tail = :t, acked = if_not_exists(acked, :a) ADD types :g"
            condition = "attribute_not_exists(tail) OR tail < :t"
            values: dict[str, Any] = {":t": _s(tail), ":a": _s(new_acked),
                                      ":g": {"SS": [GLOB]}}
        else:
            update = "SET tail = :t"
            condition = "attribute_exists(tail) AND tail < :t"
            values = {":t": _s(tail)}
        try:
            item = self.client.update_item(
                TableName=self.table, Key=key, UpdateExpression=update,
                ConditionExpression=condition, ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
            return _link(item)
        except ClientError as error:
            if not _failed_condition(error):
                raise
        return self.links(sub_id, incarnation, [channel]).get(channel)

    def ack(self, sub_id: str, incarnation: str, channel: str, offset: str) -> Link | None:
        try:
            item = self.client.update_item(
                TableName=self.table, Key=_link_key(sub_id, incarnation, channel),
                UpdateExpression="SET acked = :a",
                ConditionExpression="attribute_exists(pk) AND acked < :a AND tail >= :a",
                ExpressionAttributeValues={":a": _s(offset)}, ReturnValues="ALL_NEW",
            )["Attributes"]
            return _link(item)
        except ClientError as error:
            if not _failed_condition(error):
                raise
        return self.links(sub_id, incarnation, [channel]).get(channel)

    def links(
        self, sub_id: str, incarnation: str, channels: Sequence[str] | None = None,
    ) -> dict[str, Link]:
        if channels is None:
            items = query_all(
                self.client, TableName=self.table, ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": _s(f"sub#{sub_id}"),
                                           ":prefix": _s(f"link#{incarnation}#")},
            )
            return {link.channel: link for link in map(_link, items)}
        found: dict[str, Link] = {}
        for batch in chunks(sorted(set(channels)), 100):
            request: dict[str, Any] = {self.table: {
                "Keys": [_link_key(sub_id, incarnation, c) for c in batch],
                "ConsistentRead": True,
            }}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    link = _link(item)
                    found[link.channel] = link
                request = response.get("UnprocessedKeys") or {}
        return {c: found[c] for c in channels if c in found}
