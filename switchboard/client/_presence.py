"""Presence from Python: who is on a channel right now, and in what state.

Two halves, both reached through ``channel.presence`` (docs/sdk.md, docs/protocol.md
"Presence"):

* **Being present** (:class:`Membership`): ``enter(data)`` / ``update(data)`` / ``leave()``.
  One sender task per channel owns the member: it sends the latest data, heartbeats every
  ``heartbeat_s`` (the server says how often: 15 s) while entered, enters again with the last
  data when the socket is replaced (the connection id, and so the member key, changes; the
  old member leaves through ``$disconnect`` or its TTL) and when a heartbeat answers
  ``not_found`` (it expired), and honours ``rate_limited`` by sending the *latest* state
  after ``retry_after_ms`` (updates made meanwhile are coalesced into that one). Backends
  without a socket pass ``instance="worker-3"``: the same over HTTP
  (``PUT``/``DELETE /v1/channels/{c}/presence/{instance}``).
* **Watching** (:class:`PresenceState`, :class:`PresenceFeed`, :class:`PresenceSubscription`):
  the channel is subscribed with ``"presence": true``; the server answers a ``members``
  snapshot reflecting the presence log ``<channel>@presence`` up to its ``seq``, then every
  change as a message of that log. Changes at or below the snapshot's seq are dropped (they
  may arrive before the snapshot: they are held until it comes), later ones are applied in
  seq order; a hole in the seqs is read from the log's history, like a subscription's gap.
  Each (re)subscribe brings a fresh snapshot; the application sees the difference as
  ``enter``/``update``/``leave`` events, then ``sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ._errors import (
    ClosedError,
    EpochMismatchError,
    NotFoundError,
    RateLimitedError,
    SwitchboardError,
    UnauthorizedError,
    UnavailableError,
    clone,
)
from ._options import Options, backoff_delay
from ._recovery import Gap, Recovery
from ._types import Message

if TYPE_CHECKING:
    from ._client import Channel, Switchboard

PRESENCE_SUFFIX = "@presence"
#: What the server tells members until it says otherwise (docs/protocol.md).
DEFAULT_HEARTBEAT_S = 15.0
#: Consecutive history reads that make no progress on a hole in the presence log before the
#: channel is subscribed again (a fresh snapshot).
_FILL_ATTEMPTS = 5

Action = Literal["present", "enter", "update", "leave", "sync"]


def presence_log(channel: str) -> str:
    return channel + PRESENCE_SUFFIX


def base_channel(channel: str) -> str | None:
    """The channel whose presence log ``channel`` is, or None."""
    return channel[: -len(PRESENCE_SUFFIX)] if channel.endswith(PRESENCE_SUFFIX) else None


@dataclass(frozen=True)
class PresenceMember:
    """One member: ``key`` is ``<client id>/<connection id or instance>``.

    ``entered``/``updated`` are epoch milliseconds (from the snapshot, or the change's
    ``ts``); ``via`` is ``"websocket"`` or ``"http"`` when the snapshot said so (changes do
    not carry it).
    """

    key: str
    client_id: str | None
    data: dict[str, Any]
    entered: int | None = None
    updated: int | None = None
    via: str | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PresenceMember:
        data = obj.get("data")
        client_id = obj.get("client_id")
        entered, updated, via = obj.get("entered"), obj.get("updated"), obj.get("via")
        return cls(
            key=str(obj["key"]),
            client_id=client_id if isinstance(client_id, str) else None,
            data=data if isinstance(data, dict) else {},
            entered=entered if isinstance(entered, int) else None,
            updated=updated if isinstance(updated, int) else None,
            via=via if isinstance(via, str) else None,
        )


@dataclass(frozen=True)
class PresenceEvent:
    """What happened, and who is present after it.

    ``action``: ``present`` (a member already there when watching began), ``enter``,
    ``update``, ``leave``, or ``sync`` (``member`` is None: ``members`` is now the complete
    set as the server had it; one after every snapshot, the first included, so an empty
    channel is told apart from one not heard from yet).
    """

    action: Action
    member: PresenceMember | None
    members: Mapping[str, PresenceMember]


@dataclass
class PresenceStats:
    snapshots: int = 0
    #: Changes of the presence log applied.
    changes: int = 0
    #: Changes dropped: at or below the snapshot's seq (already in it), or seen twice.
    duplicates: int = 0
    #: Holes in the presence log read from history.
    gaps: int = 0
    #: Fresh snapshots asked for because history could not fill a hole.
    resyncs: int = 0


class PresenceState:
    """The members of one channel, kept from snapshots and changes: pure state, no I/O.

    Call :meth:`expect_snapshot` whenever a subscribe with presence is sent; changes that
    arrive before its snapshot are held. :meth:`snapshot` and :meth:`change` return the
    events to hand to the application, in order.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.log = presence_log(channel)
        self.members: dict[str, PresenceMember] = {}
        #: A snapshot was applied since the last subscribe was sent.
        self.synced = False
        self.stats = PresenceStats()
        self._recovery: Recovery | None = None
        self._early: list[Message] = []
        self._ever_synced = False

    @property
    def snapshot_seq(self) -> int | None:
        return self._recovery.last_seq if self._recovery is not None else None

    def expect_snapshot(self) -> None:
        self._recovery = None
        self._early = []
        self.synced = False

    def snapshot(self, members: list[Mapping[str, Any]], offset: str) -> list[PresenceEvent]:
        """A ``members`` frame: the members as of the presence log's ``offset``."""
        new = {}
        for item in members:
            member = PresenceMember.from_dict(item)
            new[member.key] = member
        events: list[PresenceEvent] = []
        if not self._ever_synced:
            self.members = {}
            for member in new.values():
                self.members[member.key] = member
                events.append(self._event("present", member))
        else:  # after a reconnect: what changed meanwhile
            for key in [k for k in self.members if k not in new]:
                events.append(self._event("leave", self.members.pop(key)))
            for key, member in new.items():
                before = self.members.get(key)
                self.members[key] = member
                if before is None:
                    events.append(self._event("enter", member))
                elif before.data != member.data:
                    events.append(self._event("update", member))
        self.stats.snapshots += 1
        self._recovery = Recovery(self.log, offset)
        early, self._early = self._early, []
        for message in early:
            self._receive(message)
        events += self._drain()
        self.synced = self._ever_synced = True
        events.append(self._event("sync", None))
        return events

    def change(self, message: Message) -> list[PresenceEvent]:
        """A message of the presence log, from the socket or from history."""
        if self._recovery is None:
            self._early.append(message)
            return []
        self._receive(message)
        return self._drain()

    def gap(self) -> Gap | None:
        """Changes missing between the last applied and a later one that arrived."""
        return self._recovery.gap() if self._recovery is not None else None

    def current(self) -> list[PresenceEvent]:
        """The members as ``present`` events then ``sync``: for a listener joining now."""
        events = [self._event("present", m) for m in self.members.values()]
        return [*events, self._event("sync", None)]

    def _receive(self, message: Message) -> None:
        assert self._recovery is not None
        before = self._recovery.stats.duplicates
        try:
            self._recovery.receive(message)
        except EpochMismatchError:
            self.stats.duplicates += 1  # another log than the snapshot's: the next resync
            return
        self.stats.duplicates += self._recovery.stats.duplicates - before

    def _drain(self) -> list[PresenceEvent]:
        assert self._recovery is not None
        events: list[PresenceEvent] = []
        while (message := self._recovery.next_ready()) is not None:
            self.stats.changes += 1
            event = self._apply(message)
            if event is not None:
                events.append(event)
        return events

    def _apply(self, message: Message) -> PresenceEvent | None:
        change = message.data
        if not isinstance(change, dict) or not isinstance(change.get("key"), str):
            return None
        key = change["key"]
        headers = change.get("headers")
        operation = headers.get("operation") if isinstance(headers, dict) else None
        before = self.members.get(key)
        if operation == "delete":
            if before is None:
                return None
            del self.members[key]
            return self._event("leave", before)
        value = change.get("value")
        value = value if isinstance(value, dict) else {}
        data = value.get("data")
        client_id = value.get("client_id")
        member = PresenceMember(
            key=key,
            client_id=client_id if isinstance(client_id, str) else None,
            data=data if isinstance(data, dict) else {},
            entered=before.entered if before is not None else message.ts,
            updated=message.ts,
            via=before.via if before is not None else None,
        )
        self.members[key] = member
        if before is None:
            return self._event("enter", member)
        if before.data == member.data:
            return None
        return self._event("update", member)

    def _event(self, action: Action, member: PresenceMember | None) -> PresenceEvent:
        return PresenceEvent(action, member, MappingProxyType(dict(self.members)))


