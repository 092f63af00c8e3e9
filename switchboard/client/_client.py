"""The asyncio client: ``Switchboard`` -> ``Channel`` -> ``Subscription``."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

import httpx

from . import _env, _http
from ._connection import (
    Connection,
    ConnectionLostError,
    ConnectionStats,
    Failure,
    Head,
    Route,
    Subscribed,
    ws_url_for,
)
from ._errors import (
    ConflictError,
    InvalidOffsetError,
    NotFoundError,
    RateLimitedError,
    SwitchboardError,
    UnauthorizedError,
    UnavailableError,
    with_hint,
)
from ._http import HttpApi, TokenProvider
from ._options import Options, backoff_delay
from ._presence import Membership, Presence
from ._recovery import Gap, Recovery, RecoveryStats
from ._subscriptions import Subscriptions
from ._types import BEGINNING, NOW, Ack, ChannelInfo, HistoryPage, Message, is_offset

DEFAULT_URL = _env.DEFAULT_URL
#: Consecutive history reads that make no progress on a gap before giving up.
_GAP_FILL_ATTEMPTS = 5


class Switchboard:
    """A client: one WebSocket shared by every subscription and publish, plus HTTP.

    Examples:
        >>> async with Switchboard("http://127.0.0.1:8765") as sb:  # doctest: +SKIP
        ...     ch = sb.channel("runs:7f3a")
        ...     await ch.publish({"type": "status", "text": "started"})
        ...     async for msg in ch.subscribe(from_="-1"):
        ...         print(msg.seq, msg.data)

    ``url`` is the HTTP base URL (default: ``SWITCHBOARD_URL``, else
    ``http://127.0.0.1:8765``). The socket URL defaults to ``SWITCHBOARD_WS_URL``, else
    ``<url>/ws`` (the dev server); on AWS pass the WebSocket API's URL as ``ws_url``.
    ``token`` goes in the socket's ``token`` query parameter and in ``Authorization: Bearer``
    on HTTP; ``auth`` is called for a fresh token when the server answers ``unauthorized``
    (and first, if no token).

    Backends pass ``api_key="<key id>:<secret>"`` instead: the client mints itself short-lived
    tokens with it (``client_id``, ``capabilities``, ``token_ttl``) and renews them when they
    expire, so the key itself never travels in a WebSocket URL (an API key given as
    ``token`` is used the same way). With no ``token``, ``auth`` or ``api_key`` the client
    reads ``SWITCHBOARD_API_KEY``, else ``SWITCHBOARD_TOKEN``.

    Credentials the server refuses raise :class:`UnauthorizedError` (or
    :class:`ForbiddenError`) with the server's reason from the first publish, subscription
    or request, within a second or so: the client does not retry what cannot succeed.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        ws_url: str | None = None,
        auth: TokenProvider | None = None,
        api_key: str | None = None,
        client_id: str = "backend",
        capabilities: dict[str, list[str]] | None = None,
        token_ttl: int = 3600,
        options: Options | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = (url or _env.url_from()).rstrip("/")
        self.options = options or Options()
        self._rng = rng or random.Random()
        if token is None and auth is None and api_key is None:
            # Nothing given: SWITCHBOARD_API_KEY, else SWITCHBOARD_TOKEN.
            found = _env.credentials_from()
            token, api_key = found.token, found.api_key
        elif token is not None and api_key is None and _env.is_api_key(token):
            # An API key passed as the token: use it as a key, so it never travels in a
            # WebSocket URL.
            token, api_key = None, token
        self._key_api: HttpApi | None = None
        if api_key is not None:
            self._key_api = HttpApi(self.url, _http.Credentials(api_key, None), self.options,
                                    transport=http_transport, rng=self._rng)
        if self._key_api is not None and auth is None:
            key_api = self._key_api
            grant = capabilities or {"*": ["*"]}

            async def mint() -> str:
                issued = await key_api.issue_token(client_id, grant, token_ttl)
                return str(issued["token"])

            auth = mint
        self._credentials = _http.Credentials(token, auth)
        self.http = HttpApi(
            self.url, self._credentials, self.options, transport=http_transport, rng=self._rng
        )
        self._connection = Connection(
            ws_url or _env.ws_url_from() or ws_url_for(self.url), self._credentials,
            self.options, self._rng, explain_refusal=self._explain_refusal,
            read_history=self._read_history,
        )
        #: This client's presence members, by (channel, HTTP instance or None for the socket).
        self._memberships: dict[tuple[str, str | None], Membership] = {}
        #: Publishes sent over HTTP because their frame was over the socket's frame limit.
        self.publishes_over_http = 0

    def channel(self, name: str) -> Channel:
        return Channel(self, name)

    @property
    def subscriptions(self) -> Subscriptions:
        """Durable Streams subscriptions (webhook and pull-wake): _subscriptions.py."""
        return Subscriptions(self.http)

    async def issue_token(
        self, client_id: str, capabilities: dict[str, list[str]], ttl: int = 3600
    ) -> dict[str, Any]:
        """Issue a token for a client (a browser, a user's CLI). Needs an API key: construct
        this client with ``api_key="<key id>:<secret>"`` (or ``SWITCHBOARD_API_KEY``).

        Returns ``{"token", "client_id", "expires" (epoch ms), "capabilities"}``.

        Examples:
            >>> async with Switchboard(url, api_key=key) as backend:  # doctest: +SKIP
            ...     issued = await backend.issue_token(
            ...         "user-42", {"runs:7f3a": ["subscribe", "publish", "history"]}, 3600)
            ...     send_to_the_browser(issued["token"])
        """
        if self._key_api is not None:
            return await self._key_api.issue_token(client_id, capabilities, ttl)
        try:  # the server decides whether these credentials may issue tokens
            return await self.http.issue_token(client_id, capabilities, ttl)
        except UnauthorizedError as error:
            if not self._credentials.given:
                raise  # already says what to set
            raise with_hint(error, "Construct the client that issues tokens with "
                            "api_key='<key id>:<secret>' (or set SWITCHBOARD_API_KEY).") from None

    async def _explain_refusal(self, status: int) -> SwitchboardError | None:
        """Ask the HTTP API why the socket's credentials were refused (see Connection)."""
        routes = self._connection._routes
        channel = next(iter(routes), None) or "_"
        return await self.http.check_credentials(channel)

    @property
    def connection_stats(self) -> ConnectionStats:
        """Connects, reconnects, rotations and pings of the shared socket."""
        return self._connection.stats

    @property
    def connection(self) -> Connection:
        return self._connection

    async def _read_history(self, channel: str, from_: str, limit: int) -> list[Message]:
        return (await self.http.history(channel, from_, limit)).messages

    def _membership_ended(self, membership: Membership) -> None:
        for key, known in list(self._memberships.items()):
            if known is membership:
                del self._memberships[key]
        if self._connection.memberships.get(membership.channel) is membership:
            del self._connection.memberships[membership.channel]

    async def _leave_all(self) -> None:
        """Leave every channel this client entered (best effort, briefly): watchers see
        the leave at once instead of after ``$disconnect`` or the member's TTL."""
        memberships = list(self._memberships.values())
        if memberships:
            timeout = min(2.0, self.options.request_timeout)
            await asyncio.gather(*(m.leave(timeout) for m in memberships),
                                 return_exceptions=True)

    async def aclose(self) -> None:
        await self._leave_all()
        await self._connection.aclose()
        await self.http.aclose()
        if self._key_api is not None:
            await self._key_api.aclose()

    async def __aenter__(self) -> Switchboard:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _publish(self, channel: str, data: Any, id: str | None) -> Ack:
        """Publish one message until acked or the deadline passes.

        Over the socket, or over HTTP when the frame would be over API Gateway's 32 KB frame
        limit (``Options.max_frame_bytes``); the answer is the same ack either way. Without
        an ``id`` the publish carries a random request ``token``, and every re-send of it
        says ``retry``: the server then looks for the first attempt before storing, so an
        ack lost with a dying socket (or a timeout) cannot store the message twice. With an
        ``id`` the id does that. ``rate_limited`` is retried after the server's
        ``retry_after_ms``; the error reaches the caller only once the deadline passed.
        """
        opts = self.options
        key = {"id": id} if id is not None else {"token": secrets.token_hex(16)}
        frame: dict[str, Any] = {"action": "publish", "channel": channel, "data": data, **key}
        over_http = (
            self._connection.frame_bytes({**frame, "retry": True}) > opts.max_frame_bytes
        )
        deadline = time.monotonic() + opts.publish_deadline
        attempt = 0  # failed attempts, for the backoff
        sent = False  # an attempt went out: later ones are retries
        last: SwitchboardError | None = None
        refreshed = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last or UnavailableError(
                    f"Could not publish to {channel!r} within {opts.publish_deadline:g} s."
                )
            retry = sent and id is None
            sent = True
            try:
                if over_http:
                    self.publishes_over_http += 1
                    return await self.http.publish(
                        channel, data, id, token=key.get("token"), retry=retry,
                        attempts=1, timeout=min(opts.request_timeout, remaining),
                    )
                reply = await self._connection.request(
                    {**frame, "retry": True} if retry else frame,
                    min(opts.request_timeout, remaining),
                )
                return Ack.from_dict(reply)
            except (ConnectionLostError, TimeoutError):
                last = UnavailableError(
                    f"The connection dropped while publishing to {channel!r}; "
                    f"last error: {self._connection.stats.last_error}."
                )
                delay = backoff_delay(attempt, opts.backoff_initial, opts.backoff_max, self._rng)
            except UnauthorizedError as error:
                # The token expired while connected: renew it once, reconnect, send again
                # (same id or token, so nothing can be stored twice). Over HTTP the request
                # already renewed it once.
                if (refreshed or over_http or self._connection.failed_for_good
                        or not await self._connection.reauthenticate()):
                    raise
                refreshed, last = True, error
                continue
            except RateLimitedError as error:
                last = error
                delay = error.retry_after or backoff_delay(
                    attempt, opts.backoff_initial, opts.backoff_max, self._rng
                )
            except SwitchboardError as error:
                if not error.retryable:
                    raise
                last = error
                delay = backoff_delay(attempt, opts.backoff_initial, opts.backoff_max, self._rng)
            attempt += 1
            await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))


