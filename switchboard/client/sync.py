"""Blocking twin of the async client, for scripts and worker processes.

The async client runs on an event loop in one background thread per ``Switchboard``; every
method here hands a coroutine to that loop and waits for its result, so the reconnect,
keepalive, dedupe and gap-filling logic is the same code.

Examples:
    >>> from switchboard.client.sync import Switchboard  # doctest: +SKIP
    >>> with Switchboard("http://127.0.0.1:8765") as sb:  # doctest: +SKIP
    ...     ch = sb.channel("jobs:nightly")
    ...     ch.publish({"type": "status", "text": "started"})
    ...     for msg in ch.subscribe(from_="-1"):
    ...         print(msg.seq, msg.data)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from . import _client, _presence, _tokens
from ._connection import ConnectionStats
from ._presence import PresenceEvent, PresenceMember, PresenceStats
from ._recovery import RecoveryStats
from ._types import NOW, Ack, ChannelInfo, HistoryPage, Message

T = TypeVar("T")

__all__ = ["Channel", "Presence", "PresenceSubscription", "Subscription", "Switchboard"]


class Switchboard:
    """Same arguments as :class:`switchboard.client.Switchboard`."""

    def __init__(self, url: str | None = None, token: str | None = None, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="switchboard-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def build() -> _client.Switchboard:
            return _client.Switchboard(url, token, **kwargs)

        self._async = self._run(build())

    @property
    def aio(self) -> _client.Switchboard:
        """The underlying async client (its methods must run on this client's loop)."""
        return self._async

    @property
    def connection_stats(self) -> ConnectionStats:
        return self._async.connection_stats

    def channel(self, name: str) -> Channel:
        return Channel(self, self._async.channel(name))

    def issue_token(
        self, client_id: str, capabilities: dict[str, list[str]], ttl: int = 3600
    ) -> dict[str, Any]:
        """See :meth:`switchboard.client.Switchboard.issue_token`."""
        return self._run(self._async.issue_token(client_id, capabilities, ttl))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._run(self._async.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Switchboard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError from None
        except KeyboardInterrupt:
            future.cancel()
            raise


class Channel:
    def __init__(self, client: Switchboard, channel: _client.Channel) -> None:
        self._client = client
        self._channel = channel
        self.name = channel.name

    def publish(self, data: Any, id: str | None = None) -> Ack:
        return self._client._run(self._channel.publish(data, id))

    def publish_many(self, items: Iterable[Any | tuple[Any, str]]) -> list[Ack]:
        return self._client._run(self._channel.publish_many(list(items)))

    def subscribe(self, from_: str = NOW) -> Subscription:
        return Subscription(self._client, self._channel.subscribe(from_))

    def history(self, from_: str = "-1", limit: int = 100) -> HistoryPage:
        return self._client._run(self._channel.history(from_, limit))

    def iter_history(self, from_: str = "-1", page_size: int = 500) -> Iterator[Message]:
        cursor = from_
        while True:
            page = self.history(cursor, page_size)
            yield from page.messages
            cursor = page.next
            if page.up_to_date or not page.messages:
                return

    @property
    def presence(self) -> Presence:
        """See :class:`switchboard.client.Presence`."""
        return Presence(self._client, self._channel.presence)

    def info(self) -> ChannelInfo:
        return self._client._run(self._channel.info())

    def create(self, retention: int | None = None) -> ChannelInfo:
        return self._client._run(self._channel.create(retention))

    def delete(self) -> None:
        self._client._run(self._channel.delete())

    def stream_text(
        self, chunks: Iterable[str], *, stream: str, window: float = _tokens.DEFAULT_WINDOW
    ) -> _tokens.StreamResult:
        """Coalesce a (blocking) iterator of chunks into one message per window."""
        iterator = iter(chunks)

        async def source() -> AsyncIterator[str]:
            sentinel = object()
            while True:
                # The source blocks (an HTTP stream, a generator): read it off the loop.
                chunk = await asyncio.to_thread(next, iterator, sentinel)
                if chunk is sentinel:
                    return
                yield str(chunk)

        return self._client._run(
            _tokens.stream_text(self._channel, source(), stream=stream, window=window)
        )


_Item = TypeVar("_Item")


class _Blocking(Generic[_Item]):
    """Blocking iteration over one of the async client's subscriptions, run on the client's
    background loop: ``for item in …``, ``with …``, ``close()``."""

    def __init__(self, client: Switchboard, subscription: Any) -> None:
        self._client = client
        self._subscription = subscription

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _Item:
        try:
            item: _Item = self._client._run(self._subscription.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return item

    def close(self) -> None:
        self._client._run(self._subscription.aclose())

    def __enter__(self) -> Self:
        self._client._run(self._subscription.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Subscription(_Blocking[Message]):
    """Iterate it; :attr:`position` is the offset of the last message yielded."""

    _subscription: _client.Subscription

    @property
    def position(self) -> str | None:
        return self._subscription.position

    @property
    def stats(self) -> RecoveryStats:
        return self._subscription.stats

    @property
    def caught_up(self) -> bool:
        return self._subscription.caught_up

    def next_message(self, timeout: float | None = None) -> Message | None:
        return self._client._run(self._subscription.next_message(timeout))


class Presence:
    """``channel.presence``, blocking: see :class:`switchboard.client.Presence`. The
    heartbeats run on the client's background loop, so a member stays present while the
    calling thread does other work, until :meth:`leave` or the client is closed."""

    def __init__(self, client: Switchboard, presence: _presence.Presence) -> None:
        self._client = client
        self._presence = presence

    @property
    def member(self) -> str | None:
        return self._presence.member

    def membership(self, instance: str | None = None) -> _presence.Membership | None:
        return self._presence.membership(instance)

    def enter(self, data: dict[str, Any] | None = None, *, instance: str | None = None) -> str:
        return self._client._run(self._presence.enter(data, instance=instance))

    def update(self, data: dict[str, Any], *, instance: str | None = None) -> str:
        return self._client._run(self._presence.update(data, instance=instance))

    def leave(self, *, instance: str | None = None) -> None:
        self._client._run(self._presence.leave(instance=instance))

    def members(self) -> list[PresenceMember]:
        return self._client._run(self._presence.members())

    def subscribe(self) -> PresenceSubscription:
        return PresenceSubscription(self._client, self._presence.subscribe())


class PresenceSubscription(_Blocking[PresenceEvent]):
    """Iterate it for :class:`switchboard.client.PresenceEvent` objects; ``members`` is the
    current set."""

    _subscription: _presence.PresenceSubscription

    @property
    def members(self) -> Mapping[str, PresenceMember]:
        return self._subscription.members

    @property
    def synced(self) -> bool:
        return self._subscription.synced

    @property
    def stats(self) -> PresenceStats:
        return self._subscription.stats

    def next_event(self, timeout: float | None = None) -> PresenceEvent | None:
        return self._client._run(self._subscription.next_event(timeout))
