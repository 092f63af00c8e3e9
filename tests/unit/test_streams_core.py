"""The Durable Streams protocol rules (chalicelib/core/streams.py): pure, no clock, no I/O."""

from __future__ import annotations

import base64
import json
import random

import pytest

from chalicelib.core import stream_headers
from chalicelib.core import streams as protocol
from chalicelib.core.channels import ChannelMeta
from chalicelib.core.errors import InvalidRequestError, TooLargeError
from chalicelib.openapi import document

EPOCH = "019ad0392f80a540"


def meta(content_type: str = "application/json", head: int = 3, **kw: object) -> ChannelMeta:
    return ChannelMeta(
        name="s", epoch=EPOCH, head=head, created_ms=0, retention_s=60,
        content_type=content_type, **kw,  # type: ignore[arg-type]
    )


# -- media types and bodies -----------------------------------------------------------------


def test_media_types_ignore_parameters_and_case() -> None:
    assert protocol.media_type("Application/JSON; charset=utf-8") == "application/json"
    assert protocol.is_json("application/json;charset=utf-8")
    assert protocol.is_text("text/plain") and not protocol.is_text("application/octet-stream")


def test_a_json_array_appends_each_element_and_a_scalar_one_message() -> None:
    assert protocol.split_body("application/json", b'[{"a":1}, 2, "x"]', 100, False) == [
        b'{"a":1}', b"2", b'"x"',
    ]
    assert protocol.split_body("application/json", b'{"a": 1}', 100, False) == [b'{"a":1}']


def test_an_empty_array_is_refused_on_append_and_allowed_on_create() -> None:
    with pytest.raises(InvalidRequestError, match="empty JSON array"):
        protocol.split_body("application/json", b"[]", 100, allow_empty_array=False)
    assert protocol.split_body("application/json", b"[]", 100, allow_empty_array=True) == []


def test_invalid_or_too_deep_json_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        protocol.split_body("application/json", b"{nope", 100, False)
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        protocol.split_body("application/json", b"[" * 100_000, 100, False)


def test_json_elements_obey_the_message_size_limit() -> None:
    with pytest.raises(TooLargeError):
        protocol.split_body("application/json", json.dumps(["x" * 50]).encode(), 20, False)


def test_byte_streams_are_sliced_at_the_message_size_and_read_back_identical() -> None:
    raw = bytes(range(256)) * 3
    slices = protocol.split_body("application/octet-stream", raw, 100, False)
    assert [len(s) for s in slices] == [100] * 7 + [68]
    assert b"".join(slices) == raw


def test_join_bounds_bytes_but_always_carries_one_message() -> None:
    bodies = [(1, b"a" * 10), (2, b"b" * 10), (3, b"c" * 10)]
    batch = protocol.join(meta("text/plain"), 0, bodies, max_bytes=15)
    assert (batch.body, batch.count, batch.next_seq, batch.up_to_date) == (b"a" * 10, 1, 1, False)
    whole = protocol.join(meta("application/json"), 0, [(1, b"1"), (2, b"[2]")], 100)
    assert protocol.render(whole) == b"[1,[2]]"
    assert protocol.render(protocol.join(meta(), 3, [], 100)) == b"[]"


def test_join_moves_past_a_stretch_that_expired() -> None:
    batch = protocol.join(meta(head=9), 2, [], 100)
    assert batch.next_seq == 2 and not batch.up_to_date


# -- SSE ------------------------------------------------------------------------------------


def test_data_events_put_each_line_on_its_own_data_field() -> None:
    batch = protocol.join(meta("text/plain"), 0, [(1, b"one\r\ntwo\n three")], 100)
    assert protocol.data_event(batch) == "event: data\ndata:one\ndata:two\ndata:  three\n\n"


