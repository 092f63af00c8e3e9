"""A third-party Durable Streams client (PyPI ``durable-streams``) against `switchboard dev`.

Nobody here wrote that client: if it can create, append, read and resume from an offset, the
protocol is spoken as its authors meant it. Its appends also land on the same channel log
the WebSocket API serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from durable_streams import DurableStream, stream

from tests.e2e.conftest import DevServerProcess
from tests.support.devserver import running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_python_client_appends_reads_and_resumes(dev_server: DevServerProcess) -> None:
    url = f"{dev_server.http}/v1/stream/ds-client:{uuid.uuid4().hex[:8]}"
    handle = DurableStream.create(url, content_type="application/json")
    handle.append({"n": 1})
    middle = handle.append({"n": 2}).next_offset
    handle.append({"n": 3})
    handle.append({"n": 4})

    with stream(url, live=False) as res:
        assert res.read_json() == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
        tail = res.offset

    # Resume from the offset the server gave after message 2: only what came later.
    with stream(url, offset=middle, live=False) as res:
        assert res.read_json() == [{"n": 3}, {"n": 4}]
        assert res.offset == tail

    # The same log through Switchboard's own message API, with the same offsets.
    channel = url.rsplit("/", 1)[1]
    page = httpx.get(f"{dev_server.http}/v1/channels/{channel}/messages", params={"from": "-1"})
    messages = page.json()["messages"]
    assert [m["data"] for m in messages] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert messages[1]["offset"] == middle


@pytest.fixture(scope="module")
def lenient_server() -> Iterator[DevServerProcess]:
    # --lenient: the client reads with httpx's `Accept: */*`, and API Gateway returns a binary
    # body as bytes only when the first Accept value is one of the API's binary media types
    # (app.api.binary_types has no */*): faithfully this read gets base64 text, as it would
    # on AWS. A product defect reported for a fix in app.py/chalicelib
    # (tests/e2e/test_dev_limits.py::test_binary_responses_need_a_matching_first_accept_value);
    # until then this test runs against the relaxed emulator.
    with running("--no-auth", "--no-agent", "--lenient") as server:
        yield server


def test_python_client_binary_stream_round_trips(lenient_server: DevServerProcess) -> None:
    dev_server = lenient_server
    url = f"{dev_server.http}/v1/stream/ds-bytes:{uuid.uuid4().hex[:8]}"
    handle = DurableStream.create(url, content_type="application/octet-stream")
    payload = bytes(range(256)) * 4
    handle.append(payload)
    handle.append(b"\x00\xff tail")
    with stream(url, live=False) as res:
        assert res.read_bytes() == payload + b"\x00\xff tail"
    head = httpx.head(url)
    assert head.headers["content-type"] == "application/octet-stream"
    assert head.headers["stream-next-offset"] == res.offset
