"""A third-party Durable Streams client (PyPI ``durable-streams``) against `switchboard dev`.

Nobody here wrote that client: if it can create, append, read and resume from an offset, the
protocol is spoken as its authors meant it. Its appends also land on the same channel log
the WebSocket API serves.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from durable_streams import DurableStream, stream

from tests.e2e.conftest import DevServerProcess

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


def test_python_client_binary_stream_round_trips(dev_server: DevServerProcess) -> None:
    # httpx reads with `Accept: */*`: the bytes arrive because the deployed API's binary media
    # types include */* (infra/api.py), which the faithful dev gateway applies too.
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
