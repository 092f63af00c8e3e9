"""The PresenceStore on DynamoDB, in the connections table (it has a sort key, and every
function that handles connections already holds it):

- ``pres#<channel> / <member key>``     a member: data, client, connection, times, ``exp``
- ``presdue#<minute> / <due>\\x1f<channel>\\x1f<key>`` the sweeper's list for that minute
- ``presdue#cursor / cursor``            the first minute the sweeper still reads
- ``conn#<id> / conn`` gains ``pchannels``: the channels its members are on

``exp`` is the member's logical expiry (the sweeper's business); ``expires_at``, the table's
TTL attribute, is a day later: DynamoDB's deletion is only a backstop.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...core.presence import Member
from .items import TTL_ATTRIBUTE, conn_key, is_conflict, num, query_all

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

_BACKSTOP_S = 86400
_SEP = "\x1f"
_CURSOR = {"pk": {"S": "presdue#cursor"}, "sk": {"S": "cursor"}}


def _member_key(channel: str, key: str) -> dict[str, Any]:
    return {"pk": {"S": f"pres#{channel}"}, "sk": {"S": key}}


def _member_from_item(item: dict[str, Any]) -> Member:
    return Member(
        channel=item["pk"]["S"].removeprefix("pres#"),
        key=item["sk"]["S"],
        client_id=item["client"]["S"] if "client" in item else None,
        data=json.loads(item["data"]["S"]),
        connection_id=item["conn"]["S"] if "conn" in item else None,
        entered_ms=int(item["entered"]["N"]),
        updated_ms=int(item["updated"]["N"]),
        expires_at=int(item["exp"]["N"]),
    )


class DynamoPresenceStore:
    def __init__(self, client: DynamoDBClient, connections_table: str) -> None:
        self.client = client
        self.table = connections_table

    def put_member(self, member: Member) -> Member | None:
        item: dict[str, Any] = {
            **_member_key(member.channel, member.key),
            "data": {"S": json.dumps(member.data, separators=(",", ":"), ensure_ascii=False)},
            "entered": num(member.entered_ms),
            "updated": num(member.updated_ms),
            "exp": num(member.expires_at),
            TTL_ATTRIBUTE: num(member.expires_at + _BACKSTOP_S),
        }
        if member.client_id is not None:
            item["client"] = {"S": member.client_id}
        if member.connection_id is not None:
            item["conn"] = {"S": member.connection_id}
        old = self.client.put_item(TableName=self.table, Item=item, ReturnValues="ALL_OLD").get(
            "Attributes"
        )
        if member.connection_id is not None and old is None:
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key=conn_key(member.connection_id),
                    UpdateExpression="ADD pchannels :c",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":c": {"SS": [member.channel]}},
                )
            except ClientError as error:
                if not is_conflict(error):  # the connection is gone: the sweeper removes it
                    raise
        return _member_from_item(old) if old else None

    def touch_member(
        self, channel: str, key: str, expires_at: int, updated_ms: int
    ) -> Member | None:
        try:
            old = self.client.update_item(
                TableName=self.table,
                Key=_member_key(channel, key),
                UpdateExpression=f"SET #exp = :e, {TTL_ATTRIBUTE} = :t",
                ConditionExpression="attribute_exists(pk) AND #exp < :e",
                ExpressionAttributeNames={"#exp": "exp"},
                ExpressionAttributeValues={
                    ":e": num(expires_at), ":t": num(expires_at + _BACKSTOP_S),
                },
                ReturnValues="ALL_OLD",
            ).get("Attributes")
        except ClientError as error:
            if not is_conflict(error):
                raise
            # Not a member, or already further: read which.
            item = self.client.get_item(
                TableName=self.table, Key=_member_key(channel, key), ConsistentRead=True
            ).get("Item")
            return _member_from_item(item) if item else None
        return _member_from_item(old) if old else None

    def remove_member(
        self, channel: str, key: str, expired_by: int | None = None
    ) -> Member | None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_exists(pk)"}
        if expired_by is not None:
            condition = {
                "ConditionExpression": "attribute_exists(pk) AND #exp <= :by",
                "ExpressionAttributeNames": {"#exp": "exp"},
                "ExpressionAttributeValues": {":by": num(expired_by)},
            }
        try:
            old = self.client.delete_item(
                TableName=self.table, Key=_member_key(channel, key), ReturnValues="ALL_OLD",
                **condition,
            ).get("Attributes")
        except ClientError as error:
            if is_conflict(error):
                return None  # gone already, or heard from meanwhile
            raise
        if not old:
            return None
        removed = _member_from_item(old)
        # A connection has one member per channel (its key names the connection).
        if removed.connection_id is not None:
            try:
                self.client.update_item(
                    TableName=self.table,
                    Key=conn_key(removed.connection_id),
                    UpdateExpression="DELETE pchannels :c",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":c": {"SS": [channel]}},
                )
            except ClientError as error:
                if not is_conflict(error):
                    raise
        return removed

    def members(self, channel: str) -> list[Member]:
        return [
            _member_from_item(item)
            for item in query_all(
                self.client,
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"pres#{channel}"}},
                ConsistentRead=True,
            )
        ]

    def linked(self, connection_id: str) -> list[str]:
        item = self.client.get_item(
            TableName=self.table, Key=conn_key(connection_id),
            ProjectionExpression="pchannels", ConsistentRead=True,
        ).get("Item") or {}
        return sorted(item.get("pchannels", {}).get("SS", []))

    def mark_due(self, bucket: int, channel: str, key: str, expires_at: int) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"presdue#{bucket}"},
                # Sorted by when it is due: a sweep reads only what is due by now.
                "sk": {"S": f"{expires_at:010d}{_SEP}{channel}{_SEP}{key}"},
                TTL_ATTRIBUTE: num(bucket * 60 + _BACKSTOP_S),
            },
        )

    def due(self, bucket: int, until: int) -> list[tuple[str, str]]:
        found = set()
        for item in query_all(
            self.client,
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk < :until",
            ExpressionAttributeValues={
                ":pk": {"S": f"presdue#{bucket}"}, ":until": {"S": f"{until + 1:010d}"},
            },
            ProjectionExpression="sk",
        ):
            _, channel, key = item["sk"]["S"].split(_SEP, 2)
            found.add((channel, key))
        return sorted(found)

    def expiries(self, members: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for start in range(0, len(members), 100):
            keys = [_member_key(c, k) for c, k in members[start : start + 100]]
            request: dict[str, Any] = {self.table: {
                "Keys": keys, "ProjectionExpression": "pk, sk, #exp",
                "ExpressionAttributeNames": {"#exp": "exp"},
            }}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    channel = item["pk"]["S"].removeprefix("pres#")
                    out[(channel, item["sk"]["S"])] = int(item["exp"]["N"])
                request = response.get("UnprocessedKeys") or {}
        return out

    def swept_bucket(self) -> int | None:
        item = self.client.get_item(
            TableName=self.table, Key=_CURSOR, ConsistentRead=True
        ).get("Item")
        return int(item["bucket"]["N"]) if item else None

    def set_swept_bucket(self, bucket: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table, Key=_CURSOR,
                UpdateExpression="SET #b = :b",
                ConditionExpression="attribute_not_exists(#b) OR #b < :b",
                ExpressionAttributeNames={"#b": "bucket"},
                ExpressionAttributeValues={":b": num(bucket)},
            )
        except ClientError as error:
            if not is_conflict(error):  # another sweep moved it as far already
                raise