class Channel:
    """A channel by name. Creating this object does nothing on the server."""

    def __init__(self, client: Switchboard, name: str) -> None:
        self.client = client
        self.name = name

    @property
    def presence(self) -> Presence:
        """Who is on this channel: ``enter``/``update``/``leave`` this client's member,
        ``members()``, ``subscribe()`` to changes (_presence.py, docs/sdk.md)."""
        return Presence(self)

    async def publish(self, data: Any, id: str | None = None) -> Ack:
        """Publish one message over the shared socket, retrying transient failures.

        ``id`` is the idempotency key: publishing the same id again stores nothing. Without
        one, the call's retries carry a random request token instead, so they cannot store
        the message twice either (and the publish costs one write, not two). A message
        whose frame would be over API Gateway's 32 KB frame limit goes over HTTP, with the
        same guarantees. ``rate_limited`` is retried after the delay the server asks for,
        up to ``Options.publish_deadline``.
        """
        return await self.client._publish(self.name, data, id)

    async def publish_many(self, items: Iterable[Any | tuple[Any, str]]) -> list[Ack]:
        """Publish a batch in one HTTP request. Items are ``data`` or ``(data, id)``."""
        batch = [
            item if isinstance(item, tuple) else (item, uuid.uuid4().hex) for item in items
        ]
        return await self.client.http.publish_many(self.name, batch)

    def subscribe(self, from_: str = NOW) -> Subscription:
        """Follow the channel from ``from_`` ("now", "-1" or a stored offset).

        Iterate the result with ``async for``; it yields every message after ``from_``
        exactly once and in order, across reconnects. Use it as an async context manager
        (or call :meth:`Subscription.aclose`) to stop early.
        """
        return Subscription(self, from_)

    async def history(self, from_: str = "-1", limit: int = 100) -> HistoryPage:
        """One page of stored messages after ``from_``; pass ``page.next`` to go on."""
        return await self.client.http.history(self.name, from_, limit)

    async def iter_history(
        self, from_: str = "-1", page_size: int = 500
    ) -> AsyncIterator[Message]:
        """Every stored message after ``from_`` up to the head when reading ends."""
        cursor = from_
        while True:
            page = await self.history(cursor, page_size)
            for message in page.messages:
                yield message
            cursor = page.next
            if page.up_to_date or not page.messages:
                return

    async def info(self) -> ChannelInfo:
        return await self.client.http.info(self.name)

    async def create(self, retention: int | None = None) -> ChannelInfo:
        return await self.client.http.create(self.name, retention)

    async def delete(self) -> None:
        await self.client.http.delete(self.name)


