"""The blocking twin runs the same async machinery on a background loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from switchboard.client import NotFoundError
from switchboard.client.sync import Switchboard

from .conftest import FAST
from .fake_server import FakeSwitchboard


@pytest.fixture
def fake_sync() -> Iterator[FakeSwitchboard]:
    """The fake served from its own loop thread, so blocking calls can reach it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeSwitchboard()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_sync_publish_subscribe_history_and_errors(fake_sync: FakeSwitchboard) -> None:
    # HTTP reads only (no fan-out from this thread), so the shared mock transport is safe.
    with Switchboard(fake_sync.url, options=FAST, http_transport=fake_sync.transport()) as sb:
        ch = sb.channel("jobs:sync")
        acks = [ch.publish({"n": i}) for i in range(3)]
        assert [a.seq for a in acks] == [1, 2, 3]
        with ch.subscribe(from_="-1") as sub:
            got = [next(sub).data["n"] for _ in range(3)]
            assert got == [0, 1, 2] and sub.position == acks[-1].offset
            assert sub.next_message(timeout=0.1) is None
        assert [m.seq for m in ch.iter_history(page_size=2)] == [1, 2, 3]
        result = ch.stream_text(iter(["a", "b", "c"]), stream="s")
        assert result.text == "abc"
        with pytest.raises(NotFoundError):
            sb.channel("jobs:missing").delete()
