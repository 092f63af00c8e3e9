"""core/batches.py: how an append is cut into transactions, and per-request limits."""

from __future__ import annotations

import pytest

from chalicelib.core.batches import (
    GUARD_ITEMS,
    TRANSACTION_BYTES,
    TRANSACTION_ITEMS,
    check_request,
    next_chunk,
)
from chalicelib.core.errors import TooLargeError
from chalicelib.core.messages import NewMessage


def msgs(n: int, *, ids: bool = False, size: int = 1) -> list[NewMessage]:
    return [NewMessage(b"x" * size, id=f"id-{i}" if ids else None) for i in range(n)]


def test_messages_without_ids_fill_a_transaction_one_item_each() -> None:
    batch = msgs(250)
    assert next_chunk(batch, list(range(250)), guarded=False) == list(range(TRANSACTION_ITEMS))


def test_an_id_costs_its_claim_too_and_a_guard_its_items() -> None:
    batch = msgs(100, ids=True)
    assert len(next_chunk(batch, list(range(100)), guarded=False)) == TRANSACTION_ITEMS // 2
    assert len(next_chunk(batch, list(range(100)), guarded=True)) == (
        (TRANSACTION_ITEMS - GUARD_ITEMS) // 2)


def test_a_chunk_stops_at_four_megabytes_but_always_takes_one() -> None:
    big = msgs(5, size=1_000_000)
    assert next_chunk(big, [0, 1, 2, 3, 4], guarded=False) == [0, 1, 2]
    huge = [NewMessage(b"x" * (TRANSACTION_BYTES + 1))]
    assert next_chunk(huge, [0], guarded=False) == [0]


def test_a_chunk_stops_before_an_id_repeated_in_the_request() -> None:
    batch = [NewMessage(b"1", id="a"), NewMessage(b"2", id="b"), NewMessage(b"3", id="a")]
    assert next_chunk(batch, [0, 1, 2], guarded=False) == [0, 1]
    assert next_chunk(batch, [2], guarded=False) == [2]


def test_requests_over_the_limits_are_refused_with_the_limit() -> None:
    with pytest.raises(TooLargeError) as many:
        check_request(msgs(11), guarded=False, max_batch=10, max_message_bytes=100)
    assert many.value.detail == {"max_batch": 10}
    with pytest.raises(TooLargeError) as large:
        check_request(msgs(1, size=101), guarded=False, max_batch=10, max_message_bytes=100)
    assert large.value.detail["max_bytes"] == 100
    with pytest.raises(TooLargeError) as guarded:
        check_request(msgs(49), guarded=True, max_batch=500, max_message_bytes=100)
    assert guarded.value.detail["max_messages"] == 48
    check_request(msgs(48), guarded=True, max_batch=500, max_message_bytes=100)
    check_request(msgs(500), guarded=False, max_batch=500, max_message_bytes=100)
