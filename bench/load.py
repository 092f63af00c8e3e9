"""Load and exactness on one busy channel, against `switchboard dev` (issue 12).

    .venv/bin/python bench/load.py                         # the default matrix, own server
    .venv/bin/python bench/load.py --transports ws --in-flight 4,16 --messages 200
    .venv/bin/python bench/load.py --url http://127.0.0.1:8765 --json

Every scenario writes ONE fresh channel with one transport (ws, rest or ds) and a number of
publishes in flight, while observers follow the same channel:

- publishers: ``in-flight`` lanes, each one publish at a time (WebSocket lanes share
  sockets, ``--per-connection`` each; REST and Durable Streams lanes share an HTTP pool).
  Every message carries a unique key in its data and, with ids, the same key as its
  idempotency id (Durable Streams: one idempotent producer per lane). A fraction of
  publishes is re-sent after its ack: the reply must be a duplicate with the original seq.
  ``unavailable``/``internal`` replies and transport errors are retried (same id, jittered
  backoff, ``--attempts``); ``rate_limited`` waits for its retry hint and is not a failure.
- joiners: raw WebSocket subscribers joining while the channel is written, from ``-1``,
  from an offset saved earlier and from ``now``; the publishers keep writing until
  ``--live-within`` seconds after the last one joined.
- resubscribers: raw WebSocket subscribers that repeatedly abort their socket and
  resubscribe from the last offset they processed.
- a Durable Streams reader following the channel with ``live=long-poll`` from ``-1``.

Then every reader is given ``--drain`` seconds to reach the log's head, and the log itself
is read back (``GET /v1/channels/{c}/messages``) and checked: seqs 1..N gapless and
unique, every acked publish stored exactly once at its acked seq, nothing stored twice.

Uses raw clients (``websockets``, ``httpx``), never the SDK, which would hide problems.
These are figures for the local emulation (moto, one process), not AWS figures. The
columns are described in docs/benchmarks.md. Exits 1 when any of unavailable, internal,
failed, lost, duplicated, gaps, reordered, stalled or inconsistent is non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

TRANSPORTS = ("ws", "rest", "ds")
JOIN_KINDS = ("-1", "offset", "now")
DEFAULT_IN_FLIGHT = (1, 4, 16, 64)
READY = re.compile(r"Switchboard dev server ready: (http://\S+) \(WebSocket: (ws://\S+)\)")
# The counts that make a run fail (exit 1, and the e2e test).
FAILING = (
    "unavailable",
    "internal",
    "failed",
    "lost",
    "duplicated",
    "gaps",
    "reordered",
    "stalled",
    "inconsistent",
)
RETRYABLE = frozenset({"unavailable", "internal", "rate_limited", "transport"})


# ---------------------------------------------------------------------------------------------
# Configuration and results


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix: one channel, one transport, ``in_flight`` publishes at a time."""

    transport: str
    in_flight: int
    messages: int = 300
    ids: bool = True
    joiners: tuple[str, ...] = JOIN_KINDS
    resubscribers: int = 1
    ds_reader: bool = True

    @property
    def name(self) -> str:
        return f"{self.transport} x{self.in_flight}" + ("" if self.ids else " no-ids")


@dataclass(frozen=True)
class Options:
    """Knobs shared by every scenario of a run."""

    dup_fraction: float = 0.05  # publishes re-sent with the same id after their ack
    live_within_s: float = 2.0  # a (re)subscription must see a live message within this
    drain_s: float = 10.0  # after publishing, time for every reader to reach the head
    attempts: int = 10  # per publish, for unavailable / internal / transport errors
    request_timeout_s: float = 20.0  # one WebSocket request or HTTP publish
    per_connection: int = 8  # WebSocket publish lanes per socket
    dwell_s: tuple[float, float] = (0.2, 0.8)  # a resubscriber stays live this long, then drops
    early_drop: float = 0.3  # or, this often, drops 0-1 s after subscribing, live or not
    payload_bytes: int = 48  # filler text in every message's data
    budget_s: float | None = None  # stop taking new publishes after this (joiners still join)
    scenario_timeout_s: float = 300.0  # a safety net; a scenario never waits longer
    seed: int = 12
    # Subscribers ask for batched frames ({"type": "messages"}), as the SDKs do; False: one
    # message per frame, as a v0 client gets (its replay of a backlog is slower).
    batch: bool = True


@dataclass
class Counts:
    unavailable: int = 0  # `unavailable` replies (publish or subscribe)
    rate_limited: int = 0  # `rate_limited` replies (honoured, not a failure)
    internal: int = 0  # `internal` replies
    other: int = 0  # any other error reply, transport error or timeout
    failed: int = 0  # publishes never acked after every attempt
    lost: int = 0  # acked publishes missing from the log + stored messages a reader never got
    duplicated: int = 0  # extra copies in the log (one key or id stored more than once)
    duplicate_frames: int = 0  # message frames whose seq the reader already had (dropped)
    gaps: int = 0  # a reader's seq jumped past the next one expected; holes in the log
    reordered: int = 0  # a reader got a seq lower than one it already had, not seen before
    stalled: int = 0  # (re)subscriptions not live within --live-within; readers left behind
    inconsistent: int = 0  # acks or deliveries that disagree with the log

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FAILING if getattr(self, name)}


@dataclass
class ReaderReport:
    label: str
    start_seq: int | None
    received: int
    undelivered: int
    duplicate_frames: int
    gaps: int
    reordered: int
    subscriptions: int
    live_ms: list[float | None]  # per (re)subscription; None: never live while written to
    stalled: int
    caught_up: bool
    errors: dict[str, int]


@dataclass
class ScenarioResult:
    scenario: str
    transport: str
    in_flight: int
    ids: bool
    channel: str
    published: int  # distinct publishes acked
    resent: int  # idempotency re-sends
    log_messages: int
    seconds: float  # first publish sent -> last ack
    publishes_per_s: float
    publish_p50_ms: float | None
    publish_p99_ms: float | None
    live_p50_ms: float | None
    live_max_ms: float | None  # None with live_never > 0, or with no (re)subscription
    live_never: int
    counts: Counts
    error_codes: dict[str, int]
    notes: list[str]
    readers: list[ReaderReport]

    @property
    def ok(self) -> bool:
        return not self.counts.failures()


# ---------------------------------------------------------------------------------------------
# Small helpers


