"""The dev server's moto patch: its TransactWriteItems replacement behaves exactly like moto's
original, and requests conflict under concurrency as on DynamoDB.

Each scenario runs twice on fresh in-process backends, once through moto's own
``transact_write_items`` and once through ours, and must leave the same items, the same
stream records and raise the same error. The patch is called directly (never installed), so
this module changes nothing for the other tests in the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.exceptions import MockValidationException, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

from switchboard.dev import moto_patch

pytestmark = pytest.mark.integration

ORIGINAL = DynamoDBBackend.transact_write_items


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def head_update(expected: int, new: int) -> dict[str, Any]:
    return {"Update": {
        "TableName": "channels", "Key": {"pk": {"S": "c"}},
        "UpdateExpression": "SET head = :new", "ConditionExpression": "head = :h",
        "ExpressionAttributeValues": {":new": _n(new), ":h": _n(expected)},
    }}


def message_put(seq: int) -> dict[str, Any]:
    return {"Put": {"TableName": "messages",
                    "Item": {"pk": {"S": "c#e"}, "seq": _n(seq), "body": {"B": b"x"}}}}


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "append": [head_update(1, 3), message_put(2), message_put(3)],
    "stale head": [head_update(0, 2), message_put(2)],
    "claim taken": [
        head_update(1, 2),
        {"Put": {"TableName": "channels", "Item": {"pk": {"S": "c#id#e#k"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        message_put(2),
    ],
    "condition check": [
        {"ConditionCheck": {"TableName": "channels", "Key": {"pk": {"S": "c"}},
                            "ConditionExpression": "head = :h",
                            "ExpressionAttributeValues": {":h": _n(1)}}},
        {"Delete": {"TableName": "messages", "Key": {"pk": {"S": "c#e"}, "seq": _n(1)}}},
    ],
    "same item twice": [message_put(2), message_put(2)],
    "invalid update after a put": [
        message_put(2),
        {"Update": {"TableName": "channels", "Key": {"pk": {"S": "c"}},
                    "UpdateExpression": "ADD label :one",
                    "ExpressionAttributeValues": {":one": _n(1)}}},
    ],
}


def run(scenario: list[dict[str, Any]], transact: Callable[..., None]) -> tuple[Any, ...]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="channels", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        client.create_table(
            TableName="messages", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "seq", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "seq", "AttributeType": "N"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        client.put_item(TableName="channels", Item={"pk": {"S": "c"}, "head": _n(1),
                                                    "label": {"S": "text"}})
        client.put_item(TableName="channels", Item={"pk": {"S": "c#id#e#k"}})
        client.put_item(TableName="messages", Item={"pk": {"S": "c#e"}, "seq": _n(1),
                                                    "body": {"B": b"x"}})
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        outcome: Any = None
        try:
            transact(backend, scenario)
        except TransactionCanceledException as error:
            outcome = ("cancelled", error.message, error.description)
        except MockValidationException as error:
            outcome = ("invalid", error.message)
        channels = client.scan(TableName="channels")["Items"]
        messages = client.scan(TableName="messages")["Items"]
        stream = backend.get_table("messages").stream_shard
        assert stream is not None
        records = [(r.record["eventName"], r.record["dynamodb"].get("NewImage"))
                   for r in stream.items]
        return outcome, sorted(map(str, channels)), sorted(map(str, messages)), records


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_outcome_as_moto(name: str) -> None:
    expected = run(SCENARIOS[name], ORIGINAL)
    assert run(SCENARIOS[name], moto_patch.transact_write_items) == expected


def test_scenarios_cover_success_cancellation_and_rollback() -> None:
    outcomes = {name: run(s, moto_patch.transact_write_items)[0] for name, s in SCENARIOS.items()}
    assert outcomes["append"] is None
    assert outcomes["stale head"][0] == "cancelled"
    assert "ConditionalCheckFailed" in outcomes["claim taken"][2]
    # The put before the invalid update was rolled back, stream record included.
    _, _, messages, records = run(SCENARIOS["invalid update after a put"],
                                  moto_patch.transact_write_items)
    assert len(messages) == 1
    assert len(records) == 1


def test_a_transaction_over_4_mb_is_refused_as_dynamodb_does() -> None:
    def big_put(n: int) -> dict[str, Any]:  # about 390 KB: under the 400 KB item limit
        return {"Put": {"TableName": "messages",
                        "Item": {"pk": {"S": "c#e"}, "seq": _n(n), "body": {"S": "x" * 390_000}}}}

    over = run([big_put(n) for n in range(2, 13)], moto_patch.transact_write_items)  # 4.3 MB
    assert over[0] == ("invalid", moto_patch.TRANSACTION_TOO_LARGE)
    assert len(over[3]) == 1  # nothing written: only the setup's stream record
    under = run([big_put(n) for n in range(2, 12)], moto_patch.transact_write_items)  # 3.9 MB
    assert under[0] is None and len(under[3]) == 11


# -- concurrency, as DynamoDB does it (installed patch, in-process moto) --------------------


def test_an_item_in_flight_in_a_transaction_refuses_other_writers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from botocore.exceptions import ClientError

    from tests.support.aws import moto_dynamodb

    monkeypatch.setattr(moto_patch, "TRANSACTION_HOLD_S", 0.5)
    with moto_dynamodb() as client:
        item = {"pk": {"S": "c#e"}, "seq": _n(1), "body": {"B": b"x"}}
        first = threading.Thread(target=lambda: client.transact_write_items(
            TransactItems=[{"Put": {"TableName": "sb-messages", "Item": item}}]))
        first.start()
        try:
            threading.Event().wait(0.15)  # the first transaction now holds the item
            with pytest.raises(ClientError) as single:
                client.put_item(TableName="sb-messages", Item=item)
            assert single.value.response["Error"]["Code"] == "TransactionConflictException"
            with pytest.raises(ClientError) as other:
                client.transact_write_items(TransactItems=[
                    {"Put": {"TableName": "sb-messages", "Item": {**item, "seq": _n(2)}}},
                    {"Put": {"TableName": "sb-messages", "Item": item}},
                ])
            reasons = [r["Code"] for r in other.value.response["CancellationReasons"]]
            assert reasons == ["None", "TransactionConflict"]
            # Reads see the committed state meanwhile, and other items are free.
            assert "Item" not in client.get_item(
                TableName="sb-messages", Key={"pk": {"S": "c#e"}, "seq": _n(1)})
            client.put_item(TableName="sb-messages", Item={**item, "seq": _n(3)})
        finally:
            first.join()
        assert "Item" in client.get_item(
            TableName="sb-messages", Key={"pk": {"S": "c#e"}, "seq": _n(1)})


def test_racing_conditional_puts_on_one_item_let_exactly_one_win() -> None:
    import threading

    from botocore.exceptions import ClientError

    from tests.support.aws import moto_dynamodb

    with moto_dynamodb() as client:
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def racer(n: int) -> None:
            barrier.wait()
            try:
                client.put_item(
                    TableName="sb-messages",
                    Item={"pk": {"S": "c#e"}, "seq": _n(1), "body": {"B": str(n).encode()}},
                    ConditionExpression="attribute_not_exists(seq)",
                )
                outcomes.append("won")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])

        threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["ConditionalCheckFailedException"] * 7 + ["won"]
