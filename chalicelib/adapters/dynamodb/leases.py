"""The LeaseStore on DynamoDB: one item per scope in the channels table.

``pk = #lease#<scope>`` holds a map of lease id -> held until (epoch seconds) and a version.
Taking a lease reads the item (strongly consistent), counts the leases that have not run out,
and writes the new one (dropping those that ran out) conditioned on the version it read, so
two concurrent takers cannot both get the last slot. A crashed holder's lease simply runs
out. One scope is one principal's or one connection's: its item is hot only for its owner.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .items import TTL_ATTRIBUTE, is_conflict, lease_key, num

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

_ATTEMPTS = 8  # concurrent takers of one scope: read again and retry, then refuse
_KEEP_S = 3600  # the item outlives its last lease by this much (TTL), then DynamoDB drops it


class DynamoLeaseStore:
    def __init__(self, client: DynamoDBClient, channels_table: str) -> None:
        self.client = client
        self.channels_table = channels_table

    def acquire(self, scope: str, lease_id: str, until_s: int, limit: int, now_s: int) -> bool:
        key = {"pk": {"S": lease_key(scope)}}
        for attempt in range(_ATTEMPTS):
            item = self.client.get_item(
                TableName=self.channels_table, Key=key, ConsistentRead=True
            ).get("Item")
            try:
                if item is None:
                    self.client.put_item(
                        TableName=self.channels_table,
                        Item={
                            **key,
                            "l": {"M": {lease_id: num(until_s)}},
                            "v": num(1),
                            TTL_ATTRIBUTE: num(until_s + _KEEP_S),
                        },
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                    return True
                leases = {k: int(v["N"]) for k, v in item.get("l", {}).get("M", {}).items()}
                live = {k: u for k, u in leases.items() if u > now_s}
                if len(live) >= limit and lease_id not in live:
                    return False
                expired = [k for k in leases if k not in live and k != lease_id]
                names = {"#n": lease_id, **{f"#x{i}": k for i, k in enumerate(expired)}}
                update = "SET l.#n = :u, v = :next, #t = :ttl"
                if expired:
                    update += " REMOVE " + ", ".join(f"l.#x{i}" for i in range(len(expired)))
                version = int(item.get("v", {"N": "0"})["N"])
                self.client.update_item(
                    TableName=self.channels_table,
                    Key=key,
                    UpdateExpression=update,
                    ConditionExpression="v = :v",
                    ExpressionAttributeNames={**names, "#t": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        ":u": num(until_s),
                        ":v": num(version),
                        ":next": num(version + 1),
                        ":ttl": num(max([until_s, *live.values()]) + _KEEP_S),
                    },
                )
                return True
            except ClientError as error:
                if not is_conflict(error):
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))  # another taker won
        return False

    def release(self, scope: str, lease_id: str) -> None:
        try:
            self.client.update_item(
                TableName=self.channels_table,
                Key={"pk": {"S": lease_key(scope)}},
                UpdateExpression="REMOVE l.#n",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#n": lease_id},
            )
        except ClientError as error:
            if not is_conflict(error):
                raise