def seq_of(offset: str) -> int:
    """The seq an offset names (``<epoch>_<16 digits>``, docs/protocol.md); 0 for ``-1``."""
    if offset in ("-1", ""):
        return 0
    return int(offset.rsplit("_", 1)[1])


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter, 50 ms doubling up to 1 s, as a well-behaved client retries."""
    return rng.uniform(0, min(1.0, 0.05 * 2 ** (attempt - 1)))


async def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


def key_of(data: Any) -> str | None:
    return data.get("k") if isinstance(data, dict) else None


@dataclass(frozen=True)
class Publish:
    key: str
    data: dict[str, Any]
    id: str | None
    lane: int
    producer: tuple[int, int] | None  # Durable Streams (epoch, seq) of the lane's producer


@dataclass(frozen=True)
class Ack:
    seq: int | None  # None for a Durable Streams duplicate (204 names no seq)
    offset: str | None
    duplicate: bool


@dataclass(frozen=True)
class Failure:
    code: str  # a contract code, or "transport" (timeout, closed socket, bad reply)
    message: str
    retry_after_s: float | None = None


Reply = Ack | Failure


def failure_from(
    code: Any, message: Any, detail: Any, retry_after_header: str | None = None
) -> Failure:
    """A contract error; its retry hint from ``detail.retry_after_ms``/``_s`` or a header."""
    hint: float | None = None
    if isinstance(detail, dict):
        if isinstance(detail.get("retry_after_ms"), int | float):
            hint = float(detail["retry_after_ms"]) / 1000
        elif isinstance(detail.get("retry_after_s"), int | float):
            hint = float(detail["retry_after_s"])
    if hint is None and retry_after_header:
        with contextlib.suppress(ValueError):
            hint = float(retry_after_header)
    return Failure(str(code or "transport"), str(message or ""), hint)


def http_failure(response: httpx.Response) -> Failure:
    try:
        error = response.json()["error"]
        return failure_from(
            error.get("code"),
            error.get("message"),
            error.get("detail"),
            response.headers.get("retry-after"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        by_status = {429: "rate_limited", 500: "internal", 503: "unavailable"}
        return Failure(
            by_status.get(response.status_code, "transport"),
            f"HTTP {response.status_code}: {response.text[:200]}",
        )


# ---------------------------------------------------------------------------------------------
# Shared state of one scenario


@dataclass
class AckRecord:
    key: str
    seq: int | None
    offset: str | None
    sent: float
    acked: float


class AckLog:
    """Every distinct publish acked in this scenario, in the order the acks arrived."""

    def __init__(self) -> None:
        self.by_key: dict[str, AckRecord] = {}
        self.time_by_seq: dict[int, float] = {}
        self.times: list[float] = []  # ack times, ascending (monotonic clock)
        self.offsets: list[str | None] = []

    def add(self, record: AckRecord) -> None:
        self.by_key[record.key] = record
        if record.seq is not None:
            self.time_by_seq[record.seq] = record.acked
        self.times.append(record.acked)
        self.offsets.append(record.offset)

    @property
    def count(self) -> int:
        return len(self.times)

    def any_acked_between(self, start: float, end: float) -> bool:
        index = bisect.bisect_right(self.times, start)
        return index < len(self.times) and self.times[index] <= end


@dataclass
class Tally:
    """Error replies and observations of one scenario (one asyncio loop: no locking)."""

    counts: Counts = field(default_factory=Counts)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    notes: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)

    def error(self, code: str, message: str, where: str, kind: str) -> None:
        """Count one error reply; the first of each (code, kind) is kept as an example."""
        self.codes[code] += 1
        if code in ("unavailable", "rate_limited", "internal"):
            setattr(self.counts, code, getattr(self.counts, code) + 1)
        else:
            self.counts.other += 1
        self.examples.setdefault(f"{code} on {kind}", f"{where}: {message[:200]}")

    def note(self, text: str, limit: int = 40) -> None:
        if len(self.notes) < limit:
            self.notes.append(text)
        elif len(self.notes) == limit:
            self.notes.append("… (more notes left out)")


# ---------------------------------------------------------------------------------------------
# A raw WebSocket: replies matched by ref, message frames and unsolicited frames to callbacks


class Socket:
    def __init__(
        self,
        connection: ClientConnection,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_other: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.connection = connection
        self.on_message = on_message
        self.on_other = on_other
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.refs = 0
        self.closed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        url: str,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_other: Callable[[dict[str, Any]], None] | None = None,
    ) -> Socket:
        connection = await connect(url, max_size=None, open_timeout=20, close_timeout=2)
        return cls(connection, on_message, on_other)

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    if self.on_message is not None:
                        self.on_message(frame)
                    continue
                if frame.get("type") == "messages" and isinstance(frame.get("messages"), list):
                    if self.on_message is not None:
                        for message in frame["messages"]:
                            self.on_message({"type": "message", **message})
                    continue
                future = self.replies.pop(str(frame.get("ref")), None)
                if future is not None and not future.done():
                    future.set_result(frame)
                elif self.on_other is not None:
                    self.on_other(frame)
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.closed.set()
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(ConnectionError("socket closed"))
            self.replies.clear()

    def new_ref(self) -> str:
        self.refs += 1
        return f"r{self.refs}"

    async def request(
        self, frame: dict[str, Any], timeout: float, ref: str | None = None
    ) -> dict[str, Any]:
        """Send ``frame`` with ``ref`` (default: a fresh one); the reply carrying that ref."""
        if self.closed.is_set():
            raise ConnectionError("socket closed")
        ref = ref or self.new_ref()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ref] = future
        try:
            await self.connection.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, timeout)
        except (ConnectionClosed, WebSocketException) as error:
            raise ConnectionError(str(error)) from error
        finally:
            self.replies.pop(ref, None)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a crashed client)."""
        transport = self.connection.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 3)
        self.abort()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.reader, 3)


# ---------------------------------------------------------------------------------------------
# Publishers: one per transport, ``send`` makes one attempt


class Publisher(Protocol):
    async def open(self) -> None: ...

    async def send(self, publish: Publish) -> Reply: ...

    async def close(self) -> None: ...


class WsPublisher:
    def __init__(self, ws_url: str, channel: str, lanes: int, options: Options) -> None:
        self.ws_url, self.channel, self.options = ws_url, channel, options
        count = max(1, math.ceil(lanes / options.per_connection))
        self.sockets: list[Socket | None] = [None] * count
        self.locks = [asyncio.Lock() for _ in self.sockets]

    async def open(self) -> None:
        for index in range(len(self.sockets)):
            await self._socket(index)

    async def _socket(self, index: int) -> Socket:
        async with self.locks[index]:
            socket = self.sockets[index]
            if socket is None or socket.closed.is_set():
                socket = self.sockets[index] = await Socket.open(self.ws_url)
            return socket

    async def send(self, publish: Publish) -> Reply:
        frame: dict[str, Any] = {"action": "publish", "channel": self.channel, "data": publish.data}
        if publish.id is not None:
            frame["id"] = publish.id
        try:
            socket = await self._socket(publish.lane % len(self.sockets))
            reply = await socket.request(frame, self.options.request_timeout_s)
        except (TimeoutError, ConnectionError, OSError, WebSocketException) as error:
            return Failure("transport", f"{type(error).__name__}: {error}")
        if reply.get("type") == "ack":
            return Ack(int(reply["seq"]), str(reply["offset"]), bool(reply.get("duplicate")))
        if reply.get("type") == "error":
            return failure_from(reply.get("code"), reply.get("message"), reply.get("detail"))
        return Failure("transport", f"unexpected reply {json.dumps(reply)[:200]}")

    async def close(self) -> None:
        for socket in self.sockets:
            if socket is not None:
                await socket.close()


