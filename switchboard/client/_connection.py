"""One WebSocket per client: multiplexed subscriptions and publishes, kept alive for ever.

The connection task connects, resubscribes every live subscription from its last processed
position, then reads frames and routes them: ``message``/``messages``/``subscribed`` (and
errors about a subscription) to that subscription's queue, replies with a ``ref`` to the
request waiting for them. When the socket dies (network, server restart, API Gateway's idle or
2-hour limit) it reconnects with full-jitter exponential backoff; requests in flight fail over
to the next socket. Pings keep an idle socket open and detect a dead one; the socket is also
replaced on our own schedule before API Gateway's 2-hour limit closes it.

What the server may send beyond one message per frame, handled here so the subscription sees
single messages in arrival order:

* ``messages`` frames (subscriptions ask for them with ``"batch": true``): several messages
  of one channel, in seq order.
* A byte stream's entry over 22 KB as several ``message`` frames with the same seq and
  ``"slice": [index, count]``: joined here into one message.
* A replay paused to stay within the server's invocation time (``unavailable`` with
  ``detail.resume`` and ``detail.offset``): subscribed again from that offset, silently.
* Heads in a pong: a subscription quiet for ``Options.idle_check`` seconds has its channel's
  head asked for in a ping (``"channels": [...]``, also in every keep-alive ping); the head
  goes to the subscription, which fetches from history what the fan-out never delivered.
* Presence (_presence.py): a route that watches its channel's presence subscribes with
  ``"presence": true``; the ``members`` snapshot and the messages of ``<channel>@presence``
  go to its :class:`PresenceFeed`. A route may watch presence only (its channel's messages
  are then dropped). Members entered over this socket are told when a new socket replaces
  it (their key changed: they enter again) and when a heartbeat answers ``not_found``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from ._env import NO_CREDENTIALS_HINT
from ._errors import (
    ClosedError,
    EpochMismatchError,
    ForbiddenError,
    InternalError,
    InvalidOffsetError,
    NotFoundError,
    OffsetExpiredError,
    SwitchboardError,
    UnauthorizedError,
    UnavailableError,
    clone,
    error_from_payload,
)
from ._http import Credentials
from ._options import Options, backoff_delay
from ._presence import HistoryReader, Membership, PresenceFeed, base_channel, presence_log
from ._types import BASE64, NOW, Message, is_offset

log = logging.getLogger("switchboard.client")

#: Channels one ping may ask heads for (the server's limit).
MAX_PING_CHANNELS = 20
#: The longest ``ref`` this client generates, for measuring a frame before it has one.
_REF_PLACEHOLDER = "c" + "9" * 12


class ConnectionLostError(Exception):
    """Internal: the socket a request was sent on went away; the request may be retried."""


@dataclass(frozen=True)
class Subscribed:
    epoch: str
    from_offset: str
    head: str


@dataclass(frozen=True)
class Failure:
    error: SwitchboardError


@dataclass(frozen=True)
class Head:
    """The channel's head offset (or ``-1``) as a pong reported it."""

    offset: str


#: What a subscription's queue carries, in arrival order.
Event = Subscribed | Message | Failure | Head

#: Asked why a handshake was refused with this status (401/403); returns the server's error.
RefusalExplainer = Callable[[int], Awaitable["SwitchboardError | None"]]


@dataclass
class _Slices:
    """The slices received so far of one byte-stream entry (``"slice": [index, count]``)."""

    seq: int
    count: int
    first: dict[str, Any]
    parts: list[bytes | str] = field(default_factory=list)


@dataclass
class Route:
    """The connection's view of one subscription: where to resubscribe from, where to route."""

    channel: str
    resume_from: Callable[[], str]
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    # The ref of the last subscribe sent: the server's errors about it echo it.
    subscribe_ref: str | None = None
    # `subscribed` arrived on the current socket.
    confirmed: bool = False
    # When a frame of this subscription last arrived, and when its head was last asked for
    # (time.monotonic()).
    active_at: float = 0.0
    checked_at: float = 0.0
    # Retryable refusals of the subscribe in a row (backoff before the next one).
    failures: int = 0
    slices: _Slices | None = None
    #: Also follow the channel's presence (``"presence": true``): its snapshot and changes.
    presence: PresenceFeed | None = None
    #: False for a route that only watches presence: the channel's messages are dropped.
    deliver: bool = True