@dataclass(frozen=True)
class _Ended:
    error: SwitchboardError


Listener = asyncio.Queue["PresenceEvent | _Ended"]
#: Reads the presence log's history after an offset (at most ``limit`` messages).
HistoryReader = Callable[[str, str, int], Awaitable[list[Message]]]


class PresenceFeed:
    """One watched channel on a connection: its :class:`PresenceState`, the listeners that
    get its events, and the history reads that fill holes. Fed by the connection."""

    def __init__(self, channel: str, read_history: HistoryReader,
                 resync: Callable[[], None], options: Options) -> None:
        self.channel = channel
        self.state = PresenceState(channel)
        self._read_history = read_history
        self._resync = resync
        self._options = options
        self._listeners: set[Listener] = set()
        self._filling: asyncio.Task[None] | None = None
        self.error: SwitchboardError | None = None

    # -- from the connection -------------------------------------------------------------

    def resubscribing(self) -> None:
        self.state.expect_snapshot()

    def snapshot(self, frame: Mapping[str, Any]) -> None:
        members = frame.get("members")
        offset = frame.get("offset")
        if not isinstance(members, list) or not isinstance(offset, str):
            return
        self._publish(self.state.snapshot([m for m in members if isinstance(m, dict)], offset))
        self._check_gap()

    def change(self, message: Message) -> None:
        self._publish(self.state.change(message))
        self._check_gap()

    def fail(self, error: SwitchboardError) -> None:
        self.error = error
        if self._filling is not None:
            self._filling.cancel()
        for listener in self._listeners:
            listener.put_nowait(_Ended(clone(error)))
        self._listeners.clear()

    # -- for listeners ---------------------------------------------------------------------

    def listen(self) -> Listener:
        listener: Listener = asyncio.Queue()
        if self.error is not None:
            listener.put_nowait(_Ended(clone(self.error)))
            return listener
        if self.state.synced:
            for event in self.state.current():
                listener.put_nowait(event)
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> bool:
        """Stop one listener; True when none is left."""
        self._listeners.discard(listener)
        if not self._listeners and self._filling is not None:
            self._filling.cancel()
        return not self._listeners

    # -- internals ---------------------------------------------------------------------------

    def _publish(self, events: list[PresenceEvent]) -> None:
        for event in events:
            for listener in self._listeners:
                listener.put_nowait(event)

    def _check_gap(self) -> None:
        if self.state.gap() is not None and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        """Read the missing changes from the presence log's history; after repeated reads
        that bring nothing, subscribe again for a fresh snapshot."""
        failures = 0
        while (gap := self.state.gap()) is not None:
            before = gap.after_seq
            try:
                messages = await self._read_history(
                    self.state.log, gap.from_offset, min(1000, max(1, gap.until_seq - before)))
            except SwitchboardError:
                messages = []
            self._publish([e for m in messages for e in self.state.change(m)])
            after = self.state.gap()
            if after is None or after.after_seq > before:
                self.state.stats.gaps += 1
                failures = 0
                continue
            failures += 1
            if failures >= _FILL_ATTEMPTS:
                self.state.stats.resyncs += 1
                self._resync()
                return
            await asyncio.sleep(min(self._options.backoff_max,
                                    self._options.backoff_initial * failures))


