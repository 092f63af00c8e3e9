"""Capabilities and principals: pattern matching, containment, expiry. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core.capabilities import Capabilities, Principal
from chalicelib.core.errors import ForbiddenError, InvalidRequestError, UnauthorizedError


def caps(raw: dict[str, list[str]]) -> Capabilities:
    return Capabilities.parse(raw)


def test_patterns_match_exact_prefix_and_everything() -> None:
    c = caps({"runs:7f3a": ["publish"], "runs:*": ["subscribe"], "*": ["history"]})
    assert c.allows("runs:7f3a", "publish") and not c.allows("runs:7f3b", "publish")
    assert c.allows("runs:anything:deep", "subscribe") and not c.allows("chat:1", "subscribe")
    assert c.allows("chat:1", "history") and not c.allows("chat:1", "admin")
    assert caps({"*": ["*"]}).allows("x", "admin")


@pytest.mark.parametrize(
    "raw",
    [None, {}, [], {"runs:*": []}, {"runs:*": "publish"}, {"runs:*": ["fly"]},
     {"ru*ns": ["publish"]}, {"bad name": ["publish"]}, {"": ["publish"]},
     {f"c{i}": ["publish"] for i in range(101)}],
)
def test_invalid_capabilities_are_rejected_with_an_example(raw: object) -> None:
    with pytest.raises(InvalidRequestError):
        Capabilities.parse(raw)


def test_covers_is_containment() -> None:
    key = caps({"runs:*": ["subscribe", "publish"], "chat:lobby": ["history"]})
    assert key.covers(caps({"runs:7f3a": ["subscribe"]}))
    assert key.covers(caps({"runs:a*": ["publish"]}))
    assert not key.covers(caps({"runs:*": ["admin"]}))
    assert not key.covers(caps({"*": ["subscribe"]}))
    assert not key.covers(caps({"chat:*": ["history"]}))
    assert caps({"*": ["*"]}).covers(key)


names = st.from_regex(r"[a-z]{1,3}(:[a-z0-9]{1,3}){0,2}", fullmatch=True)


@given(names, names, st.sampled_from(["subscribe", "publish", "history", "admin"]))
def test_a_covered_grant_never_allows_more_than_its_cover(
    outer: str, channel: str, operation: str
) -> None:
    key = caps({outer + "*": [operation]})
    token = caps({channel: [operation]})
    if key.covers(token):
        assert key.allows(channel, operation)


def test_require_checks_expiry_then_rights() -> None:
    p = Principal("token", "alice", caps({"runs:1": ["publish"]}), "k1", expires_at=100)
    p.require("runs:1", "publish", 99)
    with pytest.raises(ForbiddenError):
        p.require("runs:2", "publish", 99)
    with pytest.raises(UnauthorizedError):
        p.require("runs:1", "publish", 100)
    with pytest.raises(UnauthorizedError):
        Principal.unauthenticated().require("runs:1", "publish", 0)
    Principal.anonymous().require("any:thing", "admin", 0)


def test_claims_round_trip_and_publisher() -> None:
    p = Principal("token", "alice", caps({"runs:*": ["*"]}), "k1", expires_at=5)
    assert Principal.from_claims(p.to_claims()) == p
    assert p.publisher == "alice"
    assert Principal("key", None, caps({"*": ["*"]}), "k1").publisher == "key:k1"
