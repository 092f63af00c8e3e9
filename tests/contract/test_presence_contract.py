"""The PresenceStore contract: the in-memory twin and DynamoDB (on moto) must agree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.adapters.dynamodb import DynamoPresenceStore
from chalicelib.adapters.memory import MemoryPresenceStore
from chalicelib.core.presence import Member
from chalicelib.core.subscriptions import Connection
from tests.support.aws import TABLES, dynamo_store, moto_dynamodb

TS = 1_764_430_000_000
T0 = TS // 1000


@pytest.fixture(params=["memory", "dynamodb"])
def presence(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryPresenceStore()
    else:
        with moto_dynamodb() as client:
            # A WebSocket member is linked on its connection's item, which $connect wrote.
            stores = dynamo_store(client)
            for cid in ("c1", "c2"):
                stores.put_connection(Connection(cid, "https://gw/api", TS, 2_000_000_000,
                                                 principal=None))
            yield DynamoPresenceStore(client, TABLES[2])


def member(key: str = "alice/c1", channel: str = "runs:1", conn: str | None = "c1",
           data: dict[str, Any] | None = None, expires_at: int = T0 + 40) -> Member:
    return Member(channel=channel, key=key, client_id=key.split("/")[0],
                  data=data if data is not None else {"state": "thinking"},
                  connection_id=conn, entered_ms=TS, updated_ms=TS, expires_at=expires_at)


def test_put_then_members_round_trips_every_field(presence: Any) -> None:
    assert presence.put_member(member()) is None
    http = member("key:k1/worker-3", conn=None, data={"role": "agent", "n": 1.5, "ok": True})
    assert presence.put_member(http) is None
    assert sorted(presence.members("runs:1"), key=lambda m: m.key) == sorted(
        [member(), http], key=lambda m: m.key)
    assert presence.members("runs:2") == []


def test_put_again_replaces_and_returns_what_was_there(presence: Any) -> None:
    presence.put_member(member())
    newer = replace(member(), data={"state": "done"}, updated_ms=TS + 5)
    assert presence.put_member(newer) == member()
    assert presence.members("runs:1") == [newer]


def test_a_websocket_member_is_linked_to_its_connection_until_its_last_member_leaves(
    presence: Any,
) -> None:
    presence.put_member(member())
    presence.put_member(member(channel="runs:2"))
    presence.put_member(member("bob/c2", conn="c2"))
    presence.put_member(member("key:k/w", conn=None))
    assert presence.linked("c1") == ["runs:1", "runs:2"]
    assert presence.linked("c2") == ["runs:1"]
    assert presence.remove_member("runs:2", "alice/c1") is not None
    assert presence.linked("c1") == ["runs:1"]
    assert presence.linked("nobody") == []


def test_touch_moves_the_expiry_forward_only_and_says_who_it_was(presence: Any) -> None:
    presence.put_member(member())
    before = presence.touch_member("runs:1", "alice/c1", T0 + 60, TS + 20_000)
    assert before is not None and before.expires_at == T0 + 40
    assert presence.members("runs:1")[0].expires_at == T0 + 60
    # An older heartbeat (reordered) never shortens it.
    presence.touch_member("runs:1", "alice/c1", T0 + 50, TS + 10_000)
    assert presence.members("runs:1")[0].expires_at == T0 + 60


def test_touch_of_a_non_member_writes_nothing(presence: Any) -> None:
    assert presence.touch_member("runs:1", "ghost/c9", T0 + 60, TS) is None
    assert presence.members("runs:1") == []


def test_remove_returns_the_member_once(presence: Any) -> None:
    presence.put_member(member())
    assert presence.remove_member("runs:1", "alice/c1") == member()
    assert presence.remove_member("runs:1", "alice/c1") is None
    assert presence.members("runs:1") == []


def test_an_expiry_sweep_spares_a_member_that_heartbeated_meanwhile(presence: Any) -> None:
    presence.put_member(member(expires_at=T0 + 40))
    presence.touch_member("runs:1", "alice/c1", T0 + 80, TS)
    # The sweeper saw the member due at T0 + 40, but it was heard from since.
    assert presence.remove_member("runs:1", "alice/c1", expired_by=T0 + 45) is None
    assert len(presence.members("runs:1")) == 1
    gone = presence.remove_member("runs:1", "alice/c1", expired_by=T0 + 80)
    assert gone is not None and gone.expires_at == T0 + 80


def test_due_lists_are_per_minute_read_up_to_a_time_and_idempotent(presence: Any) -> None:
    presence.mark_due(100, "runs:1", "alice/c1", 6010)
    presence.mark_due(100, "runs:1", "alice/c1", 6010)
    presence.mark_due(100, "a:b", "key:k/w-1", 6030)
    presence.mark_due(100, "runs:1", "bob/c2", 6059)
    presence.mark_due(101, "runs:1", "bob/c2", 6065)
    assert presence.due(100, 6009) == []
    assert presence.due(100, 6010) == [("runs:1", "alice/c1")]
    assert presence.due(100, 6059) == [("a:b", "key:k/w-1"), ("runs:1", "alice/c1"),
                                       ("runs:1", "bob/c2")]
    assert presence.due(101, 7000) == [("runs:1", "bob/c2")]
    assert presence.due(99, 7000) == []


def test_expiries_are_the_members_current_ones(presence: Any) -> None:
    presence.put_member(member(expires_at=T0 + 40))
    presence.put_member(member("key:k/w", conn=None, expires_at=T0 + 10))
    presence.touch_member("runs:1", "alice/c1", T0 + 55, TS)
    many = [("runs:1", f"ghost/{i}") for i in range(150)]  # over one BatchGetItem's 100
    assert presence.expiries([("runs:1", "alice/c1"), ("runs:1", "key:k/w"), *many]) == {
        ("runs:1", "alice/c1"): T0 + 55, ("runs:1", "key:k/w"): T0 + 10}
    assert presence.expiries([]) == {}


def test_the_sweep_cursor_only_moves_forward(presence: Any) -> None:
    assert presence.swept_bucket() is None
    presence.set_swept_bucket(100)
    presence.set_swept_bucket(99)
    assert presence.swept_bucket() == 100
    presence.set_swept_bucket(102)
    assert presence.swept_bucket() == 102


def test_unicode_data_survives(presence: Any) -> None:
    presence.put_member(member(data={"state": "думаю 🤔", "nested": {"a": [1, None]}}))
    assert presence.members("runs:1")[0].data == {"state": "думаю 🤔", "nested": {"a": [1, None]}}
