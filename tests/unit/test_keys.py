"""API keys are checked when they load (adapters/keys.py, core/capabilities.py ApiKey)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.adapters.keys import CachedKeyRing, KeyDocumentError, StaticKeyRing, read_keys

GOOD = "g" * 43


def document(*keys: Any) -> str:
    return json.dumps({"keys": list(keys)})


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"id": "k1", "secret": ""}, "0 characters"),
        ({"id": "k1"}, "0 characters"),
        ({"id": "k1", "secret": "short-secret"}, "12 characters"),
        ({"id": "k1", "secret": "x" * 31}, "31 characters"),
        ({"id": "k1", "secret": 12345678901234567890123456789012345}, "0 characters"),
        ({"id": "", "secret": GOOD}, "ids are 1 to 64"),
        ({"id": "a:b", "secret": GOOD}, "no ':'"),
        ({"secret": GOOD}, "ids are 1 to 64"),
        ({"id": "k1", "secret": GOOD, "capabilities": {"*": ["fly"]}}, "Operations for"),
        ({"id": "k1", "secret": GOOD, "revoked": "false"}, "true or false"),
        ("k1", "must be an object"),
    ],
)
def test_unusable_keys_are_refused_with_the_reason(entry: Any, says: str) -> None:
    loaded = read_keys(document(entry, {"id": "ok", "secret": GOOD}))
    assert set(loaded.keys) == {"ok"}  # the good key still loads
    (problem,) = loaded.problems
    assert says in problem
    assert GOOD not in problem and "short-secret" not in problem  # secrets are never echoed
    with pytest.raises(KeyDocumentError, match=says.split(" ")[0]):
        StaticKeyRing.from_json(document(entry))


def test_a_key_listed_twice_is_refused_entirely() -> None:
    loaded = read_keys(document({"id": "k1", "secret": GOOD}, {"id": "k1", "secret": "h" * 43},
                                {"id": "k2", "secret": GOOD}))
    assert set(loaded.keys) == {"k2"}
    assert loaded.problems == ("Key 'k1' is listed more than once: give each key its own id.",)


@pytest.mark.parametrize("raw", ["not json", "[]", '{"keys": {}}', '{"nokeys": []}'])
def test_an_unreadable_document_loads_no_keys(raw: str) -> None:
    loaded = read_keys(raw)
    assert loaded.keys == {} and len(loaded.problems) == 1


def test_the_cached_ring_drops_bad_keys_and_follows_every_edit_within_its_refresh() -> None:
    docs = [document({"id": "k1", "secret": GOOD}, {"id": "k2", "secret": "tiny"})]
    now = [0.0]
    ring = CachedKeyRing(lambda: docs[-1], 60, monotonic=lambda: now[0])
    assert ring.get("k1") is not None and ring.get("k2") is None
    docs.append(document({"id": "k1", "secret": GOOD, "revoked": True}))
    now[0] = 59.0
    assert not ring.get("k1").revoked  # type: ignore[union-attr]
    now[0] = 61.0
    assert ring.get("k1").revoked  # type: ignore[union-attr]
    # A broken edit locks everyone out rather than keeping a key it meant to remove.
    docs.append("{broken")
    now[0] = 122.0
    assert ring.get("k1") is None
