"""The SubscriptionStore on DynamoDB: connections and their subscriptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...core.subscriptions import Connection, Handover, Subscription, SubscriptionState
from ...ports import SubscriptionLimitError
from .items import (
    TTL_ATTRIBUTE,
    chunks,
    conn_key,
    is_conflict,
    num,
    query_all,
    sub_from_item,
    sub_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any


class DynamoSubscriptionStore:
    """The SubscriptionStore: connections and subscriptions in the connections table."""

    def __init__(self, client: DynamoDBClient, connections_table: str) -> None:
        self.client = client
        self.connections_table = connections_table

    def put_connection(self, connection: Connection) -> None:
        item: dict[str, Any] = {
            **conn_key(connection.connection_id),
            "endpoint": {"S": connection.endpoint},
            "connected": num(connection.connected_ms),
            TTL_ATTRIBUTE: num(connection.expires_at),
        }
        if connection.principal is not None:
            item["principal"] = {"S": connection.principal}
        if connection.claims is not None:
            item["claims"] = {"S": connection.claims}
        self.client.put_item(TableName=self.connections_table, Item=item)

    def get_connection(self, connection_id: str) -> Connection | None:
        item = self.client.get_item(
            TableName=self.connections_table, Key=conn_key(connection_id), ConsistentRead=True
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
            Key=conn_key(connection_id),
            ProjectionExpression="channels",
            ConsistentRead=True,
        ).get("Item") or {}
        keys = [sub_key(c, connection_id) for c in item.get("channels", {}).get("SS", [])]
        keys.append(conn_key(connection_id))
        for batch in chunks(keys, 25):
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
                Key=conn_key(subscription.connection_id),
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
                    ":max": num(max_per_connection),
                    ":ep": {"S": subscription.endpoint},
                    ":exp": num(subscription.expires_at),
                    ":zero": num(0),
                },
            )
        except ClientError as error:
            if is_conflict(error):
                raise SubscriptionLimitError(subscription.connection_id) from None
            raise
        self.client.put_item(
            TableName=self.connections_table,
            Item={
                **sub_key(subscription.channel, subscription.connection_id),
                "endpoint": {"S": subscription.endpoint},
                "epoch": {"S": subscription.epoch},
                "after": num(subscription.after_seq),
                "state": {"S": SubscriptionState.REPLAYING.value},
                "batch": {"BOOL": subscription.batch},
                "since": num(subscription.since_ms),
                TTL_ATTRIBUTE: num(subscription.expires_at),
            },
        )

    def unsubscribe(
        self, channel: str, connection_id: str, received_ms: int | None = None
    ) -> bool:
        condition: dict[str, Any] = {}
        if received_ms is not None:
            condition = {
                "ConditionExpression": "attribute_not_exists(since) OR since <= :u",
                "ExpressionAttributeValues": {":u": num(received_ms)},
            }
        try:
            old = self.client.delete_item(
                TableName=self.connections_table,
                Key=sub_key(channel, connection_id),
                ReturnValues="ALL_OLD",
                **condition,
            ).get("Attributes")
        except ClientError as error:
            if is_conflict(error):
                return False  # a later subscription: it stays
            raise
        if not old:
            return False
        try:
            self.client.update_item(
                TableName=self.connections_table,
                Key=conn_key(connection_id),
                UpdateExpression="DELETE channels :c",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":c": {"SS": [channel]}},
            )
        except ClientError as error:
            if not is_conflict(error):  # the connection is already gone: nothing to tidy
                raise
        return True

    def note_missed(self, subscription: Subscription, seq: int) -> bool:
        return self._transition(
            subscription, "SET missed = :m",
            "#s = :from AND (attribute_not_exists(missed) OR missed < :m)",
            {":from": SubscriptionState.REPLAYING, ":m": seq},
        ) or self._still_replaying(subscription)

    def go_live(self, subscription: Subscription, after_seq: int) -> Handover:
        if self._transition(
            subscription, "SET #s = :to, #a = :a REMOVE missed",
            "#s = :from AND (attribute_not_exists(missed) OR missed <= :a)",
            {":from": SubscriptionState.REPLAYING, ":to": SubscriptionState.LIVE,
             ":a": after_seq},
        ):
            return Handover.LIVE
        return Handover.BEHIND if self._still_replaying(subscription) else Handover.GONE

    def _still_replaying(self, subscription: Subscription) -> bool:
        current = self.get_subscription(subscription.channel, subscription.connection_id)
        return (
            current is not None
            and current.epoch == subscription.epoch
            and current.state is SubscriptionState.REPLAYING
        )

    def get_subscription(self, channel: str, connection_id: str) -> Subscription | None:
        item = self.client.get_item(
            TableName=self.connections_table,
            Key=sub_key(channel, connection_id),
            ConsistentRead=True,
        ).get("Item")
        return sub_from_item(item) if item else None

    def _transition(
        self, subscription: Subscription, update: str, condition: str,
        values: Mapping[str, SubscriptionState | int],
    ) -> bool:
        """A conditional update of one subscription of this epoch; False if its condition
        fails (or the subscription is gone, or is a later subscription)."""
        try:
            self.client.update_item(
                TableName=self.connections_table,
                Key=sub_key(subscription.channel, subscription.connection_id),
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(pk) AND epoch = :e AND {condition}",
                ExpressionAttributeNames={
                    name: attribute
                    for name, attribute in (("#s", "state"), ("#a", "after"))
                    if name in update or name in condition
                },
                ExpressionAttributeValues={
                    ":e": {"S": subscription.epoch},
                    **{
                        k: {"S": v.value} if isinstance(v, SubscriptionState) else num(v)
                        for k, v in values.items()
                    },
                },
            )
        except ClientError as error:
            if is_conflict(error):
                return False
            raise
        return True

    def subscribers(self, channel: str) -> list[Subscription]:
        # Strongly consistent: a subscription that went live before a message was committed
        # must be seen by that message's fan-out.
        return [sub_from_item(item) for item in query_all(
            self.client,
            TableName=self.connections_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"sub#{channel}"}},
            ConsistentRead=True,
        )]