class RestPublisher:
    def __init__(self, http: httpx.AsyncClient, channel: str) -> None:
        self.http, self.path = http, f"/v1/channels/{channel}/messages"

    async def open(self) -> None:
        return None

    async def send(self, publish: Publish) -> Reply:
        body: dict[str, Any] = {"data": publish.data}
        if publish.id is not None:
            body["id"] = publish.id
        try:
            response = await self.http.post(self.path, json=body)
        except httpx.HTTPError as error:
            return Failure("transport", f"{type(error).__name__}: {error}")
        if response.status_code in (200, 201):
            ack = response.json()
            return Ack(int(ack["seq"]), str(ack["offset"]), bool(ack.get("duplicate")))
        return http_failure(response)

    async def close(self) -> None:
        return None


class DsPublisher:
    """Durable Streams appends: ``POST [data]``; with ids, one idempotent producer per lane
    (``Producer-Id/-Epoch/-Seq``; a duplicate is ``204`` and names no seq)."""

    def __init__(self, http: httpx.AsyncClient, channel: str, tag: str) -> None:
        self.http, self.path, self.tag = http, f"/v1/stream/{channel}", tag

    async def open(self) -> None:
        return None

    async def send(self, publish: Publish) -> Reply:
        headers = {"Content-Type": "application/json"}
        if publish.producer is not None:
            epoch, seq = publish.producer
            headers.update(
                {
                    "Producer-Id": f"{self.tag}-lane{publish.lane}",
                    "Producer-Epoch": str(epoch),
                    "Producer-Seq": str(seq),
                }
            )
        try:
            response = await self.http.post(
                self.path, content=json.dumps([publish.data]), headers=headers
            )
        except httpx.HTTPError as error:
            return Failure("transport", f"{type(error).__name__}: {error}")
        next_offset = response.headers.get("stream-next-offset")
        if response.status_code == 204 and publish.producer is not None:
            return Ack(None, None, True)
        if response.status_code in (200, 204) and next_offset:
            return Ack(seq_of(next_offset), next_offset, False)
        return http_failure(response)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# Readers: what each one received, checked as it arrives


@dataclass
class Period:
    """One (re)subscription, from the moment the client decided to subscribe."""

    t0: float
    live_at: float | None = None
    end: float | None = None


class Reader:
    """A follower of the channel: in-order, exactly-once bookkeeping per seq."""

    def __init__(self, label: str, acks: AckLog, tally: Tally) -> None:
        self.label, self.acks, self.tally = label, acks, tally
        self.start: int | None = None  # the seq it starts after (first subscription)
        self.last = 0  # highest seq received
        self.offset: str | None = None  # offset of that message: where to resume
        self.seen: set[int] = set()
        self.missing: set[int] = set()  # seqs jumped over and not received since
        self.keys: dict[int, str | None] = {}
        self.duplicate_frames = self.gaps = self.reordered = self.early = 0
        self.periods: list[Period] = []
        self.live = asyncio.Event()
        self.errors: collections.Counter[str] = collections.Counter()

    def begin(self) -> Period:
        now = time.monotonic()
        if self.periods and self.periods[-1].end is None:
            self.periods[-1].end = now
        self.live.clear()
        period = Period(now)
        self.periods.append(period)
        return period

    def set_start(self, seq: int) -> None:
        if self.start is None:
            self.start = self.last = seq

    def deliver(self, seq: int, key: str | None, offset: str | None) -> None:
        now = time.monotonic()
        if seq in self.seen:
            self.duplicate_frames += 1  # dropped, as the contract tells clients to
            return
        if self.start is not None and seq <= self.start:
            self.early += 1  # at or before where the subscription starts: never allowed
            return
        self.seen.add(seq)
        self.keys[seq] = key
        if self.periods:
            period = self.periods[-1]
            acked = self.acks.time_by_seq.get(seq)
            # Live: published (acked) after the subscribe was sent. An ack not yet received
            # when the message arrives is necessarily later than the subscribe.
            if period.live_at is None and now >= period.t0 and (acked is None or acked > period.t0):
                period.live_at = now
                self.live.set()
        if seq < self.last:
            self.reordered += 1
            self.missing.discard(seq)
            return
        if seq > self.last + 1:
            self.gaps += 1
            self.missing.update(range(self.last + 1, seq))
        self.last = seq
        if offset is not None:
            self.offset = offset

    def caught_up(self, head: int) -> bool:
        return self.start is not None and self.last >= head and not self.missing


