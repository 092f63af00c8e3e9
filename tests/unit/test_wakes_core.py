"""The subscription model (core/wakes.py) and the webhook address check, without I/O."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chalicelib.adapters.signing import Ed25519Keys
from chalicelib.adapters.webhooks import UnsafeAddressError, vetted_address
from chalicelib.core import wakes as w
from chalicelib.core.errors import InvalidChannelError
from switchboard.webhooks import WebhookVerificationError, verify_signature


@pytest.mark.parametrize(("path", "channel"), [
    ("events/a", "events:a"), ("/events/a/", "events:a"), ("events:a", "events:a"),
    ("runs/7f3a/answer", "runs:7f3a:answer"), ("solo", "solo"),
])
def test_paths_and_channels_are_one_thing(path: str, channel: str) -> None:
    assert w.channel_of_path(path) == channel
    assert w.channel_of_path(w.path_of_channel(channel)) == channel


@pytest.mark.parametrize("path", ["events//a", "", "a/b c", "__ds/x", "a/é", 3])
def test_bad_paths_are_refused(path: object) -> None:
    with pytest.raises(InvalidChannelError):
        w.channel_of_path(path)  # type: ignore[arg-type]


@pytest.mark.parametrize(("pattern", "channel", "matches"), [
    ("events/*", "events:a", True), ("events/*", "events:a:b", False),
    ("events/*", "events", False), ("events/**", "events", True),
    ("events/**", "events:a:b:c", True), ("events/*/x", "events:a:x", True),
    ("events/*/x", "events:a:y", False), ("events/**/x", "events:x", True),
    ("events/**/x", "events:a:b:x", True), ("events:a", "events:a", True),
    ("events/a", "events:b", False), ("other/*", "events:a", False),
])
def test_globs(pattern: str, channel: str, matches: bool) -> None:
    assert w.parse_pattern(pattern).matches(channel) is matches


def test_the_config_hash_ignores_order_and_spelling() -> None:
    a = w.parse_config({"type": "webhook", "pattern": "events/*", "streams": ["b/1", "a:1"],
                        "webhook": {"url": "https://x.example.com/h"}}, False)
    b = w.parse_config({"type": "webhook", "pattern": "events:*", "streams": ["a/1", "b/1"],
                        "webhook": {"url": "https://x.example.com/h"}}, False)
    assert a.config_hash() == b.config_hash() and a.streams == ("a:1", "b:1")
    c = w.parse_config({"type": "webhook", "pattern": "events/*", "streams": ["a/1", "b/1"],
                        "webhook": {"url": "https://x.example.com/h"}, "lease_ttl_ms": 5000},
                       False)
    assert c.config_hash() != a.config_hash()


@pytest.mark.parametrize(("url", "loopback", "ok"), [
    ("https://hooks.example.com/x", False, True),
    ("https://hooks.example.com:8443/x?y=1", False, True),
    ("https://8.8.8.8/x", False, True),
    ("http://hooks.example.com/x", False, False),
    ("http://127.0.0.1:9/x", False, False),
    ("http://127.0.0.1:9/x", True, True),
    ("http://127.0.0.5/x", True, True),
    ("http://localhost/x", True, True),
    ("http://[::1]:8/x", True, True),
    ("https://10.0.0.1/", True, False),
    ("http://10.0.0.1/hook", True, False),
    ("https://[::ffff:192.168.0.1]/", True, False),
    ("https://[::ffff:127.0.0.1]/", False, False),
    ("https://2130706433/", False, False),
    ("https://0177.0.0.1/", False, False),
    ("https://100.64.0.1/", False, False),
    ("https://224.0.0.1/", False, False),
    ("https://service.internal/", False, False),
    ("https://printer.local/", False, False),
    ("https://localhost/x", False, False),
    ("https://:443/", False, False),
    ("javascript:alert(1)", False, False),
])
def test_webhook_url_policy(url: str, loopback: bool, ok: bool) -> None:
    if ok:
        assert w.check_webhook_url(url, loopback) == url
    else:
        with pytest.raises(w.WebhookUrlRejectedError):
            w.check_webhook_url(url, loopback)


def test_delivery_connects_only_to_vetted_addresses() -> None:
    def resolver(answers: list[str]) -> Any:
        return lambda host, port: answers

    assert vetted_address("hooks.example.com", 443, False, resolver(["93.184.216.34"])) == \
        "93.184.216.34"
    # A name that (re)resolves to a private or metadata address is refused at delivery.
    for answers in (["10.0.0.7"], ["93.184.216.34", "169.254.169.254"], ["::1"], []):
        with pytest.raises(UnsafeAddressError):
            vetted_address("hooks.example.com", 443, False, resolver(answers))
    assert vetted_address("localhost", 80, True, resolver(["127.0.0.1"])) == "127.0.0.1"
    assert vetted_address("127.0.0.1", 80, True, resolver([])) == "127.0.0.1"


def test_retry_delays_double_to_a_minute_with_jitter() -> None:
    rng = random.Random(3)
    for attempt, base in [(1, 1000), (2, 2000), (3, 4000), (6, 32000), (7, 60000), (30, 60000)]:
        for _ in range(50):
            delay = w.retry_delay_ms(attempt, rng)
            assert base * 0.8 <= delay <= base * 1.2, (attempt, delay)


def test_tokens_are_scoped_and_expire() -> None:
    key, other = b"k" * 32, b"o" * 32
    claims = w.TokenClaims("s1", "0000000001000", 3, "jti", 2_000)
    token = w.issue_token(key, claims)
    assert w.read_token([other, key], f"Bearer {token}", "s1", 1_999) == claims
    with pytest.raises(w.TokenExpiredError):
        w.read_token([key], f"Bearer {token}", "s1", 2_000)
    with pytest.raises(w.TokenInvalidError):
        w.read_token([key], f"Bearer {token}", "s2", 1_000)  # another subscription
    with pytest.raises(w.TokenInvalidError):
        w.read_token([other], f"Bearer {token}", "s1", 1_000)  # another key
    payload, mac = token.split(".")
    with pytest.raises(w.TokenInvalidError):
        w.read_token([key], f"Bearer {payload[:-2]}xx.{mac}", "s1", 1_000)
    for bad in (None, "", "Bearer", "Bearer a.b.c", "Bearer !!!.???"):
        with pytest.raises(w.TokenInvalidError):
            w.read_token([key], bad, "s1", 1_000)


def test_signing_keys_sign_what_the_verifier_accepts_and_rotate() -> None:
    old = Ed25519Keys({"seed": "o" * 43})
    keys = Ed25519Keys({"seed": "n" * 43,
                        "previous": [{"seed": "o" * 43, "retire_after": 2_000}]},
                       now_s=lambda: 1_000)
    assert keys.active_kid().startswith("ds_") and keys.active_kid() != old.active_kid()
    assert Ed25519Keys({"seed": "n" * 43}).active_kid() == keys.active_kid()  # stable
    body = '{"subscription_id":"s1","text":"héllo"}'.encode()
    kid, signature = old.sign(w.signed_payload(1_000, body))
    header = w.signature_header(1_000, kid, signature)
    # The old key is still published until it retires: its deliveries verify.
    assert verify_signature(body, header, keys.jwks(), now=1_100)["text"] == "héllo"
    assert len(keys.token_keys()) == 2
    retired = Ed25519Keys({"seed": "n" * 43,
                           "previous": [{"seed": "o" * 43, "retire_after": 2_000}]},
                          now_s=lambda: 2_001)
    with pytest.raises(WebhookVerificationError):
        verify_signature(body, header, retired.jwks(), now=1_100)
    with pytest.raises(ValueError):
        Ed25519Keys({"seed": "short"})


def test_ack_requests_and_offsets() -> None:
    link = w.Link("events:a", frozenset({w.GLOB}), "019ad0392f80a540_0000000000000002",
                  "019ad0392f80a540_0000000000000005")
    request = w.parse_ack_request({"wake_id": "w", "generation": 1, "done": True, "acks": [
        {"stream": "events/a", "offset": "019ad0392f80a540_0000000000000004"}]})
    w.check_acks(request.acks, {"events:a": link})
    for offset in ("019ad0392f80a540_0000000000000001", "019ad0392f80a540_0000000000000006"):
        with pytest.raises(w.InvalidAckError):
            w.check_acks((w.Ack("events:a", offset),), {"events:a": link})
    for body in ({"generation": 1}, {"wake_id": "w", "generation": 0},
                 {"wake_id": "w", "generation": True}, {"wake_id": "w", "generation": 1,
                                                        "done": "yes"}, []):
        with pytest.raises(w.InvalidSubscriptionRequestError):
            w.parse_ack_request(body)
    with pytest.raises(w.InvalidAckError):
        w.parse_ack_request({"wake_id": "w", "generation": 1,
                             "acks": [{"stream": "events/a", "offset": "nope"}]})


def test_state_round_trips_through_its_document() -> None:
    config = w.parse_config({"type": "pull-wake", "pattern": "jobs/**", "wake_stream": "w/p",
                             "lease_ttl_ms": 2000}, False)
    wake = w.Wake("w_1", 4, (("jobs:a", "x_1"),), "t", 10, True, 2, 99, 1234, "worker")
    sub = w.WakeSubscription("p", config, config.config_hash(), 7, "https://api", 4, wake,
                             frozenset({"jobs:a"}), True, 3)
    assert w.WakeSubscription.from_doc(sub.to_doc(), 3) == sub
    assert config.excludes("w:p") and not config.excludes("jobs:a")