def test_binary_data_events_are_base64_and_say_so() -> None:
    batch = protocol.join(meta("application/octet-stream"), 0, [(1, b"\xff\x00")], 100)
    event = protocol.data_event(batch)
    assert base64.b64decode(event.split("data:")[1].strip()) == b"\xff\x00"
    assert protocol.sse_headers(batch.meta)[stream_headers.STREAM_SSE_DATA_ENCODING] == "base64"
    assert stream_headers.STREAM_SSE_DATA_ENCODING not in protocol.sse_headers(meta("text/plain"))


def test_control_events_carry_cursor_and_up_to_date_or_closed() -> None:
    live = protocol.join(meta(head=1), 0, [(1, b"1")], 100)
    control = json.loads(protocol.control_event(live, "7").split("data:", 1)[1])
    assert control == {"streamNextOffset": f"{EPOCH}_0000000000000001", "streamCursor": "7",
                       "upToDate": True}
    closed = protocol.join(meta(head=1, closed=True), 0, [(1, b"1")], 100)
    control = json.loads(protocol.control_event(closed, "7").split("data:", 1)[1])
    assert control == {"streamNextOffset": f"{EPOCH}_0000000000000001", "streamClosed": True}


# -- cursors, ETags, lifetimes --------------------------------------------------------------


def test_the_cursor_is_the_current_interval_and_never_goes_back() -> None:
    now_ms = (protocol.CURSOR_EPOCH_S + 20 * 100 + 5) * 1000
    rng = random.Random(1)
    assert protocol.cursor(now_ms, None, rng) == "100"
    assert protocol.cursor(now_ms, "42", rng) == "100"  # behind: the current interval
    ahead = int(protocol.cursor(now_ms, "100", rng))  # caught up: jump forward
    assert ahead > 100
    assert protocol.cursor(now_ms, "junk", rng) == "100"


def test_etags_name_the_range_and_whether_it_closed() -> None:
    assert protocol.etag("e", "-1", "e_1", closed=False) == '"e:-1:e_1"'
    assert protocol.etag("e", "-1", "e_1", closed=True) == '"e:-1:e_1:closed"'


def test_flags_are_true_or_false_only() -> None:
    assert protocol.parse_flag(None, "X") is False
    assert protocol.parse_flag(" TRUE ", "X") is True
    with pytest.raises(InvalidRequestError, match="X must be"):
        protocol.parse_flag("yes", "X")


def test_a_ttl_rounds_up_and_an_expiry_truncates_to_the_second() -> None:
    assert protocol.parse_lifetime("10", None, now_ms=1_000_500) == (10, 1011)
    assert protocol.parse_lifetime(None, "2030-01-01T00:00:00.9Z", 0) == (None, 1893456000)
    assert protocol.parse_lifetime(None, None, 0) == (None, None)
    for ttl in ("-1", "01", "1.5", "1e3", ""):
        with pytest.raises(InvalidRequestError, match="Stream-TTL"):
            protocol.parse_lifetime(ttl, None, 0)
    with pytest.raises(InvalidRequestError, match="not both"):
        protocol.parse_lifetime("1", "2030-01-01T00:00:00Z", 0)
    with pytest.raises(InvalidRequestError, match="time zone"):
        protocol.parse_lifetime(None, "2030-01-01T00:00:00", 0)


def test_meta_headers_carry_content_type_and_lifetime() -> None:
    headers = protocol.meta_headers(meta("text/plain", ttl_s=60, expires_at=1893456000))
    assert headers == {"Content-Type": "text/plain", "Stream-TTL": "60",
                       "Stream-Expires-At": "2030-01-01T00:00:00Z"}


def test_every_protocol_request_header_is_documented_in_openapi() -> None:
    documented = {
        param["name"].lower()
        for item in document()["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for param in operation.get("parameters", [])
        if param.get("in") == "header"
    }
    generic = {"content-type", "authorization"}
    missing = {h.lower() for h in stream_headers.REQUEST_HEADERS} - documented - generic
    assert not missing, f"headers the CORS config allows but OpenAPI does not document: {missing}"