class WsReader(Reader):
    """A raw WebSocket subscriber (joiner or resubscriber)."""

    def __init__(
        self,
        label: str,
        ws_url: str,
        channel: str,
        acks: AckLog,
        tally: Tally,
        options: Options,
    ) -> None:
        super().__init__(label, acks, tally)
        self.ws_url, self.channel, self.options = ws_url, channel, options
        self.socket: Socket | None = None
        self.resolved_from: str | None = None
        self.retry = asyncio.Event()  # an `unavailable` after `subscribed`: subscribe again
        self.sub_ref: str | None = None
        self.rng = random.Random(f"{options.seed}-{label}")
        self.drops = 0

    def _on_message(self, frame: dict[str, Any]) -> None:
        try:
            seq = int(frame["seq"])
        except (KeyError, TypeError, ValueError):
            self.tally.error(
                "transport", f"bad frame {json.dumps(frame)[:160]}", self.label, "a message frame"
            )
            return
        self.deliver(seq, key_of(frame.get("data")), frame.get("offset"))

    def _on_other(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "error":
            code = str(frame.get("code"))
            self.errors[code] += 1
            self.tally.error(
                code, str(frame.get("message")), self.label, "a subscription (after subscribed)"
            )
            if frame.get("ref") == self.sub_ref:
                self.retry.set()
        elif frame.get("type") not in ("pong", "unsubscribed"):
            self.tally.error(
                "transport", f"unexpected frame {json.dumps(frame)[:160]}", self.label, "a frame"
            )

    def resume_from(self, initial: str) -> str:
        return self.offset or self.resolved_from or initial

    async def connect(self) -> None:
        self.socket = await Socket.open(self.ws_url, self._on_message, self._on_other)

    async def subscribe(self, from_: str) -> bool:
        """``subscribe`` until ``subscribed`` (retrying unavailable / transport errors)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if self.socket is None or self.socket.closed.is_set():
                    await self.connect()
                assert self.socket is not None
                self.sub_ref = self.socket.new_ref()  # a late error frame carries it too
                reply = await self.socket.request(
                    {"action": "subscribe", "channel": self.channel, "from": from_,
                     "batch": self.options.batch},
                    self.options.request_timeout_s,
                    self.sub_ref,
                )
            except (TimeoutError, ConnectionError, OSError, WebSocketException) as error:
                reply = {"type": "error", "code": "transport", "message": repr(error)}
            if reply.get("type") == "subscribed":
                self.resolved_from = self.resolved_from or str(reply.get("from"))
                self.set_start(seq_of(str(reply.get("from"))))
                return True
            failure = failure_from(reply.get("code"), reply.get("message"), reply.get("detail"))
            self.errors[failure.code] += 1
            self.tally.error(failure.code, failure.message, self.label, "subscribe")
            if failure.code not in RETRYABLE or attempt >= self.options.attempts:
                self.tally.note(f"{self.label}: gave up subscribing ({failure.code})")
                return False
            delay = failure.retry_after_s if failure.code == "rate_limited" else None
            await asyncio.sleep(delay if delay is not None else backoff(attempt, self.rng))

    async def serve(self, until: Callable[[], bool], timeout: float | None = None) -> bool:
        """Keep the subscription going (resubscribe after a late `unavailable` or a lost
        socket) until ``until()`` or the timeout; returns ``until()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            lost = self.socket is None or self.socket.closed.is_set()
            if self.retry.is_set() or lost:
                self.retry.clear()
                if lost:
                    self.tally.error(
                        "transport", "socket closed by the server", self.label, "a subscriber"
                    )
                await asyncio.sleep(backoff(1, self.rng))
                await self.subscribe(self.resume_from("-1"))
                continue
            await asyncio.sleep(0.02)
        return True

    async def run_joiner(self, from_: str, stop: asyncio.Event) -> None:
        if not self.periods:
            self.begin()
        await self.connect()
        if await self.subscribe(from_):
            await self.serve(stop.is_set)

    async def run_resubscriber(self, publishing_done: asyncio.Event, stop: asyncio.Event) -> None:
        first = True
        while True:
            self.begin()
            if self.socket is None:
                await self.connect()
            if not await self.subscribe("-1" if first else self.resume_from("-1")):
                break
            first = False
            if self.rng.random() < self.options.early_drop:  # maybe in the middle of a replay
                await self.serve(publishing_done.is_set, self.rng.uniform(0, 1.0))
            else:
                await self.serve(
                    lambda: self.live.is_set() or publishing_done.is_set(),
                    self.options.live_within_s,
                )
                if publishing_done.is_set():
                    break
                await self.serve(publishing_done.is_set, self.rng.uniform(*self.options.dwell_s))
            if publishing_done.is_set():
                break
            assert self.socket is not None
            self.socket.abort()  # crash: no unsubscribe, no closing handshake
            self.drops += 1
            await self.socket.close()
            self.socket = None
        await self.serve(stop.is_set)

    async def close(self) -> None:
        if self.periods and self.periods[-1].end is None:
            self.periods[-1].end = time.monotonic()
        if self.socket is not None:
            await self.socket.close()


class DsReader(Reader):
    """A Durable Streams reader: ``GET ?offset=…&live=long-poll`` from ``-1``."""

    def __init__(self, http: httpx.AsyncClient, channel: str, acks: AckLog, tally: Tally) -> None:
        super().__init__("ds long-poll reader", acks, tally)
        self.http, self.path = http, f"/v1/stream/{channel}"
        self.final_head: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        offset, cursor, attempt = "-1", None, 0
        self.set_start(0)
        rng = random.Random(self.label)
        while not stop.is_set():
            if self.final_head is not None and self.caught_up(self.final_head):
                return
            params = {"offset": offset, "live": "long-poll"}
            if cursor:
                params["cursor"] = cursor
            request = asyncio.ensure_future(self.http.get(self.path, params=params, timeout=60))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({request, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not request.done():  # the scenario is over: do not sit out the long-poll
                request.cancel()
                await asyncio.gather(request, stopping, return_exceptions=True)
                return
            try:
                response = request.result()
            except httpx.HTTPError as error:
                self.tally.error("transport", repr(error), self.label, "long-poll")
                attempt += 1
                await asyncio.sleep(backoff(attempt, rng))
                continue
            next_offset = response.headers.get("stream-next-offset")
            cursor = response.headers.get("stream-cursor") or cursor
            if response.status_code == 200 and next_offset:
                attempt = 0
                items = response.json()
                first = seq_of(next_offset) - len(items) + 1
                for index, item in enumerate(items):
                    self.deliver(first + index, key_of(item), None)
                offset = next_offset
            elif response.status_code == 204 and next_offset:
                offset = next_offset
            else:
                failure = http_failure(response)
                self.errors[failure.code] += 1
                self.tally.error(failure.code, failure.message, self.label, "long-poll")
                attempt += 1
                await asyncio.sleep(failure.retry_after_s or backoff(attempt, rng))


# ---------------------------------------------------------------------------------------------
# One scenario


class Run:
    """The publishers, joiners, resubscribers and reader of one scenario, and its checks."""

    def __init__(self, http_url: str, ws_url: str, scenario: Scenario, options: Options) -> None:
        self.http_url, self.ws_url = http_url, ws_url
        self.scenario, self.options = scenario, options
        self.tag = uuid.uuid4().hex[:8]
        self.channel = (
            f"load:{scenario.transport}{scenario.in_flight}{'' if scenario.ids else 'n'}-{self.tag}"
        )
        self.acks = AckLog()
        self.tally = Tally()
        self.latencies_ms: list[float] = []
        self.resent = 0
        self.issued = 0
        self.extend = bool(scenario.joiners)  # keep writing past N until joiners are judged
        self.pad = "x" * options.payload_bytes
        self.first_send: float | None = None
        self.last_ack: float | None = None
        self.readers: list[Reader] = []
        self.ws_readers: list[WsReader] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.truncated = False

    # -- publishing

    def _elapsed(self) -> float:
        return 0.0 if self.first_send is None else time.monotonic() - self.first_send

    def _budget_spent(self) -> bool:
        budget = self.options.budget_s
        if budget is None or self._elapsed() < budget:
            return False
        if not self.truncated:
            self.truncated = True
            self.tally.note(
                f"time budget: {self.issued} of {self.scenario.messages} publishes started "
                f"in {budget:g} s"
            )
        return True

    def _take(self) -> int | None:
        """The next message index, or None when the publishers are done."""
        if not self.extend and (self.issued >= self.scenario.messages or self._budget_spent()):
            return None
        self.issued += 1
        return self.issued - 1

    async def _publish(
        self, publisher: Publisher, publish: Publish, rng: random.Random, what: str
    ) -> tuple[Ack | None, int]:
        attempts = 0
        deadline = time.monotonic() + self.options.scenario_timeout_s
        while True:
            reply = await publisher.send(publish)
            if isinstance(reply, Ack):
                return reply, attempts + 1
            self.tally.error(reply.code, reply.message, f"{what} {publish.key}", what)
            if reply.code == "rate_limited":
                if reply.retry_after_s is None:
                    self.tally.note(f"rate_limited without a retry hint on {publish.key}")
                    self.tally.counts.inconsistent += 1
                if time.monotonic() < deadline:
                    await asyncio.sleep(reply.retry_after_s or 0.1)
                    continue
            attempts += 1
            if reply.code not in RETRYABLE or attempts >= self.options.attempts:
                self.tally.note(
                    f"{what} {publish.key} failed after {attempts} attempt(s): "
                    f"{reply.code}: {reply.message[:120]}"
                )
                return None, attempts
            await asyncio.sleep(backoff(attempts, rng))

    async def _lane(self, lane: int, publisher: Publisher) -> None:
        scenario = self.scenario
        rng = random.Random(f"{self.options.seed}-{scenario.name}-{lane}")
        producer_epoch, producer_seq = 0, 0
        done: list[tuple[Publish, Ack]] = []
        while (index := self._take()) is not None:
            key = f"{self.tag}.{lane}.{index}"
            producer = (producer_epoch, producer_seq) if scenario.ids else None
            publish = Publish(
                key,
                {"k": key, "lane": lane, "i": index, "text": self.pad},
                key if scenario.ids and scenario.transport != "ds" else None,
                lane,
                producer,
            )
            sent = time.monotonic()
            if self.first_send is None:
                self.first_send = sent
            ack, attempts = await self._publish(publisher, publish, rng, "publish")
            if ack is None:
                self.tally.counts.failed += 1
                # Whether it was stored is unknown: a fresh producer epoch starts at seq 0.
                producer_epoch, producer_seq, done = producer_epoch + 1, 0, []
                continue
            now = time.monotonic()
            self.last_ack = now
            producer_seq += 1
            self.acks.add(AckRecord(key, ack.seq, ack.offset, sent, now))
            self.latencies_ms.append((now - sent) * 1000)
            if ack.duplicate and attempts == 1:
                self.tally.counts.inconsistent += 1
                self.tally.note(f"first publish of {key} was answered as a duplicate")
            done.append((publish, ack))
            if scenario.ids and rng.random() < self.options.dup_fraction:
                await self._resend(publisher, rng, *rng.choice(done))

    async def _resend(
        self, publisher: Publisher, rng: random.Random, publish: Publish, original: Ack
    ) -> None:
        self.resent += 1
        ack, _ = await self._publish(publisher, publish, rng, "re-send")
        if ack is None:
            return
        if not ack.duplicate:
            self.tally.counts.inconsistent += 1
            self.tally.note(f"re-send of {publish.key} was not answered as a duplicate: {ack}")
        elif ack.seq is not None and original.seq is not None and ack.seq != original.seq:
            self.tally.counts.inconsistent += 1
            self.tally.note(
                f"re-send of {publish.key} answered seq {ack.seq}, its original seq is "
                f"{original.seq}"
            )

    # -- the scenario

    async def run(self, progress: Callable[[str], None]) -> ScenarioResult:
        scenario, options = self.scenario, self.options
        pool = httpx.Limits(max_connections=scenario.in_flight + 4, max_keepalive_connections=64)
        async with (
            httpx.AsyncClient(
                base_url=self.http_url, timeout=options.request_timeout_s, limits=pool
            ) as publish_http,
            httpx.AsyncClient(base_url=self.http_url, timeout=60) as read_http,
        ):
            created = await read_http.put(
                f"/v1/stream/{self.channel}", headers={"Content-Type": "application/json"}
            )
            if created.status_code not in (200, 201):
                raise RuntimeError(f"PUT /v1/stream/{self.channel}: {created.status_code}")
            publisher: Publisher
            if scenario.transport == "ws":
                publisher = WsPublisher(self.ws_url, self.channel, scenario.in_flight, options)
            elif scenario.transport == "rest":
                publisher = RestPublisher(publish_http, self.channel)
            else:
                publisher = DsPublisher(publish_http, self.channel, self.tag)
            publishing_done, stop = asyncio.Event(), asyncio.Event()
            ds_reader: DsReader | None = None
            lanes: asyncio.Future[list[None]] | None = None
            try:
                await publisher.open()
                if scenario.ds_reader:
                    ds_reader = DsReader(read_http, self.channel, self.acks, self.tally)
                    self._observe(ds_reader, ds_reader.run(stop))
                for index in range(scenario.resubscribers):
                    resub = self._ws_reader(f"resubscriber {index + 1}")
                    self._observe(resub, resub.run_resubscriber(publishing_done, stop))
                lanes = asyncio.gather(
                    *(self._lane(k, publisher) for k in range(scenario.in_flight))
                )
                await self._join(lanes, stop)
                self.extend = False
                await lanes
                publishing_done.set()
                progress(f"{scenario.name}: {self.acks.count} publishes acked; draining readers")
                meta = (await read_http.get(f"/v1/channels/{self.channel}")).json()
                head = int(meta["head_seq"])
                if ds_reader is not None:
                    ds_reader.final_head = head
                await wait_until(
                    lambda: all(r.caught_up(head) for r in self.readers), options.drain_s
                )
            finally:
                stop.set()
                publishing_done.set()
                self.extend = False
                if lanes is not None and not lanes.done():
                    lanes.cancel()
                    await asyncio.gather(lanes, return_exceptions=True)
                if self.tasks:
                    _, pending = await asyncio.wait(self.tasks, timeout=5)
                    for task in pending:
                        task.cancel()
                    outcomes = await asyncio.gather(*self.tasks, return_exceptions=True)
                    for reader, outcome in zip(self.readers, outcomes, strict=True):
                        if isinstance(outcome, Exception):
                            self.tally.error("transport", repr(outcome), reader.label, "a reader")
                            self.tally.note(f"{reader.label} crashed: {outcome!r}")
                for reader in self.ws_readers:
                    await reader.close()
                await publisher.close()
            log = await read_log(read_http, self.channel)
        return self.verify(log, head, self.readers)

    def _ws_reader(self, label: str) -> WsReader:
        reader = WsReader(label, self.ws_url, self.channel, self.acks, self.tally, self.options)
        self.ws_readers.append(reader)
        return reader

    def _observe(self, reader: Reader, work: Coroutine[Any, Any, None]) -> None:
        self.readers.append(reader)
        self.tasks.append(asyncio.create_task(work))

    async def _join(self, lanes: asyncio.Future[list[None]], stop: asyncio.Event) -> None:
        """Start the joiners as the publishers progress (at 30 % .. 70 % of the messages, or
        of the time budget if that comes first), then keep the channel busy until the last
        one has had ``live_within`` seconds."""
        n, options = self.scenario.messages, self.options
        kinds = self.scenario.joiners
        last_join: float | None = None
        budget = options.budget_s
        for kind, fraction in zip(kinds, join_points(len(kinds)), strict=True):

            def reached(target: int = math.ceil(fraction * n), when: float = fraction) -> bool:
                return (
                    self.acks.count >= target
                    or lanes.done()
                    or (budget is not None and self._elapsed() >= when * budget)
                )

            await wait_until(reached, options.scenario_timeout_s)
            if lanes.done():
                self.tally.note(f"publishers ended before the joiner from {kind} joined")
                return
            from_ = kind
            if kind == "offset":  # an offset saved early: it replays a backlog first
                saved = self.acks.offsets[: max(1, min(n // 10, self.acks.count // 3))]
                from_ = (saved[-1] if saved else None) or "-1"
            joiner = self._ws_reader(f"joiner from {kind}")
            joiner.begin()  # the clock starts now, before the socket is even open
            last_join = time.monotonic()
            self._observe(joiner, joiner.run_joiner(from_, stop))
        if last_join is not None:
            until = last_join + options.live_within_s + 0.25
            await wait_until(
                lambda: lanes.done() or time.monotonic() > until, options.scenario_timeout_s
            )

    # -- checks against the log

    def verify(self, log: list[dict[str, Any]], head: int, readers: list[Reader]) -> ScenarioResult:
        counts, tally = self.tally.counts, self.tally
        seqs = [int(m["seq"]) for m in log]
        by_seq = {int(m["seq"]): key_of(m.get("data")) for m in log}
        if len(by_seq) != len(seqs):
            counts.duplicated += len(seqs) - len(by_seq)
            tally.note(f"log: {len(seqs) - len(by_seq)} seq(s) stored more than once")
        holes = runs(sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs)))
        if holes:
            counts.gaps += len(holes)
            tally.note(f"log: holes at seqs {format_runs(holes)}")
        if max(seqs, default=0) != head:
            tally.note(f"log ends at seq {max(seqs, default=0)}, channel head is {head}")
        copies = collections.Counter(key_of(m.get("data")) for m in log)
        ids = collections.Counter(m.get("id") for m in log if m.get("id") is not None)
        extra = sum(c - 1 for c in copies.values() if c > 1)
        extra_ids = sum(c - 1 for c in ids.values() if c > 1)
        if extra or extra_ids:
            counts.duplicated += max(extra, extra_ids)
            tally.note(f"log: {max(extra, extra_ids)} extra stored copies of a key/id")
        for key, record in self.acks.by_key.items():
            if copies.get(key, 0) == 0:
                counts.lost += 1
                tally.note(f"acked publish {key} (seq {record.seq}) is not in the log")
            elif record.seq is not None and by_seq.get(record.seq) != key:
                counts.inconsistent += 1
                tally.note(
                    f"acked publish {key} acked at seq {record.seq}, which holds "
                    f"{by_seq.get(record.seq)}"
                )
        unacked = [k for k in copies if k is not None and k not in self.acks.by_key]
        if unacked:
            tally.note(
                f"{len(unacked)} stored message(s) whose publish was never acked "
                f"(e.g. {unacked[0]})"
            )
        reports = [self._check_reader(reader, seqs, by_seq, head) for reader in readers]
        live = [ms for r in reports for ms in r.live_ms if ms is not None]
        never = sum(1 for r in reports for ms in r.live_ms if ms is None)
        seconds = (self.last_ack or 0) - (self.first_send or 0)
        return ScenarioResult(
            scenario=self.scenario.name,
            transport=self.scenario.transport,
            in_flight=self.scenario.in_flight,
            ids=self.scenario.ids,
            channel=self.channel,
            published=self.acks.count,
            resent=self.resent,
            log_messages=len(log),
            seconds=round(seconds, 2),
            publishes_per_s=round(self.acks.count / seconds, 1) if seconds > 0 else 0.0,
            publish_p50_ms=rounded(percentile(self.latencies_ms, 0.50)),
            publish_p99_ms=rounded(percentile(self.latencies_ms, 0.99)),
            live_p50_ms=rounded(percentile(live, 0.50)),
            live_max_ms=None if never or not live else rounded(max(live)),
            live_never=never,
            counts=counts,
            error_codes=dict(tally.codes),
            notes=[
                *(f"first {what}: {text}" for what, text in tally.examples.items()),
                *tally.notes,
            ],
            readers=reports,
        )

    def _check_reader(
        self, reader: Reader, seqs: list[int], by_seq: dict[int, str | None], head: int
    ) -> ReaderReport:
        counts, tally, options = self.tally.counts, self.tally, self.options
        start = reader.start
        expected = [s for s in seqs if start is not None and s > start]
        undelivered = [s for s in expected if s not in reader.seen] if start is not None else seqs
        counts.lost += len(undelivered)
        if undelivered:
            tally.note(
                f"{reader.label}: {len(undelivered)} message(s) never delivered "
                f"(seqs {format_runs(runs(undelivered))})"
            )
        counts.duplicate_frames += reader.duplicate_frames
        counts.gaps += reader.gaps
        counts.reordered += reader.reordered
        wrong = [s for s, key in reader.keys.items() if s in by_seq and by_seq[s] != key]
        if wrong or reader.early:
            counts.inconsistent += len(wrong) + reader.early
            tally.note(
                f"{reader.label}: {len(wrong)} message(s) differ from the log at their "
                f"seq, {reader.early} delivered at or before its start"
            )
        live_ms: list[float | None] = []
        stalled = 0
        for period in reader.periods:
            if period.live_at is not None:
                took = period.live_at - period.t0
                live_ms.append(round(took * 1000, 1))
                stalled += took > options.live_within_s
                continue
            # Never live: a stall if it waited long enough while the channel was written.
            waited = (period.end or time.monotonic()) - period.t0
            written = self.acks.any_acked_between(period.t0, period.t0 + options.live_within_s / 2)
            if written and waited >= options.live_within_s:
                live_ms.append(None)
                stalled += 1
        caught_up = reader.caught_up(head)
        if not caught_up:
            stalled += 1
            tally.note(
                f"{reader.label}: not caught up {options.drain_s:g} s after publishing "
                f"ended (at seq {reader.last}, head {head})"
            )
        if stalled:
            counts.stalled += stalled
            slow = [ms for ms in live_ms if ms is None or ms > options.live_within_s * 1000]
            if slow:
                tally.note(
                    f"{reader.label}: (re)subscriptions not live within "
                    f"{options.live_within_s:g} s: "
                    + ", ".join("never" if ms is None else f"{ms:.0f} ms" for ms in slow)
                )
        return ReaderReport(
            label=reader.label,
            start_seq=start,
            received=len(reader.seen),
            undelivered=len(undelivered),
            duplicate_frames=reader.duplicate_frames,
            gaps=reader.gaps,
            reordered=reader.reordered,
            subscriptions=len(reader.periods),
            live_ms=live_ms,
            stalled=stalled,
            caught_up=caught_up,
            errors=dict(reader.errors),
        )


def join_points(count: int) -> list[float]:
    """When joiners join, as fractions of the scenario's messages acked (30 % .. 70 %)."""
    if count <= 1:
        return [0.5] * count
    return [0.3 + 0.4 * i / (count - 1) for i in range(count)]


def runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted ints: [1,2,3,7] -> [(1,3),(7,7)]."""
    result: list[tuple[int, int]] = []
    for value in sorted(values):
        if result and value == result[-1][1] + 1:
            result[-1] = (result[-1][0], value)
        else:
            result.append((value, value))
    return result


def format_runs(spans: Sequence[tuple[int, int]], limit: int = 6) -> str:
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans[:limit])
    return text + (f", … ({len(spans)} runs)" if len(spans) > limit else "")


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def read_log(http: httpx.AsyncClient, channel: str) -> list[dict[str, Any]]:
    """The whole log, ``GET /v1/channels/{c}/messages?from=-1&limit=1000``, paged by ``next``."""
    messages: list[dict[str, Any]] = []
    position = "-1"
    while True:
        response = await http.get(
            f"/v1/channels/{channel}/messages", params={"from": position, "limit": 1000}
        )
        response.raise_for_status()
        page = response.json()
        messages.extend(page["messages"])
        if page.get("up_to_date") or not page["messages"] or page["next"] == position:
            return messages
        position = page["next"]


# ---------------------------------------------------------------------------------------------
# The matrix


def matrix(
    transports: Sequence[str] = TRANSPORTS,
    in_flight: Sequence[int] = DEFAULT_IN_FLIGHT,
    messages: int = 300,
    ids: Sequence[bool] = (True,),
    joiners: Sequence[str] = JOIN_KINDS,
    resubscribers: int = 1,
    ds_reader: bool = True,
) -> list[Scenario]:
    return [
        Scenario(t, k, messages, i, tuple(joiners), resubscribers, ds_reader)
        for i in ids
        for t in transports
        for k in in_flight
    ]


async def warm_up(http_url: str, ws_url: str) -> None:
    """First invocations import modules and open pools: keep that out of the figures."""
    channel = f"load:warmup-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=http_url, timeout=60) as http:
        await http.put(f"/v1/stream/{channel}", headers={"Content-Type": "application/json"})
        socket = await Socket.open(ws_url)
        try:
            await socket.request({"action": "subscribe", "channel": channel, "from": "-1"}, 30)
            for n in range(3):
                await socket.request({"action": "publish", "channel": channel, "data": n}, 30)
                await http.post(f"/v1/channels/{channel}/messages", json={"data": n})
                await http.post(
                    f"/v1/stream/{channel}",
                    content=json.dumps([n]),
                    headers={"Content-Type": "application/json"},
                )
            await read_log(http, channel)
        finally:
            await socket.close()


async def run_matrix(
    http_url: str,
    ws_url: str,
    scenarios: Sequence[Scenario],
    options: Options | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ScenarioResult]:
    """Run ``scenarios`` one after the other against a running server."""
    options = options or Options()
    say = progress or (lambda _text: None)
    await warm_up(http_url, ws_url)
    results = []
    for scenario in scenarios:
        say(
            f"{scenario.name}: {scenario.messages} messages, joiners {list(scenario.joiners)}, "
            f"{scenario.resubscribers} resubscriber(s), ds reader {scenario.ds_reader}"
        )
        started = time.monotonic()
        result = await asyncio.wait_for(
            Run(http_url, ws_url, scenario, options).run(say), options.scenario_timeout_s + 60
        )
        say(
            f"{scenario.name}: done in {time.monotonic() - started:.1f} s, "
            + ("ok" if result.ok else f"FAILED {result.counts.failures()}")
        )
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# Output

COLUMNS = (
    "unavailable",
    "rate_limited",
    "internal",
    "other",
    "failed",
    "lost",
    "duplicated",
    "duplicate_frames",
    "gaps",
    "reordered",
    "stalled",
    "inconsistent",
)


def _fmt(value: float | None, never: int = 0) -> str:
    if never:
        return "never"
    return "-" if value is None else f"{value:.0f}"


def table(results: Sequence[ScenarioResult]) -> str:
    header = ["scenario", "acked", "pub/s", "p50 ms", "p99 ms", "live p50", "live max", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [
            r.scenario,
            str(r.published),
            f"{r.publishes_per_s:.1f}",
            _fmt(r.publish_p50_ms),
            _fmt(r.publish_p99_ms),
            _fmt(r.live_p50_ms),
            _fmt(r.live_max_ms, r.live_never),
            *(str(getattr(r.counts, c)) for c in COLUMNS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(results: Sequence[ScenarioResult]) -> str:
    out = []
    for r in results:
        if r.ok and not r.notes:
            continue
        verdict = (
            "ok"
            if r.ok
            else "FAILED " + ", ".join(f"{k}={v}" for k, v in r.counts.failures().items())
        )
        out.append(
            f"{r.scenario} (channel {r.channel}, {r.published} acked, {r.resent} re-sent, "
            f"{r.log_messages} in the log): {verdict}"
        )
        out.extend(f"  - {note}" for note in r.notes)
        for reader in r.readers:
            out.append(
                f"  · {reader.label}: from seq {reader.start_seq}, {reader.received} received, "
                f"{reader.undelivered} undelivered"
                + (f", {reader.subscriptions} subscription(s)" if reader.subscriptions else "")
                + f"{_live_summary(reader.live_ms)}, errors {reader.errors or '{}'}"
            )
    return "\n".join(out)


def _live_summary(live_ms: Sequence[float | None]) -> str:
    if not live_ms:
        return ""
    if len(live_ms) <= 4:
        return ", live " + ", ".join("never" if ms is None else f"{ms:.0f} ms" for ms in live_ms)
    known = [ms for ms in live_ms if ms is not None]
    never = len(live_ms) - len(known)
    top = "never" if never else f"{_fmt(max(known, default=None))} ms"
    return f", live p50 {_fmt(percentile(known, 0.5))} ms, max {top}" + (
        f" ({never} never live)" if never else ""
    )


def summary(results: Sequence[ScenarioResult]) -> str:
    """One line per failing scenario: what the e2e test prints when it fails."""
    return "\n".join(
        f"{r.scenario}: " + ", ".join(f"{k}={v}" for k, v in r.counts.failures().items())
        for r in results
        if not r.ok
    )


# ---------------------------------------------------------------------------------------------
# Starting a server of our own


def _die_with_parent() -> None:
    """In the child: SIGTERM when this tool dies, even by SIGKILL (Linux ``prctl``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class DevServer:
    """``switchboard dev --port 0 --no-auth --no-agent`` as a subprocess, output drained."""

    def __init__(self, *extra: str) -> None:
        script = Path(sys.executable).with_name("switchboard")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "switchboard.cli"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Long-polls left waiting when a scenario ends must not outlive it by 20 s.
        env.setdefault("SWITCHBOARD_LONG_POLL_TIMEOUT_S", "5")
        self.process = subprocess.Popen(
            [*command, "dev", "--port", "0", "--no-auth", "--no-agent", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.http = self.ws = ""
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.ready.is_set() and (match := READY.search(line)):
                self.http, self.ws = match.group(1), match.group(2)
                self.ready.set()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("switchboard dev did not start:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.reader.join(5)


@contextlib.contextmanager
def dev_server(*extra: str) -> Iterator[DevServer]:
    server = DevServer(*extra)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def ws_url_for(http_url: str) -> str:
    return re.sub(r"^http", "ws", http_url.rstrip("/")) + "/ws"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Columns and definitions: docs/benchmarks.md.",
    )
    add = parser.add_argument
    add("--url", help="target this running server (http://host:port) instead of starting one")
    add("--stream-poll-ms", type=int, help="passed to the server this tool starts")
    add("--transports", default=",".join(TRANSPORTS), help="comma-separated: ws,rest,ds")
    add(
        "--in-flight",
        default=",".join(map(str, DEFAULT_IN_FLIGHT)),
        help="publishes in flight on the channel, comma-separated (default 1,4,16,64)",
    )
    add("--messages", type=int, default=300, help="publishes per scenario (at least)")
    add(
        "--budget",
        type=float,
        default=30.0,
        help="seconds of publishing per scenario before it stops short of --messages (0: no limit)",
    )
    add(
        "--frames",
        choices=("batched", "single"),
        default="batched",
        help="subscribers ask for batched frames, as the SDKs do (default), or get one "
        "message per frame, as a v0 client does",
    )
    add(
        "--ids",
        choices=("with", "without", "both"),
        default="with",
        help="publish with idempotency ids (ds: idempotent producers), without, or both",
    )
    add(
        "--joiners",
        default=",".join(JOIN_KINDS),
        help="subscribers joining mid-run, comma-separated from -1,offset,now ('' for none)",
    )
    add("--resubscribers", type=int, default=1, help="subscribers that drop and resubscribe")
    add("--no-ds-reader", action="store_true", help="no Durable Streams long-poll reader")
    add(
        "--dup-fraction",
        type=float,
        default=Options.dup_fraction,
        help="fraction of publishes re-sent with the same id",
    )
    add(
        "--live-within",
        type=float,
        default=Options.live_within_s,
        help="seconds a (re)subscription may take to see a live message",
    )
    add(
        "--drain",
        type=float,
        default=Options.drain_s,
        help="seconds readers get to reach the head once publishing ends",
    )
    add("--attempts", type=int, default=Options.attempts, help="attempts per publish")
    add(
        "--per-connection",
        type=int,
        default=Options.per_connection,
        help="WebSocket publish lanes per socket",
    )
    add("--seed", type=int, default=Options.seed)
    add("--json", action="store_true", help="print JSON instead of the table")
    add("--save", metavar="PATH", help="also write the JSON to PATH")
    add("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    for kind in _csv(args.joiners):
        if kind not in JOIN_KINDS:
            parser.error(f"--joiners: {kind!r} is not one of {', '.join(JOIN_KINDS)}")
    for transport in _csv(args.transports):
        if transport not in TRANSPORTS:
            parser.error(f"--transports: {transport!r} is not one of {', '.join(TRANSPORTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` must still stop the server this tool started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ids = {"with": (True,), "without": (False,), "both": (True, False)}[args.ids]
    scenarios = matrix(
        _csv(args.transports),
        [int(k) for k in _csv(args.in_flight)],
        args.messages,
        ids,
        _csv(args.joiners),
        args.resubscribers,
        not args.no_ds_reader,
    )
    options = Options(
        dup_fraction=args.dup_fraction,
        live_within_s=args.live_within,
        drain_s=args.drain,
        attempts=args.attempts,
        per_connection=args.per_connection,
        seed=args.seed,
        budget_s=args.budget or None,
        batch=args.frames == "batched",
    )
    started = time.monotonic()

    def progress(text: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    def run(http_url: str, ws_url: str) -> list[ScenarioResult]:
        return asyncio.run(run_matrix(http_url, ws_url, scenarios, options, progress))

    if args.url:
        results = run(args.url.rstrip("/"), ws_url_for(args.url))
    else:
        extra = ["--stream-poll-ms", str(args.stream_poll_ms)] if args.stream_poll_ms else []
        with dev_server(*extra) as server:
            progress(f"switchboard dev ready on {server.http}")
            results = run(server.http, server.ws)
    ok = all(r.ok for r in results)
    document = json.dumps(
        {
            "ok": ok,
            "options": asdict(options),
            "seconds": round(time.monotonic() - started, 1),
            "scenarios": [{**asdict(r), "ok": r.ok} for r in results],
        },
        indent=2,
    )
    if args.save:
        Path(args.save).write_text(document + "\n")
    if args.json:
        print(document)
    else:
        print("Local emulation figures (moto, one process), not AWS figures.")
        print(table(results))
        text = details(results)
        if text:
            print("\n" + text)
        failed = sum(1 for r in results if not r.ok)
        print(
            f"\n{f'FAILED: {failed} of' if failed else 'OK:'} {len(results)} scenario(s), "
            f"{time.monotonic() - started:.0f} s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
