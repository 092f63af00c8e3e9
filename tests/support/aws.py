"""moto-backed DynamoDB for integration and contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto import mock_aws

from chalicelib.adapters.dynamodb import (
    DynamoLeaseStore,
    DynamoMessageStore,
    DynamoSubscriptionStore,
    table_definitions,
)
from chalicelib.adapters.dynamodb.wakes import DynamoWakeStore
from switchboard.dev import moto_patch

TABLES = ("sb-channels", "sb-messages", "sb-connections", "sb-wakes")


@contextmanager
def moto_dynamodb() -> Iterator[Any]:
    """A fresh in-process moto with the four tables (TTL on ``expires_at``); yields a client.

    moto serializes nothing (two concurrent conditional writes can both pass), so the same
    patch the dev server uses makes each request atomic, as DynamoDB is.
    """
    moto_patch.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for definition in table_definitions(*TABLES):
            client.create_table(**definition)
            client.update_time_to_live(
                TableName=definition["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        yield client


class DynamoStores:
    """The DynamoDB stores over one client, usable as one object (the contract suite and
    the benchmarks hand the same object to every port, as they do with MemoryStore)."""

    def __init__(self, client: Any) -> None:
        channels, messages, connections, wakes = TABLES
        self.messages = DynamoMessageStore(client, channels, messages)
        self.subscriptions = DynamoSubscriptionStore(client, connections)
        self.wakes = DynamoWakeStore(client, wakes)
        self.leases = DynamoLeaseStore(client, channels)

    def acquire(self, scope: str, lease_id: str, until_s: int, limit: int, now_s: int) -> bool:
        return self.leases.acquire(scope, lease_id, until_s, limit, now_s)

    def release(self, scope: str, lease_id: str) -> None:
        self.leases.release(scope, lease_id)

    def __getattr__(self, name: str) -> Any:
        for store in (self.messages, self.subscriptions):
            if hasattr(store, name):
                return getattr(store, name)
        raise AttributeError(name)


def dynamo_store(client: Any) -> DynamoStores:
    return DynamoStores(client)


class MotoStreamReader:
    """Reads the messages table's DynamoDB stream from moto and shapes Lambda events.

    moto's records lack ``eventSourceARN`` and carry a datetime; Lambda's JSON has the ARN, a
    number, and base64 for binary attributes.
    """

    def __init__(self, table: str = TABLES[1]) -> None:
        self.streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        self.arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"][0]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def next_event(self) -> dict[str, Any]:
        import base64

        response = self.streams.get_records(ShardIterator=self.iterator, Limit=100)
        self.iterator = response["NextShardIterator"]
        records = []
        for record in response["Records"]:
            dynamodb = dict(record["dynamodb"])
            dynamodb["ApproximateCreationDateTime"] = dynamodb[
                "ApproximateCreationDateTime"].timestamp()
            image = {k: dict(v) for k, v in dynamodb.get("NewImage", {}).items()}
            for value in image.values():
                if "B" in value:
                    value["B"] = base64.b64encode(value["B"]).decode()
            dynamodb["NewImage"] = image
            records.append({**record, "eventSourceARN": self.arn, "dynamodb": dynamodb})
        return {"Records": records}