def _now() -> str:
    return NOW


async def _no_history(channel: str, from_: str, limit: int) -> list[Message]:
    return []


@dataclass
class ConnectionStats:
    connects: int = 0
    reconnects: int = 0
    rotations: int = 0  # proactive reconnects before the 2-hour limit
    pings: int = 0
    last_error: str | None = None
    #: Replays the server paused (``unavailable`` + ``resume``) and the client continued.
    replay_resumes: int = 0
    #: Pings that asked for channels' heads (a subscription had been quiet).
    head_checks: int = 0


class Connection:
    def __init__(
        self,
        ws_url: str,
        credentials: Credentials,
        options: Options,
        rng: random.Random | None = None,
        explain_refusal: RefusalExplainer | None = None,
        read_history: HistoryReader | None = None,
    ) -> None:
        self._ws_url = ws_url
        self._read_history = read_history or _no_history
        #: Members entered over this socket, by channel (see _presence.Membership).
        self.memberships: dict[str, Membership] = {}
        self._explain = explain_refusal
        self._fatal: SwitchboardError | None = None
        self._credentials = credentials
        self._options = options
        self._rng = rng or random.Random()
        self._routes: dict[str, Route] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_rx = time.monotonic()
        self.stats = ConnectionStats()

    # -- public to the client -------------------------------------------------------------

    @property
    def websocket(self) -> ClientConnection | None:
        """The current socket (tests close it to simulate failures)."""
        return self._ws

    @property
    def failed_for_good(self) -> bool:
        """The last attempt to connect ended with a credential error (already retried with a
        fresh token where there was a way to get one)."""
        return self._fatal is not None

    def add(self, route: Route) -> None:
        self._ensure_running()
        existing = self._routes.get(route.channel)
        if existing is not None and existing is not route and route.presence is None:
            route.presence = existing.presence  # a subscription joins a presence watch
        self._routes[route.channel] = route
        if self._ws is not None:
            self._spawn_send(self._subscribe_frame(route))

    def remove(self, route: Route) -> None:
        if self._routes.get(route.channel) is not route:
            return
        if route.presence is not None and route.deliver:
            # Its presence is still watched: keep following that, without the messages.
            route.deliver, route.resume_from = False, _now
            return
        del self._routes[route.channel]
        if self._ws is not None:
            self._spawn_send(
                {"action": "unsubscribe", "ref": self._ref(), "channel": route.channel}
            )

    # -- presence ---------------------------------------------------------------------------

    def presence_feed(self, channel: str) -> PresenceFeed | None:
        route = self._routes.get(channel)
        return route.presence if route is not None else None

    def watch_presence(self, channel: str) -> PresenceFeed:
        """Follow ``channel``'s presence: on its subscription if it has one (subscribed again
        with ``"presence": true``), else on a route of its own that drops the messages."""
        route = self._routes.get(channel)
        if route is not None and route.presence is not None and route.presence.error is None:
            return route.presence
        feed = PresenceFeed(channel, self._read_history, lambda: self._resync(channel),
                            self._options)
        if route is None:
            self.add(Route(channel, _now, presence=feed, deliver=False))
        else:
            route.presence = feed
            if self._ws is not None:
                route.confirmed = False
                self._spawn_send(self._subscribe_frame(route))
        return feed

    def unwatch_presence(self, feed: PresenceFeed, listener: Any) -> None:
        """One listener of ``feed`` stopped; the last one stops following presence."""
        if not feed.unlisten(listener):
            return
        route = self._routes.get(feed.channel)
        if route is None or route.presence is not feed:
            return
        route.presence = None
        if not route.deliver:
            self.remove(route)
        if self._ws is not None:
            self._spawn_send({"action": "unsubscribe", "ref": self._ref(),
                              "channel": presence_log(feed.channel)})

    def send_nowait(self, frame: dict[str, Any]) -> bool:
        """Send a frame that expects no reply on the current socket; False if none."""
        if self._ws is None:
            return False
        self._spawn_send(frame)
        return True

    def _resync(self, channel: str) -> None:
        """Subscribe again for a fresh presence snapshot."""
        route = self._routes.get(channel)
        if route is not None and route.presence is not None and self._ws is not None:
            route.confirmed = False
            self._spawn_send(self._subscribe_frame(route))

    def _fail_route(self, route: Route, error: SwitchboardError) -> None:
        """The server refused the route's subscription for good."""
        feed = route.presence
        if route.deliver:
            route.queue.put_nowait(Failure(error))
            if feed is not None and isinstance(
                error, OffsetExpiredError | EpochMismatchError | InvalidOffsetError
            ):
                # The messages' position failed, not presence: keep watching from now.
                watch = Route(route.channel, _now, presence=feed, deliver=False)
                self._routes[route.channel] = watch
                if self._ws is not None:
                    self._spawn_send(self._subscribe_frame(watch))
                return
        elif feed is not None and isinstance(error, EpochMismatchError):
            # The channel was deleted and created again: watch the new one from now.
            if self._ws is not None:
                self._spawn_send(self._subscribe_frame(route))
            return
        del self._routes[route.channel]
        if feed is not None:
            feed.fail(error)

    async def request(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one frame on the current socket and wait for the frame with its ``ref``.

        Raises :class:`ConnectionLostError` if the socket dies first, ``TimeoutError`` if
        no reply comes, or the typed error the server answered with.
        """
        ws = await self._wait_connected(timeout)
        ref = self._ref()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            try:
                await ws.send(encode_frame({**frame, "ref": ref}))
            except websockets.ConnectionClosed:
                raise ConnectionLostError from None
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise error_from_payload(reply)
        return reply

    @staticmethod
    def frame_bytes(frame: dict[str, Any]) -> int:
        """The size of ``frame`` as :meth:`request` would send it (with a ``ref``)."""
        return len(encode_frame({**frame, "ref": _REF_PLACEHOLDER}).encode("utf-8"))

    async def aclose(self) -> None:
        self._closed = True
        for route in list(self._routes.values()):
            route.queue.put_nowait(Failure(ClosedError("The client was closed.")))
            if route.presence is not None:
                route.presence.fail(ClosedError("The client was closed."))
        self._routes.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_pending(lambda: ClosedError("The client was closed."))

    # -- the connection task --------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._closed:
            raise ClosedError("The client was closed; create a new Switchboard client.")
        if self._task is None or self._task.done():
            if self._fatal is not None:  # a new attempt after a credential failure
                self._fatal = None
                self._connected.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard")

    async def _wait_connected(self, timeout: float) -> ClientConnection:
        self._ensure_running()
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise UnavailableError(
                f"Could not connect to {self._ws_url} within {timeout:g} s "
                f"(last error: {self.stats.last_error}). Is the server running?"
            ) from None
        if self._fatal is not None:
            raise clone(self._fatal)
        if self._ws is None:
            raise ConnectionLostError
        return self._ws

    async def _run(self) -> None:
        try:
            await self._connect_and_serve()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nothing may escape a task nobody awaits
            log.exception("the connection task failed")
            self._fail_for_good(
                InternalError(f"The client's connection failed: {exc.__class__.__name__}: {exc}")
            )

    async def _connect_and_serve(self) -> None:
        failures = 0
        refreshed = False  # a token was fetched for the refusal being handled
        while not self._closed:
            try:
                url = await self._socket_url()
            except Exception as exc:
                # Minting a token failed: a wrong key is final, an unreachable server is not.
                error = _credential_failure(exc)
                if error is not None:
                    self._fail_for_good(error)
                    return
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                await asyncio.sleep(self._delay(failures))
                failures += 1
                continue
            try:
                ws = await websockets.connect(
                    url,
                    open_timeout=self._options.connect_timeout,
                    ping_interval=None,  # application pings: API Gateway counts frames
                    close_timeout=1,
                    max_size=2**22,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                status = _refused_status(exc)
                if status is not None:
                    # Refused for its credentials: a fresh token may help, once; waiting never
                    # does, so fail now rather than reconnect for ever.
                    if status == 401 and not refreshed and self._credentials.auth is not None:
                        refreshed = True
                        try:
                            await self._credentials.refresh()
                        except Exception as refresh_error:
                            error = _credential_failure(refresh_error)
                            if error is not None:
                                self._fail_for_good(error)
                                return
                        continue
                    self._fail_for_good(await self._refusal(status))
                    return
                await asyncio.sleep(self._delay(failures))
                failures += 1
                continue
            refreshed = False
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            opened = time.monotonic()
            try:
                await self._serve(ws)
            except Exception as exc:  # the loop must survive anything a socket throws
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"
                log.debug("connection ended", exc_info=True)
            finally:
                self._ws = None
                self._connected.clear()
                self._fail_pending(ConnectionLostError)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1)
            # A socket that stayed up a while resets the backoff: that was not a crash loop.
            failures = 0 if time.monotonic() - opened > self._options.backoff_max else failures
            if not self._closed:
                await asyncio.sleep(self._delay(failures))
                failures += 1

    async def _refusal(self, status: int) -> SwitchboardError:
        """The error for a handshake refused with 401/403, with the server's reason.

        The refusal itself carries no message (API Gateway's authorizer answers a bare 401),
        so the HTTP API is asked, with the same credentials, what is wrong with them.
        """
        expected = UnauthorizedError if status == 401 else ForbiddenError
        if self._explain is not None:
            try:
                explained = await asyncio.wait_for(self._explain(status), 4.0)
            except Exception:
                explained = None
            if isinstance(explained, expected):
                return explained
        where = urlunsplit(urlsplit(self._ws_url)._replace(query=""))
        if status == 401:
            text = (f"The server refused the WebSocket connection to {where} (HTTP 401): the "
                    "credentials are missing, invalid or expired.")
            if not self._credentials.given:
                text = f"{text} {NO_CREDENTIALS_HINT}"
        else:
            text = (f"The server refused the WebSocket connection to {where} (HTTP 403): "
                    "these credentials (or this page's origin) may not connect.")
        return expected(text, {"status": status}, status)

    def _fail_for_good(self, error: SwitchboardError) -> None:
        """End the connection task: every waiter and subscription gets ``error`` now.

        A later publish or subscribe starts a new attempt (the credentials may have been
        fixed meanwhile); nothing retries on its own.
        """
        self._fatal = error
        self.stats.last_error = str(error)
        routes = list(self._routes.values())
        self._routes.clear()
        for route in routes:
            route.queue.put_nowait(Failure(clone(error)))
            if route.presence is not None:
                route.presence.fail(clone(error))
        self._fail_pending(lambda: clone(error))
        self._connected.set()  # wakes _wait_connected, which raises the error

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        for route in list(self._routes.values()):
            route.confirmed, route.slices = False, None
            await ws.send(encode_frame(self._subscribe_frame(route)))
        for membership in list(self.memberships.values()):
            membership.gone()  # a new connection id: members enter again
        self._connected.set()
        keepalive = asyncio.create_task(self._keepalive(ws))
        try:
            async for raw in ws:
                self._last_rx = time.monotonic()
                self._dispatch(raw)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping when idle; close a socket that stops answering or has lived long enough.

        A subscription quiet for ``idle_check`` seconds since its last frame has its
        channel's head asked for (a ping with ``channels``); keep-alive pings ask for the
        heads of every quiet subscription too. A head past the last message a subscription
        has is a message the fan-out gave up on: the subscription fetches it from history.
        """
        opts = self._options
        # Jitter the rotation so a fleet of clients started together spreads its reconnects.
        rotate_at = time.monotonic() + opts.max_connection_age * self._rng.uniform(0.9, 1.0)
        self._last_rx = time.monotonic()
        # Wake up at least this often to notice subscriptions that became due meanwhile.
        tick = max(0.05, opts.idle_check / 5) if opts.idle_check > 0 else float("inf")
        while True:
            now = time.monotonic()
            if now >= rotate_at:
                self.stats.rotations += 1
                await ws.close(1000, "rotating before the connection time limit")
                return
            due = self._due_for_head_check(now)
            idle_for = now - self._last_rx
            if not due and idle_for < opts.ping_interval:
                await asyncio.sleep(min(opts.ping_interval - idle_for, rotate_at - now, tick))
                continue
            routes = (due or self._quiet_routes(now))[:MAX_PING_CHANNELS]
            frame: dict[str, Any] = {"action": "ping"}
            if routes:
                frame["channels"] = [route.channel for route in routes]
                self.stats.head_checks += 1
            for route in routes:
                route.checked_at = now
            self.stats.pings += 1
            try:
                reply = await self.request(frame, opts.pong_timeout)
            except (TimeoutError, ConnectionLostError):
                self.stats.last_error = "no pong within the timeout"
                ws.transport.abort()  # a dead peer would never complete a closing handshake
                return
            except SwitchboardError as error:
                # An answer, so the socket is alive; the heads were refused (a renewed token
                # without `subscribe` on a channel, say): no heads this round.
                log.debug("a ping asking for heads was refused: %s", error)
                if isinstance(error, UnauthorizedError) and self._credentials.auth is not None:
                    asyncio.get_running_loop().create_task(self._reauthenticate_or_fail())
                continue
            self._report_heads(reply.get("heads"))

    def _due_for_head_check(self, now: float) -> list[Route]:
        """Subscriptions quiet for ``idle_check`` seconds since a frame not yet followed by a
        head check, the quietest first."""
        wait = self._options.idle_check
        if wait <= 0:
            return []
        due = [
            route for route in self._routes.values()
            if route.confirmed and route.deliver and route.active_at > route.checked_at
            and now - route.active_at >= wait
        ]
        return sorted(due, key=lambda route: route.active_at)

    def _quiet_routes(self, now: float) -> list[Route]:
        """Subscriptions quiet for ``idle_check`` seconds, the longest unchecked first: a
        keep-alive ping asks for their heads too."""
        wait = self._options.idle_check
        if wait <= 0:
            return []
        quiet = [
            route for route in self._routes.values()
            if route.confirmed and route.deliver and now - route.active_at >= wait
        ]
        return sorted(quiet, key=lambda route: route.checked_at)

    def _report_heads(self, heads: object) -> None:
        if not isinstance(heads, dict):
            return
        for channel, head in heads.items():
            route = self._routes.get(channel)
            if route is not None and route.deliver and isinstance(head, str):
                route.queue.put_nowait(Head(head))

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignored a frame that is not JSON: %.80r", raw)
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        ref = frame.get("ref")
        channel = frame.get("channel")
        route = self._routes.get(channel) if isinstance(channel, str) else None
        owner = self._presence_owner(channel) if route is None else None
        if kind in ("message", "messages", "subscribed"):
            if owner is not None and owner.presence is not None:
                if kind != "subscribed":  # the presence log's; its changes go to the feed
                    try:
                        self._route_presence(owner.presence, kind, frame)
                    except (KeyError, TypeError, ValueError):
                        log.warning("ignored a malformed presence change: %.200r", raw)
                return
            if route is not None:
                route.active_at = time.monotonic()
                try:
                    self._route_frame(route, kind, frame)
                except (KeyError, TypeError, ValueError):
                    # A malformed message is as good as lost: the gap logic fetches it.
                    log.warning("ignored a malformed %s frame: %.200r", kind, raw)
            return
        if kind == "members":
            if route is not None and route.presence is not None:
                route.presence.snapshot(frame)
            return
        future = self._pending.get(ref) if isinstance(ref, str) else None
        if future is not None:
            if not future.done():
                future.set_result(frame)
            return
        if kind == "error" and ref is None and isinstance(channel, str) and (
            self._heartbeat_refused(channel, frame)
        ):
            return
        if kind == "error" and owner is not None and owner.presence is not None:
            # About the presence log itself (replaced, say): take a fresh snapshot.
            log.debug("presence log error: %.200r", raw)
            self._resync(owner.channel)
            return
        if kind == "error" and route is not None:
            if isinstance(ref, str) and ref != route.subscribe_ref:
                # About an earlier subscribe, or a publish whose caller stopped waiting:
                # not about the subscription as it stands.
                log.debug("ignored a late error frame: %.200r", raw)
                return
            error = error_from_payload(frame)
            if isinstance(error, UnauthorizedError) and self._credentials.auth is not None:
                # A later token refresh resubscribes everything on the next socket.
                asyncio.get_running_loop().create_task(self._reauthenticate_or_fail())
                return
            resume = error.detail.get("offset")
            if (isinstance(error, UnavailableError) and error.detail.get("resume") is True
                    and isinstance(resume, str) and is_offset(resume)):
                # The server paused a replay to stay within its invocation's time: continue
                # from where it got to. Unseen by the application.
                self.stats.replay_resumes += 1
                route.confirmed = False
                self._spawn_send(self._subscribe_frame(route, resume))
                return
            if error.retryable:
                # A subscribe the server could not handle now: again, after a backoff.
                route.failures += 1
                self._resubscribe_later(route, self._delay(route.failures - 1))
                return
            self._fail_route(route, error)
            return
        if kind == "error":
            log.warning("server error: %s", frame.get("message"))

    def _presence_owner(self, channel: object) -> Route | None:
        """The route whose presence log ``channel`` is, if it watches presence."""
        base = base_channel(channel) if isinstance(channel, str) else None
        route = self._routes.get(base) if base is not None else None
        return route if route is not None and route.presence is not None else None

    def _route_presence(self, feed: PresenceFeed, kind: object, frame: dict[str, Any]) -> None:
        log_channel = str(frame["channel"])
        if kind == "messages":
            for item in frame["messages"]:
                feed.change(Message.from_dict({"channel": log_channel, **item}))
        else:
            feed.change(Message.from_dict(frame))

    def _heartbeat_refused(self, channel: str, frame: dict[str, Any]) -> bool:
        """An error without a ref about a channel this client is a member of answers a
        heartbeat (the only presence frame sent without a ref)."""
        membership = self.memberships.get(channel)
        if membership is None or frame.get("code") not in (
            "not_found", "forbidden", "unauthorized"
        ):
            return False
        error = error_from_payload(frame)
        if isinstance(error, NotFoundError):
            membership.gone(expired=True)  # expired (missed heartbeats): enter again
        elif isinstance(error, UnauthorizedError) and self._credentials.auth is not None:
            # The token expired: renew it; the next socket enters again.
            asyncio.get_running_loop().create_task(self._reauthenticate_or_fail())
        else:
            membership.refused(error)
        return True

    def _route_frame(self, route: Route, kind: object, frame: dict[str, Any]) -> None:
        """A frame for a subscription: its messages go to its queue one by one, in order."""
        if kind == "subscribed":
            route.confirmed, route.failures, route.slices = True, 0, None
            if route.deliver:
                route.queue.put_nowait(
                    Subscribed(str(frame["epoch"]), str(frame["from"]), str(frame["head"]))
                )
        elif not route.deliver:
            return  # a route that watches presence only
        elif kind == "messages":
            for item in frame["messages"]:
                route.queue.put_nowait(Message.from_dict({"channel": route.channel, **item}))
        elif "slice" in frame:
            message = self._join_slice(route, frame)
            if message is not None:
                route.queue.put_nowait(message)
        else:
            route.queue.put_nowait(Message.from_dict(frame))

    def _join_slice(self, route: Route, frame: dict[str, Any]) -> Message | None:
        """One slice of a byte-stream entry; the whole entry once its last slice arrives.

        Slices of one entry arrive consecutively. One out of place drops the entry: it is
        then missing like a lost message, and the gap logic fetches it from history.
        """
        index, count = (int(n) for n in frame["slice"])
        seq = int(frame["seq"])
        partial = route.slices
        if index == 0:
            partial = route.slices = _Slices(seq, count, frame)
        elif partial is None or (partial.seq, partial.count, len(partial.parts)) != (
            seq, count, index
        ):
            route.slices = None
            log.warning("slice %d/%d of seq %d of %r arrived out of order; the entry will "
                        "be read from history", index, count, seq, route.channel)
            return None
        data = frame.get("data")
        if frame.get("encoding") == BASE64:
            try:
                partial.parts.append(base64.b64decode(str(data), validate=True))
            except (binascii.Error, ValueError):
                route.slices = None
                log.warning("slice %d/%d of seq %d of %r is not base64; the entry will be "
                            "read from history", index, count, seq, route.channel)
                return None
        else:
            partial.parts.append(str(data))
        if len(partial.parts) < partial.count:
            return None
        route.slices = None
        whole = {k: v for k, v in partial.first.items() if k not in ("type", "slice")}
        parts = partial.parts
        if all(isinstance(part, bytes) for part in parts):
            whole["data"] = base64.b64encode(b"".join(
                part for part in parts if isinstance(part, bytes)
            )).decode("ascii")
        else:
            whole["data"] = "".join(str(part) for part in parts)
        return Message.from_dict(whole)

    async def reauthenticate(self) -> bool:
        """Fetch a fresh token and reconnect with it (resubscribing from the last offsets);
        False when there is no ``auth`` callback to ask."""
        if self._credentials.auth is None:
            return False
        await self._reauthenticate()
        return True

    async def _reauthenticate(self) -> None:
        await self._credentials.refresh()
        if self._ws is not None:
            await self._ws.close(1000, "reconnecting with a fresh token")

    async def _reauthenticate_or_fail(self) -> None:
        """:meth:`_reauthenticate` in a task of its own: a token that cannot be renewed ends
        the subscriptions with the reason instead of an unretrieved task exception."""
        try:
            await self._reauthenticate()
        except Exception as exc:
            error = _credential_failure(exc) or UnavailableError(
                f"Could not renew the token: {exc}"
            )
            if self._task is not None:
                self._task.cancel()
            self._fail_for_good(error)

    # -- helpers --------------------------------------------------------------------------

    def _subscribe_frame(self, route: Route, from_: str | None = None) -> dict[str, Any]:
        """A subscribe from ``from_`` (default: the subscription's position)."""
        route.subscribe_ref = self._ref()
        frame: dict[str, Any] = {
            "action": "subscribe",
            "ref": route.subscribe_ref,
            "channel": route.channel,
            "from": from_ if from_ is not None else route.resume_from(),
        }
        if self._options.batch_frames:
            frame["batch"] = True
        if route.presence is not None:
            frame["presence"] = True
            route.presence.resubscribing()
        return frame

    def _resubscribe_later(self, route: Route, delay: float) -> None:
        """Subscribe again after ``delay`` seconds, if still wanted on the same socket."""
        ws = self._ws

        async def later() -> None:
            await asyncio.sleep(delay)
            if self._ws is ws and self._routes.get(route.channel) is route:
                self._spawn_send(self._subscribe_frame(route))

        asyncio.get_running_loop().create_task(later())

    def _spawn_send(self, frame: dict[str, Any]) -> None:
        ws = self._ws

        async def send() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                if ws is not None:
                    await ws.send(encode_frame(frame))

        asyncio.get_running_loop().create_task(send())

    def _ref(self) -> str:
        return f"c{next(self._refs)}"

    def _delay(self, failures: int) -> float:
        opts = self._options
        return backoff_delay(failures, opts.backoff_initial, opts.backoff_max, self._rng)

    def _fail_pending(self, error: Callable[[], Exception]) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error())
        self._pending.clear()

    async def _socket_url(self) -> str:
        token = await self._credentials.current()
        if not token:
            return self._ws_url
        parts = urlsplit(self._ws_url)
        query = "&".join(q for q in (parts.query, urlencode({"token": token})) if q)
        return urlunsplit(parts._replace(query=query))


def encode_frame(frame: dict[str, Any]) -> str:
    """A frame as sent: compact JSON, UTF-8 (smaller than ``\\u`` escapes, which matters
    under API Gateway's 32 KB frame limit); escaped only if the data holds lone surrogates,
    which UTF-8 cannot carry."""
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(frame, separators=(",", ":"))
    return text


def _refused_status(exc: Exception) -> int | None:
    """401 or 403 when the handshake was refused for its credentials, else None."""
    if not isinstance(exc, websockets.InvalidStatus):
        return None
    status = exc.response.status_code
    return status if status in (401, 403) else None


def _credential_failure(exc: Exception) -> SwitchboardError | None:
    """The error that ends the connection when fetching a token failed, or None when the
    failure is transient (the server was unreachable: try again later)."""
    if isinstance(exc, SwitchboardError):
        return None if exc.retryable else exc
    return UnauthorizedError(
        f"The auth callback failed to provide a token: {exc.__class__.__name__}: {exc}"
    )


def ws_url_for(http_url: str) -> str:
    """The local gateway's socket URL for an HTTP base URL (``http://h:p`` -> ``ws://h:p/ws``)."""
    parts = urlsplit(http_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))
