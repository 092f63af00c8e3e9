"""Pure core: names, offsets, frames, start resolution, message sizes. No I/O."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core import frames, offsets
from chalicelib.core.channels import ChannelMeta, resolve_start
from chalicelib.core.errors import (
    EpochMismatchError,
    InvalidChannelError,
    InvalidFrameError,
    InvalidOffsetError,
    OffsetExpiredError,
    SwitchboardError,
    TooLargeError,
)
from chalicelib.core.messages import StoredMessage, encode_data, validate_id
from chalicelib.core.names import namespace_of, validate_channel
from chalicelib.core.subscriptions import Subscription, SubscriptionState

EPOCH = "019ad0392f80a540"


@pytest.mark.parametrize(
    "name", ["runs:7f3a", "agents:support-bot:session-42", "chat:room-1", "a", "x.y~z@w-1"]
)
def test_valid_channel_names(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    "name", ["", "runs:", ":runs", "a::b", "runs/1", "runs 1", "runs#1", "é", "a" * 257, None, 7]
)
def test_invalid_channel_names_say_what_to_do(name: object) -> None:
    with pytest.raises(InvalidChannelError) as info:
        validate_channel(name)
    assert info.value.code == "invalid_channel"
    assert "runs:7f3a" in info.value.message or "256" in info.value.message


def test_namespace_is_the_first_segment() -> None:
    assert namespace_of("runs:7f3a") == "runs"
    assert namespace_of("agents:bot:42") == "agents"
    assert namespace_of("solo") is None


def test_offsets_round_trip_and_sort_in_log_order() -> None:
    assert offsets.decode(offsets.encode(EPOCH, 43)) == offsets.Position(EPOCH, 43)
    ordered = [offsets.encode(EPOCH, s) for s in (0, 1, 9, 10, 99, 100, 10**9)]
    assert sorted(ordered) == ordered


@given(st.integers(0, 2**40), st.integers(0, 2**40))
def test_offset_order_matches_seq_order(a: int, b: int) -> None:
    assert (offsets.encode(EPOCH, a) < offsets.encode(EPOCH, b)) == (a < b)


def test_later_epochs_sort_after_earlier_ones() -> None:
    first = offsets.new_epoch(1_764_430_000_000, 0xFFFF)
    later = offsets.new_epoch(1_764_430_000_001, 0)
    assert len(first) == 16 and offsets.encode(first, 10**6) < offsets.encode(later, 0)


def test_offsets_avoid_the_characters_durable_streams_reserves() -> None:
    offset = offsets.encode(offsets.new_epoch(1_764_430_000_000, 7), 5)
    assert not set(offset) & set(",&=?/") and offset not in ("-1", "now")


@pytest.mark.parametrize("bad", ["", "x", "019ad0392f80a540", "019ad0392f80a540_12",
                                 "019AD0392F80A540_0000000000000001", "-2", "0_0"])
def test_malformed_offsets_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidOffsetError):
        offsets.decode(bad)


def test_parse_start_knows_the_sentinels() -> None:
    assert offsets.parse_start(None).kind == "now"
    assert offsets.parse_start(None, default="-1").kind == "beginning"
    assert offsets.parse_start("now").kind == "now"
    with pytest.raises(InvalidOffsetError):
        offsets.parse_start(5)


def meta(head: int = 10) -> ChannelMeta:
    return ChannelMeta("runs:1", EPOCH, head, 0, 3600)


def test_resolve_start_from_now_beginning_and_positions() -> None:
    assert resolve_start(offsets.parse_start("now"), meta(), 1) == 10
    assert resolve_start(offsets.parse_start("-1"), meta(), 1) == 0
    assert resolve_start(offsets.parse_start("-1"), meta(), 4) == 3  # expired ones skipped
    assert resolve_start(offsets.parse_start(offsets.encode(EPOCH, 7)), meta(), 1) == 7
    assert resolve_start(offsets.parse_start(offsets.encode(EPOCH, 10)), meta(), 11) == 10


def test_resolving_before_the_retained_log_is_offset_expired() -> None:
    with pytest.raises(OffsetExpiredError) as info:
        resolve_start(offsets.parse_start(offsets.encode(EPOCH, 2)), meta(), 5)
    assert info.value.status == 410
    assert info.value.detail["earliest"] == offsets.encode(EPOCH, 4)


def test_resolving_an_old_epoch_is_epoch_mismatch() -> None:
    old = offsets.encode("019ad0392f800000", 3)
    with pytest.raises(EpochMismatchError) as info:
        resolve_start(offsets.parse_start(old), meta(), 1)
    assert info.value.detail["epoch"] == EPOCH


def test_resolving_beyond_the_head_is_invalid() -> None:
    with pytest.raises(InvalidOffsetError):
        resolve_start(offsets.parse_start(offsets.encode(EPOCH, 11)), meta(), 1)


def test_encode_data_is_compact_utf8_json_with_a_size_limit() -> None:
    assert encode_data({"a": "é", "b": [1, 2]}, 100) == '{"a":"é","b":[1,2]}'.encode()
    with pytest.raises(TooLargeError) as info:
        encode_data("x" * 100, 50)
    assert info.value.detail == {"size": 102, "max_bytes": 50}
    with pytest.raises(InvalidFrameError):
        encode_data(float("nan"), 100)
    with pytest.raises(InvalidFrameError):
        encode_data({1j}, 100)


def test_ids_are_short_non_empty_strings() -> None:
    assert validate_id(None) is None and validate_id("k") == "k"
    for bad in ("", "x" * 129, 5, ["k"]):
        with pytest.raises(InvalidFrameError):
            validate_id(bad)


def parse(body: str | bytes) -> frames.ClientFrame:
    return frames.parse_client_frame(body, 1024)


def test_frames_parse_into_typed_requests() -> None:
    sub = parse('{"action":"subscribe","ref":"r1","channel":"runs:1","from":"-1"}')
    assert isinstance(sub, frames.Subscribe) and sub.start.kind == "beginning"
    assert parse('{"action":"subscribe","channel":"runs:1"}').start.kind == "now"  # type: ignore[union-attr]
    pub = parse('{"action":"publish","channel":"runs:1","data":null,"id":"k"}')
    assert isinstance(pub, frames.Publish) and pub.data is None and pub.id == "k"
    assert isinstance(parse('{"action":"unsubscribe","channel":"c"}'), frames.Unsubscribe)
    assert parse('{"action":"ping","ref":"p"}') == frames.Ping("p")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_frame"),
        ("[1,2]", "invalid_frame"),
        ('{"action":"dance"}', "invalid_frame"),
        ('{"ref":"r"}', "invalid_frame"),
        ('{"action":"ping","ref":5}', "invalid_frame"),
        ('{"action":"publish","channel":"c"}', "invalid_frame"),
        ('{"action":"publish","channel":"bad name","data":1}', "invalid_channel"),
        ('{"action":"subscribe","channel":"c","from":"yesterday"}', "invalid_offset"),
        ('{"action":"subscribe"}', "invalid_channel"),
        ('{"action":"publish","channel":"c","data":1,"id":""}', "invalid_frame"),
        ("x" * 2000, "too_large"),
    ],
)
def test_bad_frames_raise_contract_errors(body: str, code: str) -> None:
    with pytest.raises(SwitchboardError) as info:
        parse(body)
    assert info.value.code == code and info.value.message


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=5)
                 .map(json.dumps)))
def test_no_input_escapes_as_anything_but_a_contract_error(body: str | bytes) -> None:
    with contextlib.suppress(SwitchboardError):
        parse(body)


def test_ref_of_recovers_refs_from_bad_frames() -> None:
    assert frames.ref_of('{"action":"x","ref":"r9"}') == "r9"
    assert frames.ref_of("garbage") is None
    assert frames.ref_of('{"ref":5}') is None


def test_server_frames_match_the_contract() -> None:
    message = StoredMessage("runs:1", EPOCH, 43, b'{"t":" world"}', 1, 2, "tok-43", "agent")
    assert json.loads(frames.message_frame(message)) == {
        "type": "message", "channel": "runs:1", "seq": 43,
        "offset": offsets.encode(EPOCH, 43), "epoch": EPOCH, "id": "tok-43",
        "data": {"t": " world"}, "ts": 1, "publisher": "agent",
    }
    assert json.loads(frames.pong_frame("r4")) == {"type": "pong", "ref": "r4"}
    assert "ref" not in json.loads(frames.pong_frame(None))
    error = json.loads(frames.error_frame(TooLargeError("big", {"size": 1}), "r3", "c"))
    assert error == {"type": "error", "code": "too_large", "message": "big",
                     "detail": {"size": 1}, "ref": "r3", "channel": "c"}


def test_subscription_wants_newer_messages_of_its_epoch() -> None:
    live = Subscription("c", "id", "e", EPOCH, 5, SubscriptionState.LIVE, 0)
    assert live.wants(EPOCH, 6) and not live.wants(EPOCH, 5)
    assert not live.wants("019ad0392f800000", 6)
    # Replaying, the fan-out notes what it wants instead of sending it (services/fanout.py).
    replaying = Subscription("c", "id", "e", EPOCH, 5, SubscriptionState.REPLAYING, 0)
    assert replaying.wants(EPOCH, 6) and not replaying.wants(EPOCH, 5)


def test_batched_message_frames_pack_in_order_under_32_kb() -> None:
    from chalicelib.core.messages import StoredMessage

    def message(seq: int, size: int) -> StoredMessage:
        body = json.dumps("x" * size).encode()
        return StoredMessage("runs:1", EPOCH, seq, body, 0, 0, id=f"i{seq}")

    small = [message(s, 100) for s in range(1, 6)]
    assert [count for count, _ in frames.message_frames(small, batch=False)] == [1] * 5
    ((count, frame),) = frames.message_frames(small, batch=True)
    decoded = json.loads(frame)
    assert count == 5 and decoded["type"] == "messages" and decoded["channel"] == "runs:1"
    assert [m["seq"] for m in decoded["messages"]] == [1, 2, 3, 4, 5]
    assert decoded["messages"][0] == {k: v for k, v in json.loads(
        frames.message_frame(small[0])).items() if k != "type"}
    # Big ones split across frames, each under API Gateway's 32 KB frame; a single message
    # travels as a plain message frame.
    mixed = [message(1, 12_000), message(2, 12_000), message(3, 12_000), message(4, 40_000)]
    packed = frames.message_frames(mixed, batch=True)
    assert [count for count, _ in packed] == [2, 1, 1]
    assert all(len(f.encode()) <= 32 * 1024 for _, f in packed[:2])
    assert [json.loads(f)["type"] for _, f in packed] == ["messages", "message", "message"]
    seqs = []
    for _, f in packed:
        decoded = json.loads(f)
        seqs += [m["seq"] for m in decoded["messages"]] if "messages" in decoded else [
            decoded["seq"]]
    assert seqs == [1, 2, 3, 4]


def test_subscribe_batch_must_be_a_boolean() -> None:
    parsed = frames.parse_client_frame(
        '{"action":"subscribe","channel":"a","batch":true}', 1 << 20)
    assert isinstance(parsed, frames.Subscribe) and parsed.batch
    with pytest.raises(InvalidFrameError, match="batch"):
        frames.parse_client_frame('{"action":"subscribe","channel":"a","batch":1}', 1 << 20)