# -- being present ------------------------------------------------------------------------


class Transport(Protocol):
    """How a member talks to the server: over the client's socket, or over HTTP."""

    async def enter(self, op: str, data: dict[str, Any]) -> Mapping[str, Any]: ...

    async def heartbeat(self) -> None:
        """Keep the member alive; raises NotFoundError when it is gone (HTTP) or reports
        that later through :meth:`Membership.gone` (socket)."""

    async def leave(self) -> None: ...

    async def reauthenticate(self) -> bool: ...


@dataclass
class MembershipStats:
    enters: int = 0
    updates: int = 0
    heartbeats: int = 0
    #: Enters after the member was lost: a new socket, or a heartbeat answered not_found.
    reenters: int = 0
    #: Heartbeats answered ``not_found`` (the member had expired; it entered again).
    expired: int = 0
    #: ``rate_limited`` answers honoured (the latest state was sent after the delay).
    rate_limited: int = 0
    #: Updates that never went out because a later one replaced them while waiting.
    coalesced: int = 0


class Membership:
    """One member (this client on one channel): a task that owns every frame it sends.

    The application states what it wants (:meth:`want`, :meth:`leave`); the task makes the
    server agree: enter or update with the latest data, heartbeat while idle, enter again
    when the member was lost (:meth:`gone`), wait out ``rate_limited`` and send the latest
    data then. Callers of :meth:`want` get the member key once their data, or a later one,
    is on the server.
    """

    def __init__(self, channel: str, transport: Transport, options: Options,
                 rng: random.Random, on_end: Callable[[Membership], None]) -> None:
        self.channel = channel
        self.transport = transport
        self.options = options
        self._rng = rng
        self._on_end = on_end
        self.data: dict[str, Any] = {}
        self.version = 0  # of the data last asked for
        self.accepted = 0  # the version the server has
        self.accepted_data: dict[str, Any] | None = None
        self.present = False  # the server has this member, as far as we know
        self.member: str | None = None
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.stats = MembershipStats()
        self._last_beat = 0.0
        self._waiters: list[tuple[int, asyncio.Future[str]]] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ended = False

    # -- what the application and the connection say ---------------------------------------

    def want(self, data: dict[str, Any]) -> asyncio.Future[str]:
        if self.ended:
            raise ClosedError(f"The presence on {self.channel!r} has ended; enter again.")
        if self.version > self.accepted:
            self.stats.coalesced += 1
        self.version += 1
        self.data = data
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.version, future))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"switchboard-presence:{self.channel}")
        return future

    def gone(self, expired: bool = False) -> None:
        """The server no longer has this member (a new socket, or, ``expired``, a
        heartbeat's not_found): enter again with the last data."""
        if expired:
            self.stats.expired += 1
        self.present = False
        self._wake.set()

    def refused(self, error: SwitchboardError) -> None:
        """A heartbeat was refused for good (forbidden): the membership ends."""
        self._end(error)

    async def leave(self, timeout: float | None = None) -> None:
        """Stop heartbeating and leave (the leave is sent if the member is on the server)."""
        self._stop.set()
        self._wake.set()
        task = self._task
        if task is None:
            self._end(None)
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._end(None)

    # -- the task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
            if self.present:
                with contextlib.suppress(SwitchboardError, TimeoutError, ConnectionError,
                                         OSError, _LostError):
                    await self.transport.leave()
                self.present = False
            self._end(None)
        except asyncio.CancelledError:
            self._end(None)
            raise
        except Exception as exc:  # nothing may escape a task nobody awaits
            self._end(UnavailableError(f"Presence on {self.channel!r} failed: {exc}"))

    async def _loop(self) -> None:
        attempt = 0
        refreshed = False
        while not self._stop.is_set():
            if not self.present or self.accepted < self.version:
                version, data = self.version, self.data
                if self.present and data == self.accepted_data:
                    self._settle(version)  # nothing to send: the server has it already
                    continue
                op = "update" if self.present else "enter"
                try:
                    reply = await self.transport.enter(op, data)
                except RateLimitedError as error:
                    # 2 changes a second per member: wait, then send whatever is latest.
                    self.stats.rate_limited += 1
                    await self._pause(error.retry_after or 0.5)
                    continue
                except UnauthorizedError as error:
                    if not refreshed and await self.transport.reauthenticate():
                        refreshed = True
                        continue
                    self._end(error)
                    return
                except SwitchboardError as error:
                    if error.retryable:
                        await self._pause(self._backoff(attempt))
                        attempt += 1
                        continue
                    # Refused for good (forbidden, too_large, invalid): this data never lands.
                    self._fail_waiters(version, error)
                    if not self.present:
                        self._end(error)
                        return
                    self.accepted = version  # the member stays, with its earlier data
                    continue
                except (_LostError, TimeoutError):
                    await self._pause(self._backoff(attempt))
                    attempt += 1
                    continue
                attempt, refreshed = 0, False
                if op == "enter":
                    self.stats.enters += 1
                    if self.accepted > 0:
                        self.stats.reenters += 1
                else:
                    self.stats.updates += 1
                self.present = True
                self.accepted, self.accepted_data = version, data
                member = reply.get("member")
                self.member = member if isinstance(member, str) else self.member
                beat = reply.get("heartbeat_s")
                if isinstance(beat, int | float) and not isinstance(beat, bool) and beat > 0:
                    self.heartbeat_s = float(beat)
                self._last_beat = time.monotonic()
                self._settle(version)
                continue
            due = self._last_beat + self.heartbeat_s - time.monotonic()
            if due > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
                self._wake.clear()
                continue
            self._last_beat = time.monotonic()
            try:
                await self.transport.heartbeat()
                self.stats.heartbeats += 1
            except NotFoundError:
                self.stats.expired += 1
                self.present = False  # expired: enter again
            except UnauthorizedError as error:
                if not await self.transport.reauthenticate():
                    self._end(error)
                    return
            except SwitchboardError as error:
                if not error.retryable:
                    self._end(error)
                    return
            except (_LostError, TimeoutError):
                pass  # the next socket enters again; a lost heartbeat is one of several

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short only by a leave: updates made meanwhile wait (coalesced)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        return backoff_delay(attempt, opts.backoff_initial, opts.backoff_max, self._rng)

    def _settle(self, version: int) -> None:
        keep = []
        for wanted, future in self._waiters:
            if wanted <= version:
                if not future.done():
                    future.set_result(self.member or "")
            else:
                keep.append((wanted, future))
        self._waiters = keep

    def _fail_waiters(self, version: int, error: SwitchboardError) -> None:
        keep = []
        for wanted, future in self._waiters:
            if wanted <= version:
                if not future.done():
                    future.set_exception(clone(error))
            else:
                keep.append((wanted, future))
        self._waiters = keep

    def _end(self, error: SwitchboardError | None) -> None:
        if self.ended:
            return
        self.ended = True
        self._stop.set()
        failure = error or ClosedError(f"Left presence on {self.channel!r}.")
        for _version, future in self._waiters:
            if not future.done():
                future.set_exception(clone(failure))
                future.exception()  # retrieved: a caller that stopped waiting is fine
        self._waiters = []
        self._on_end(self)


