"""moto-backed DynamoDB for integration and contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto import mock_aws

from chalicelib.adapters.dynamodb import DynamoStore, table_definitions

TABLES = ("sb-channels", "sb-messages", "sb-connections")


@contextmanager
def moto_dynamodb() -> Iterator[Any]:
    """A fresh in-process moto with the three tables (TTL on ``expires_at``); yields a client."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for definition in table_definitions(*TABLES):
            client.create_table(**definition)
            client.update_time_to_live(
                TableName=definition["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        yield client


def dynamo_store(client: Any) -> DynamoStore:
    return DynamoStore(client, *TABLES)
