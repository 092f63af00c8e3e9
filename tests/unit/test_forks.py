"""The pure fork rules (chalicelib/core/forks.py): ancestry, read segments, offset aliases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.errors import InvalidOffsetError, InvalidRequestError
from chalicelib.core.forks import (
    MAX_FORK_DEPTH,
    ZERO_OFFSET,
    Ancestor,
    Segment,
    alias_seq,
    inherit,
    parse_fork_offset,
    parse_source,
    parse_sub_offset,
    segments,
)
from chalicelib.core.offsets import Position

E0, E1, E2 = "0000000000000a00", "0000000000000a01", "0000000000000a02"


def test_a_chain_shares_each_ancestor_up_to_the_smallest_fork_point_below_it() -> None:
    l1 = inherit("l0", E0, (), 5)
    assert l1 == (Ancestor("l0", E0, 5),)
    # l2 forks l1 at 3, inside what l1 inherited from l0: nothing of l1's own log is shared.
    assert inherit("l1", E1, l1, 3) == (Ancestor("l0", E0, 3), Ancestor("l1", E1, 3))
    assert inherit("l1", E1, l1, 8) == (Ancestor("l0", E0, 5), Ancestor("l1", E1, 8))


def test_segments_split_a_read_over_the_logs_that_hold_it() -> None:
    ancestors = (Ancestor("l0", E0, 5), Ancestor("l1", E1, 8))
    assert segments("l2", E2, ancestors, 0, 10) == [
        Segment("l0", E0, 0, 5), Segment("l1", E1, 5, 8), Segment("l2", E2, 8, 10),
    ]
    assert segments("l2", E2, ancestors, 6, 7) == [Segment("l1", E1, 6, 7)]
    assert segments("l2", E2, ancestors, 8, 8) == []
    # An ancestor that contributes nothing (fork point inside an earlier one) is skipped.
    assert segments("l2", E2, (Ancestor("l0", E0, 3), Ancestor("l1", E1, 3)), 0, 4) == [
        Segment("l0", E0, 0, 3), Segment("l2", E2, 3, 4),
    ]
    assert segments("c", E0, (), 2, 9) == [Segment("c", E0, 2, 9)]


@given(
    points=st.lists(st.integers(0, 30), min_size=1, max_size=5),
    after=st.integers(0, 40), extra=st.integers(0, 10),
)
def test_segments_cover_every_seq_once_in_order(points: list[int], after: int, extra: int) -> None:
    ancestors: tuple[Ancestor, ...] = ()
    for level, point in enumerate(points):
        source_head = ancestors[-1].upto + 10 if ancestors else 30
        ancestors = inherit(f"l{level}", f"{level:016x}", ancestors, min(point, source_head))
    end = ancestors[-1].upto + extra
    parts = segments("me", "f" * 16, ancestors, after, end)
    covered = [seq for part in parts for seq in range(part.lo + 1, part.hi + 1)]
    assert covered == list(range(after + 1, end + 1))


def test_ancestor_offsets_alias_only_inside_the_shared_prefix() -> None:
    ancestors = (Ancestor("l0", E0, 5), Ancestor("l1", E1, 8))
    assert alias_seq(ancestors, Position(E0, 5)) == 5
    assert alias_seq(ancestors, Position(E0, 6)) is None
    assert alias_seq(ancestors, Position(E1, 8)) == 8
    assert alias_seq(ancestors, Position(E2, 1)) is None


def test_header_parsing() -> None:
    assert parse_source("/v1/stream/runs:1") == "runs:1"
    assert parse_source("https://h.example/prod/v1/stream/runs%3A1") == "runs:1"
    assert parse_source("runs:1") == "runs:1"
    assert parse_fork_offset(ZERO_OFFSET) == Position("0" * 16, 0)
    with pytest.raises(InvalidOffsetError):
        parse_fork_offset("-1")
    assert parse_sub_offset("0") == 0 and parse_sub_offset("12") == 12
    for bad in ("-1", "abc", "1.5", "05", "+1", ""):
        with pytest.raises(InvalidRequestError):
            parse_sub_offset(bad)


def test_chains_are_bounded() -> None:
    ancestors: tuple[Ancestor, ...] = ()
    for level in range(MAX_FORK_DEPTH):
        ancestors = inherit(f"l{level}", f"{level:016x}", ancestors, 0)
    with pytest.raises(InvalidRequestError):
        inherit("deep", E0, ancestors, 0)