class _LostError(Exception):
    """Internal: the socket a presence frame went out on died (see _SocketTransport)."""


class _SocketTransport:
    """A member over the client's shared socket (the member key is per connection)."""

    def __init__(self, client: Switchboard, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def enter(self, op: str, data: dict[str, Any]) -> Mapping[str, Any]:
        from ._connection import ConnectionLostError

        frame = {"action": "presence", "channel": self.channel, "op": op, "data": data}
        try:
            return await self.client.connection.request(frame, self.client.options.request_timeout)
        except ConnectionLostError:
            raise _LostError from None

    async def heartbeat(self) -> None:
        # No ref: no reply. A member that is gone is reported as a `not_found` error frame,
        # which the connection hands to Membership.gone().
        self.client.connection.send_nowait(
            {"action": "presence", "channel": self.channel, "op": "heartbeat"})

    async def leave(self) -> None:
        from ._connection import ConnectionLostError

        frame = {"action": "presence", "channel": self.channel, "op": "leave"}
        with contextlib.suppress(NotFoundError, ConnectionLostError):
            await self.client.connection.request(frame, self.client.options.request_timeout)

    async def reauthenticate(self) -> bool:
        return await self.client.connection.reauthenticate()


class _HttpTransport:
    """A member kept alive over HTTP under an instance name (no socket)."""

    def __init__(self, client: Switchboard, channel: str, instance: str) -> None:
        self.client = client
        self.channel = channel
        self.instance = instance

    async def enter(self, op: str, data: dict[str, Any]) -> Mapping[str, Any]:
        return await self.client.http.presence_put(self.channel, self.instance, data)

    async def heartbeat(self) -> None:
        await self.client.http.presence_put(self.channel, self.instance, None)

    async def leave(self) -> None:
        with contextlib.suppress(NotFoundError):
            await self.client.http.presence_delete(self.channel, self.instance)

    async def reauthenticate(self) -> bool:
        return False  # HTTP requests renew the token themselves, once


# -- the channel's API ------------------------------------------------------------------------


class Presence:
    """``channel.presence``: enter, update and leave this client's member; list and watch
    the channel's members.

    Examples:
        >>> await ch.presence.enter({"role": "agent", "state": "thinking"})  # doctest: +SKIP
        >>> await ch.presence.update({"role": "agent", "state": "writing"})  # doctest: +SKIP
        >>> async for event in ch.presence.subscribe():  # doctest: +SKIP
        ...     print(event.action, event.member, len(event.members))
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.client = channel.client

    @property
    def member(self) -> str | None:
        """This client's member key on the channel over the socket, once entered."""
        membership = self.client._memberships.get((self.channel.name, None))
        return membership.member if membership is not None and membership.present else None

    def membership(self, instance: str | None = None) -> Membership | None:
        """The state behind :meth:`enter` (its ``stats``, ``heartbeat_s``), if entered."""
        return self.client._memberships.get((self.channel.name, instance))

    async def enter(self, data: Mapping[str, Any] | None = None, *,
                    instance: str | None = None) -> str:
        """Enter presence with ``data`` (a JSON object of at most 1 KB), or replace the data
        if already entered. Returns the member key once the server has it.

        Over the client's socket by default; with ``instance`` (a name of your choosing,
        like ``"worker-3"``) over HTTP instead, for a backend that keeps no socket. Either
        way the client heartbeats for you until :meth:`leave` or the client is closed.
        Raises :class:`ForbiddenError` without the ``presence`` operation,
        :class:`TooLargeError` for data over 1 KB or a full channel (200 members), and
        :class:`UnavailableError` when the server cannot be reached within
        ``Options.publish_deadline`` (the client keeps trying in the background).
        """
        return await self._want(dict(data or {}), instance)

    async def update(self, data: Mapping[str, Any], *, instance: str | None = None) -> str:
        """Replace this member's data (enters if not entered). Updates faster than the
        server's 2 a second are coalesced: the latest data is sent when it allows, and
        every caller returns once that (or a later) state is on the server."""
        return await self._want(dict(data), instance)

    async def leave(self, *, instance: str | None = None) -> None:
        """Leave, and stop heartbeating. Nothing happens if not entered."""
        membership = self.client._memberships.get((self.channel.name, instance))
        if membership is not None:
            await membership.leave(self.client.options.request_timeout)

    async def members(self) -> list[PresenceMember]:
        """The channel's members now: from this client's own snapshot when it watches the
        channel's presence (and has its snapshot), else ``GET …/presence``."""
        feed = self.client.connection.presence_feed(self.channel.name)
        if feed is not None and feed.state.synced:
            return list(feed.state.members.values())
        return await self.client.http.presence_members(self.channel.name)

    def subscribe(self) -> PresenceSubscription:
        """Watch the channel's members: ``async for event in …`` yields the members already
        there (``present``), ``sync``, then ``enter``/``update``/``leave`` as they happen."""
        return PresenceSubscription(self)

    async def _want(self, data: dict[str, Any], instance: str | None) -> str:
        client = self.client
        key = (self.channel.name, instance)
        membership = client._memberships.get(key)
        if membership is None or membership.ended:
            transport: Transport
            if instance is None:
                transport = _SocketTransport(client, self.channel.name)
            else:
                transport = _HttpTransport(client, self.channel.name, instance)
            membership = Membership(self.channel.name, transport, client.options,
                                    client._rng, client._membership_ended)
            client._memberships[key] = membership
            if instance is None:
                client.connection.memberships[self.channel.name] = membership
        future = membership.want(data)
        try:
            return await asyncio.wait_for(asyncio.shield(future),
                                          client.options.publish_deadline)
        except TimeoutError:
            raise UnavailableError(
                f"Presence on {self.channel.name!r} could not be sent within "
                f"{client.options.publish_deadline:g} s (last error: "
                f"{client.connection.stats.last_error}); the client keeps trying."
            ) from None


class PresenceSubscription:
    """The channel's members as events; iterate with ``async for``. ``members`` is the
    current set (once ``synced``)."""

    def __init__(self, presence: Presence) -> None:
        self.presence = presence
        self.channel = presence.channel.name
        self._feed: PresenceFeed | None = None
        self._listener: Listener | None = None
        self._done = False

    @property
    def members(self) -> Mapping[str, PresenceMember]:
        if self._feed is None:
            return MappingProxyType({})
        return MappingProxyType(dict(self._feed.state.members))

    @property
    def synced(self) -> bool:
        """A snapshot has arrived (since the last reconnect)."""
        return self._feed is not None and self._feed.state.synced

    @property
    def stats(self) -> PresenceStats:
        return self._feed.state.stats if self._feed is not None else PresenceStats()

    async def start(self) -> None:
        """Start watching now (iteration does this on first use)."""
        if self._feed is not None or self._done:
            return
        self._feed = self.presence.client.connection.watch_presence(self.channel)
        self._listener = self._feed.listen()

    async def next_event(self, timeout: float | None = None) -> PresenceEvent | None:
        """The next event, or None if none arrives within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None

    def __aiter__(self) -> PresenceSubscription:
        return self

    async def __anext__(self) -> PresenceEvent:
        if self._done:
            raise StopAsyncIteration
        await self.start()
        assert self._listener is not None
        item = await self._listener.get()
        if isinstance(item, _Ended):
            self._finish()
            raise item.error
        return item

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._feed is not None and self._listener is not None:
            self.presence.client.connection.unwatch_presence(self._feed, self._listener)

    async def aclose(self) -> None:
        self._finish()

    async def __aenter__(self) -> PresenceSubscription:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