class Subscription:
    """An exactly-once, in-order view of a channel that survives reconnects.

    ``position`` is the offset of the last message this iterator yielded: persist it after
    processing a message and pass it as ``from_`` after a restart to continue right after.
    """

    def __init__(self, channel: Channel, from_: str = NOW) -> None:
        self.channel = channel
        if from_ not in (NOW, BEGINNING) and not is_offset(from_):
            raise InvalidOffsetError(
                f"{from_!r} is not a position to subscribe from: use 'now' (only new "
                "messages), '-1' (from the first retained message) or the offset of the last "
                "message you processed (like 019ad0392f80a540_0000000000000043).",
                {"offset": from_},
            )
        self._recovery = Recovery(channel.name, from_)
        self._route = Route(channel.name, self._recovery.resume_from)
        self._started = False
        self._done = False
        self._fill_failures = 0

    @property
    def position(self) -> str | None:
        return self._recovery.position

    @property
    def stats(self) -> RecoveryStats:
        """Delivered messages, duplicates dropped, gaps filled, resubscribes."""
        return self._recovery.stats

    @property
    def caught_up(self) -> bool:
        """True once every message stored at (re)subscribe time has been yielded."""
        return self._recovery.caught_up

    async def start(self) -> None:
        """Register the subscription now (iteration does this on first use)."""
        if self._started:
            return
        connection = self.channel.client.connection
        existing = connection._routes.get(self.channel.name)
        if existing is not None and existing.deliver:  # (a presence watch is joined)
            raise ConflictError(
                f"This client already follows {self.channel.name!r}; one subscription per "
                "channel per client. Share its messages, or use a second Switchboard client.",
                {"channel": self.channel.name},
            )
        self._started = True
        connection.add(self._route)

    async def next_message(self, timeout: float | None = None) -> Message | None:
        """The next message, or ``None`` if none arrives within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._done:
            raise StopAsyncIteration
        await self.start()
        recovery = self._recovery
        while True:
            message = recovery.next_ready()
            if message is not None:
                return message
            gap = recovery.gap()
            if gap is not None:
                await self._fill(gap)
                continue
            event = await self._route.queue.get()
            try:
                if isinstance(event, Message):
                    recovery.receive(event)
                elif isinstance(event, Subscribed):
                    recovery.subscribed(event.epoch, event.from_offset, event.head)
                elif isinstance(event, Head):
                    recovery.head_reported(event.offset)
                elif isinstance(event, Failure):
                    raise event.error
            except SwitchboardError:
                self._finish()
                raise

    async def _fill(self, gap: Gap) -> None:
        """Fetch missing messages over HTTP; they are buffered like socket arrivals."""
        recovery = self._recovery
        before = recovery.last_seq or 0
        position = gap.from_offset
        try:
            page = await self.channel.history(
                position, min(1000, max(1, gap.until_seq - before))
            )
            for message in page.messages:
                recovery.receive(message)
        except NotFoundError:
            if not gap.reported:  # else deleted since the head was read: nothing to fetch
                self._finish()
                raise
        except SwitchboardError:
            self._finish()
            raise
        if recovery.gap() is None:
            recovery.note_gap_filled(gap.reported)
            self._fill_failures = 0
            return
        if gap.reported:
            # History holds nothing past our position after all (the head was read before
            # an expiry or a deletion): nothing is missing, nothing to wait for.
            recovery.drop_reported_head()
            return
        # An eventually consistent read may trail the stream that told us about the message.
        self._fill_failures += 1
        if self._fill_failures >= _GAP_FILL_ATTEMPTS:
            self._finish()
            raise UnavailableError(
                f"Messages after {position} on {self.channel.name!r} are missing and history "
                "did not return them; subscribe again from this position.",
                {"offset": position},
            )
        opts = self.channel.client.options
        await asyncio.sleep(min(opts.backoff_max, opts.backoff_initial * self._fill_failures))

    def _finish(self) -> None:
        self._done = True
        self.channel.client.connection.remove(self._route)

    async def aclose(self) -> None:
        if not self._done:
            self._finish()

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
