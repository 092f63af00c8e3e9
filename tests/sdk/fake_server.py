"""A small in-process Switchboard for SDK tests: the wire contract over a real WebSocket
(``websockets``) and the /v1 HTTP API as an ``httpx.MockTransport``, with fault knobs.

It follows protocol.md closely enough for the client's recovery logic: gapless seqs per
epoch, id idempotency, request tokens found on a retry, subscribe = register then replay,
batched `messages` frames (under 32 KB) for subscriptions that ask, byte-stream entries
base64-encoded and sliced over 22 KB, heads in pongs, API Gateway's 32 KB inbound frame limit
(close 1009), `offset_expired` and `epoch_mismatch`; presence (members per connection or
HTTP instance, the presence log `<c>@presence`, the `members` snapshot, heartbeats,
`rate_limited`, a member that leaves when its socket ends). Faults are injected deliberately:
dropped or duplicated live frames, swallowed acks, killed sockets, silent pongs, paused
replays, `rate_limited` publishes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

# API Gateway's inbound WebSocket frame limit (it closes the socket with 1009 above it).
MAX_INBOUND_FRAME = 32 * 1024
# The server's batched frames stay under this; byte-stream entries are sliced over this.
MAX_BATCH_FRAME_BYTES = 32 * 1024 - 512
RAW_SLICE_BYTES = 22 * 1024


def offset(epoch: str, seq: int) -> str:
    return f"{epoch}_{seq:016d}"


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


@dataclass
class FakeChannel:
    epoch: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    raw: dict[int, bytes] = field(default_factory=dict)  # bytes of byte-stream entries
    earliest: int = 1  # first retained seq (tests "expire" messages by raising it)

    @property
    def head(self) -> int:
        return len(self.messages)


class FakeSwitchboard:
    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}
        # Per socket: channel -> whether the subscription asked for batched frames.
        self.subs: dict[ServerConnection, dict[str, bool]] = {}
        self.server: Server | None = None
        self.url = ""
        self.connections = 0
        self.pings = 0
        self.tokens: list[str | None] = []
        self.http_auth: list[str | None] = []
        self.ws_frames: list[dict[str, Any]] = []
        self.sent_frames: list[dict[str, Any]] = []  # every frame sent to a client
        self.http_publishes: list[tuple[dict[str, Any], str | None]] = []  # body, retry header
        self.closed_too_big = 0  # sockets closed with 1009 (an inbound frame over 32 KB)
        self._epochs = 0
        # Fault knobs.
        self.drop_live: Callable[[dict[str, Any]], bool] = lambda m: False
        # Frames to a client that are lost on the way (decided per frame, after encoding).
        self.drop_sent: Callable[[dict[str, Any]], bool] = lambda f: False
        # HTTP publishes stored whose answer is then lost (the client sees a network error).
        self.lose_http_answers = 0
        self.duplicate_live = False
        self.swallow_acks = 0  # this many acks are lost, each followed by a killed socket
        self.answer_pings = True
        # A replay stops after this many messages with `unavailable` + `resume` (as the real
        # server does at its invocation's deadline); the client must subscribe again.
        self.pause_replay_after: int | None = None
        self.paused_replays = 0
        # The next this-many publishes (socket or HTTP) answer `rate_limited`, storing nothing.
        self.rate_limit_publishes = 0
        self.retry_after_ms = 200
        self.publish_attempts: list[float] = []  # monotonic time of every publish received
        self.require_token: str | None = None
        # Refuse WebSocket handshakes whose token is not `require_token` with this HTTP
        # status (as API Gateway's authorizer does), instead of closing after the upgrade.
        self.refuse_status: int | None = None
        self.refused = 0
        # `POST /v1/tokens` with `Authorization: Bearer <api_key>` answers `require_token`.
        self.api_key: str | None = None
        self.issued: list[dict[str, Any]] = []
        # Presence: channel -> member key -> member (as GET …/presence lists them).
        self.members: dict[str, dict[str, dict[str, Any]]] = {}
        self.conn_ids: dict[ServerConnection, str] = {}
        # Every presence frame received: (time.monotonic(), frame, member key).
        self.presence_frames: list[tuple[float, dict[str, Any], str]] = []
        # HTTP presence requests: (method, instance, body or None).
        self.http_presence: list[tuple[str, str, Any]] = []
        self.heartbeat_s: float = 15
        # The next this-many enters/updates of an existing member answer `rate_limited`.
        self.rate_limit_presence = 0
        self.presence_retry_after_ms = 200
        # A closed socket's members leave (as $disconnect does).
        self.disconnect_leaves = True
        # Run while answering a subscribe with presence: before the presence log's head is
        # read (changes made then are in the snapshot and at or below its seq), and after
        # (changes made then are above its seq, and may be in the snapshot too).
        self.before_snapshot_head: Callable[[], Any] | None = None
        self.before_snapshot_members: Callable[[], Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await serve(
            self._handle, "127.0.0.1", 0, ping_interval=None, process_request=self._upgrade,
            max_size=MAX_INBOUND_FRAME,
        )
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._http)

    def kill_sockets(self) -> int:
        """Abort every client socket, as a network failure would (no close handshake)."""
        killed = 0
        for ws in list(self.subs):
            ws.transport.abort()
            killed += 1
        return killed

    # -- the log ---------------------------------------------------------------------------

    def channel(self, name: str) -> FakeChannel:
        if name not in self.channels:
            self._epochs += 1
            self.channels[name] = FakeChannel(epoch=f"{self._epochs:016x}")
        return self.channels[name]

    def delete(self, name: str) -> None:
        self.channels.pop(name, None)

    async def append(
        self, name: str, data: Any, id: str | None, token: str | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        (ack,) = await self.append_many(name, [(data, id, token)], retry)
        return ack

    async def append_many(
        self, name: str, items: list[tuple[Any, str | None, str | None]], retry: bool = False
    ) -> list[dict[str, Any]]:
        """Store a batch (data, id, token) and fan it out as one stream batch."""
        ch = self.channel(name)
        acks, stored = [], []
        for data, id, token in items:
            # An id is idempotent; a token is looked for only on a retry (as the server does).
            known = ch.ids.get(id) if id is not None else (
                ch.tokens.get(token) if token is not None and retry else None
            )
            if known is not None:
                acks.append({"channel": name, "seq": known, "offset": offset(ch.epoch, known),
                             "duplicate": True})
                continue
            message = self._store(ch, name, data, id)
            if token is not None and id is None:
                ch.tokens[token] = message["seq"]
            stored.append(message)
            acks.append({"channel": name, "seq": message["seq"], "offset": message["offset"],
                         "duplicate": False})
        await self._fan_out(name, stored)
        return acks

    async def append_bytes(self, name: str, payload: bytes) -> dict[str, Any]:
        """An entry of a Durable Streams byte stream: delivered base64-encoded."""
        ch = self.channel(name)
        message = self._store(ch, name, base64.b64encode(payload).decode("ascii"), None)
        message["encoding"] = "base64"
        ch.raw[message["seq"]] = payload
        await self._fan_out(name, [message])
        return message

    def _store(self, ch: FakeChannel, name: str, data: Any, id: str | None) -> dict[str, Any]:
        seq = ch.head + 1
        message = {"channel": name, "seq": seq, "offset": offset(ch.epoch, seq),
                   "epoch": ch.epoch, "id": id, "data": data,
                   "ts": int(time.time() * 1000), "publisher": None}
        ch.messages.append(message)
        if id is not None:
            ch.ids[id] = seq
        return message

    def frames_for(self, name: str, messages: list[dict[str, Any]], batch: bool) -> list[str]:
        """What the server sends for ``messages`` (core/frames.py's rules): one ``message``
        frame each, or ``messages`` frames under 32 KB; byte-stream entries over 22 KB as
        ``message`` frames of base64 slices."""
        ch = self.channel(name)
        out: list[str] = []
        pending: list[str] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if len(pending) == 1:
                out.append('{"type":"message",' + pending[0][1:])
            elif pending:
                out.append(dumps({"type": "messages", "channel": name})[:-1]
                           + ',"messages":[' + ",".join(pending) + "]}")
            pending.clear()
            size = 0

        for message in messages:
            raw = ch.raw.get(message["seq"])
            if raw is not None and len(raw) > RAW_SLICE_BYTES:
                flush()
                count = -(-len(raw) // RAW_SLICE_BYTES)
                for index in range(count):
                    part = raw[index * RAW_SLICE_BYTES : (index + 1) * RAW_SLICE_BYTES]
                    out.append(dumps({"type": "message", **message,
                                      "data": base64.b64encode(part).decode("ascii"),
                                      "slice": [index, count]}))
                continue
            if not batch:
                out.append(dumps({"type": "message", **message}))
                continue
            encoded = dumps(message)
            if pending and size + len(encoded.encode()) + 1 > MAX_BATCH_FRAME_BYTES:
                flush()
            pending.append(encoded)
            size += len(encoded.encode()) + 1
        flush()
        return out

    async def send(self, ws: ServerConnection, frame: str) -> None:
        decoded = json.loads(frame)
        if self.drop_sent(decoded):
            return
        self.sent_frames.append(decoded)
        await ws.send(frame)

    async def _fan_out(self, name: str, messages: list[dict[str, Any]]) -> None:
        live = [m for m in messages if not self.drop_live(m)]
        if not live:
            return
        for ws, channels in list(self.subs.items()):
            if name in channels:
                for frame in self.frames_for(name, live, channels[name]):
                    for _ in range(2 if self.duplicate_live else 1):
                        with contextlib.suppress(Exception):
                            await self.send(ws, frame)

    def resolve(self, name: str, start: str) -> int:
        """The seq a reader starts after, or raise the contract error (as a dict)."""
        ch = self.channel(name)
        if start == "now":
            return ch.head
        if start == "-1":
            return ch.earliest - 1
        epoch, _, seq_text = start.partition("_")
        if epoch != ch.epoch:
            raise ContractError("epoch_mismatch", 409, "old epoch",
                                {"epoch": ch.epoch, "earliest": offset(ch.epoch, 0)})
        seq = int(seq_text)
        if seq + 1 < ch.earliest:
            raise ContractError("offset_expired", 410, "expired",
                                {"earliest": offset(ch.epoch, ch.earliest - 1),
                                 "offset": start})
        return seq

    def head(self, name: str) -> str:
        ch = self.channels.get(name)
        return offset(ch.epoch, ch.head) if ch is not None and ch.head else "-1"

    # -- WebSocket -------------------------------------------------------------------------

    def _upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse_status is None:
            return None
        token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
        if token == self.require_token:
            return None
        self.refused += 1
        return connection.respond(self.refuse_status, "")

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        token = query.get("token", [None])[0]
        self.tokens.append(token)
        if self.require_token is not None and token != self.require_token:
            await ws.close(4001, "unauthorized")
            return
        self.connections += 1
        self.subs[ws] = {}
        self.conn_ids[ws] = f"conn{self.connections}"
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.ws_frames.append(frame)
                await self._frame(ws, frame)
        except Exception:
            pass
        finally:
            sent = ws.protocol.close_sent
            if sent is not None and sent.code == 1009:
                self.closed_too_big += 1
            self.subs.pop(ws, None)
            if self.disconnect_leaves:
                key = self.member_key(ws)
                for channel, members in list(self.members.items()):
                    if key in members:
                        await self.remove_member(channel, key)

    async def _frame(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        action = frame.get("action")
        if action == "ping":
            self.pings += 1
            if self.answer_pings:
                pong: dict[str, Any] = {"type": "pong", "ref": ref}
                if frame.get("channels"):
                    pong["heads"] = {name: self.head(name) for name in frame["channels"]}
                await self.send(ws, dumps(pong))
            return
        name = frame["channel"]
        if action == "presence":
            await self._presence(ws, frame)
            return
        if action == "publish":
            self.publish_attempts.append(time.monotonic())
            if self.rate_limit_publishes > 0:
                self.rate_limit_publishes -= 1
                await self.send(ws, dumps({
                    "type": "error", "ref": ref, "channel": name, "code": "rate_limited",
                    "message": "slow down",
                    "detail": {"channel": name, "retry_after_ms": self.retry_after_ms},
                }))
                return
            ack = await self.append(name, frame["data"], frame.get("id"), frame.get("token"),
                                    frame.get("retry") is True)
            if self.swallow_acks > 0:
                self.swallow_acks -= 1
                ws.transport.abort()
                return
            await self.send(ws, dumps({"type": "ack", "ref": ref, **ack}))
        elif action == "subscribe":
            try:
                after = self.resolve(name, frame.get("from", "now"))
            except ContractError as error:
                await ws.send(json.dumps({"type": "error", "ref": ref, "channel": name,
                                          **error.payload()}))
                return
            ch = self.channel(name)
            batch = frame.get("batch") is True
            self.subs[ws][name] = batch  # register first, then replay
            await self.send(ws, dumps({
                "type": "subscribed", "ref": ref, "channel": name, "epoch": ch.epoch,
                "from": offset(ch.epoch, after),
                "head": offset(ch.epoch, ch.head) if ch.head else "-1",
            }))
            backlog = list(ch.messages[after:])
            limit = self.pause_replay_after
            if limit is not None and len(backlog) > limit:
                for out in self.frames_for(name, backlog[:limit], batch):
                    await self.send(ws, out)
                self.subs[ws].pop(name, None)
                self.paused_replays += 1
                await self.send(ws, dumps({
                    "type": "error", "ref": ref, "channel": name, "code": "unavailable",
                    "message": "The replay paused; subscribe again from detail.offset.",
                    "detail": {"channel": name, "resume": True,
                               "offset": backlog[limit - 1]["offset"]},
                }))
                return
            for out in self.frames_for(name, backlog, batch):
                await self.send(ws, out)
            if frame.get("presence") is True:
                await self._follow_presence(ws, name, batch)
        elif action == "unsubscribe":
            self.subs[ws].pop(name, None)
            await self.send(ws, dumps({"type": "unsubscribed", "ref": ref, "channel": name}))

    # -- presence --------------------------------------------------------------------------

    def member_key(self, ws: ServerConnection, instance: str | None = None) -> str:
        return f"anonymous/{instance or self.conn_ids.get(ws, '?')}"

    async def enter_member(self, channel: str, key: str, data: dict[str, Any],
                           via: str = "websocket") -> None:
        now = int(time.time() * 1000)
        members = self.members.setdefault(channel, {})
        before = members.get(key)
        members[key] = {"key": key, "client_id": None, "data": data,
                        "entered": before["entered"] if before else now, "updated": now,
                        "via": via}
        if before is None or before["data"] != data:
            await self.append(f"{channel}@presence", {
                "type": "presence", "key": key, "value": {"client_id": None, "data": data},
                "headers": {"operation": "update" if before else "insert"}}, None)

    async def remove_member(self, channel: str, key: str) -> bool:
        """The member leaves (said so, its socket ended, or it expired): logged."""
        if self.members.get(channel, {}).pop(key, None) is None:
            return False
        await self.append(f"{channel}@presence", {
            "type": "presence", "key": key, "headers": {"operation": "delete"}}, None)
        return True

    async def _presence(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        ref, name, op = frame.get("ref"), frame["channel"], frame.get("op")
        key = self.member_key(ws)
        self.presence_frames.append((time.monotonic(), frame, key))
        reply: dict[str, Any] = {"type": "presence", "channel": name, "op": op, "member": key}
        if ref is not None:
            reply["ref"] = ref
        present = key in self.members.get(name, {})
        if op == "heartbeat":
            if not present:
                error: dict[str, Any] = {
                    "type": "error", "channel": name, "code": "not_found",
                    "message": "Not a member: enter again.",
                    "detail": {"channel": name, "member": key}}
                if ref is not None:
                    error["ref"] = ref
                await self.send(ws, dumps(error))
            elif ref is not None:
                await self.send(ws, dumps({**reply, "heartbeat_s": self.heartbeat_s}))
            return
        if op == "leave":
            await self.remove_member(name, key)
            await self.send(ws, dumps(reply))
            return
        if present and self.rate_limit_presence > 0:
            self.rate_limit_presence -= 1
            await self.send(ws, dumps({
                "type": "error", "ref": ref, "channel": name, "code": "rate_limited",
                "message": "slow down",
                "detail": {"retry_after_ms": self.presence_retry_after_ms}}))
            return
        data = frame.get("data")
        if not isinstance(data, dict) or len(dumps(data)) > 1024:
            code = "too_large" if isinstance(data, dict) else "invalid_request"
            await self.send(ws, dumps({"type": "error", "ref": ref, "channel": name,
                                       "code": code, "message": "bad data", "detail": {}}))
            return
        await self.enter_member(name, key, data)
        await self.send(ws, dumps({**reply, "heartbeat_s": self.heartbeat_s}))

    async def _follow_presence(self, ws: ServerConnection, name: str, batch: bool) -> None:
        """As the server does: the presence log from now, then the members with the log's
        head read before them."""
        log = f"{name}@presence"
        ch = self.channel(log)
        self.subs[ws][log] = batch
        await self.send(ws, dumps({
            "type": "subscribed", "channel": log, "epoch": ch.epoch,
            "from": offset(ch.epoch, ch.head),
            "head": offset(ch.epoch, ch.head) if ch.head else "-1"}))
        if self.before_snapshot_head is not None:
            await self.before_snapshot_head()
        seq = ch.head
        if self.before_snapshot_members is not None:
            await self.before_snapshot_members()
        members = list(self.members.get(name, {}).values())
        await self.send(ws, dumps({"type": "members", "channel": name, "members": members,
                                   "offset": offset(ch.epoch, seq), "seq": seq}))

    async def _http_presence(self, request: httpx.Request, parts: list[str]) -> httpx.Response:
        name = parts[2]
        if len(parts) == 4:
            return httpx.Response(200, json={
                "channel": name, "members": list(self.members.get(name, {}).values())})
        instance = parts[4]
        key = f"anonymous/{instance}"
        body = json.loads(request.content) if request.content else None
        self.http_presence.append((request.method, instance, body))
        present = key in self.members.get(name, {})
        if request.method == "DELETE":
            if not await self.remove_member(name, key):
                raise ContractError("not_found", 404, "Not a member.", {})
            return httpx.Response(204)
        if body is None:
            if not present:
                raise ContractError("not_found", 404, "Not a member: enter again.", {})
        else:
            if present and self.rate_limit_presence > 0:
                self.rate_limit_presence -= 1
                raise ContractError("rate_limited", 429, "slow down",
                                    {"retry_after_ms": self.presence_retry_after_ms})
            await self.enter_member(name, key, body.get("data") or {}, via="http")
        return httpx.Response(200, json={"channel": name, "member": key,
                                         "heartbeat_s": self.heartbeat_s, "expires_in": 40})

    # -- HTTP ------------------------------------------------------------------------------

    async def _http(self, request: httpx.Request) -> httpx.Response:
        self.http_auth.append(request.headers.get("authorization"))
        if request.url.path == "/v1/tokens" and request.method == "POST":
            if self.api_key is None or (
                request.headers.get("authorization") != f"Bearer {self.api_key}"
            ):
                return _error(ContractError("unauthorized", 401,
                                            "Unknown API key or wrong secret.", {}))
            body = json.loads(request.content)
            self.issued.append(body)
            return httpx.Response(201, json={"token": self.require_token or "minted",
                                             "client_id": body["client_id"], "expires": 0,
                                             "capabilities": body["capabilities"]})
        if self.require_token is not None and (
            request.headers.get("authorization") != f"Bearer {self.require_token}"
        ):
            return _error(ContractError("unauthorized", 401, "bad token", {}))
        parts = [unquote(p) for p in request.url.path.split("/") if p]
        try:
            if parts[:2] == ["v1", "channels"] and len(parts) in (4, 5) and (
                parts[3] == "presence"
            ):
                return await self._http_presence(request, parts)
            if parts[:2] == ["v1", "channels"] and len(parts) == 4 and parts[3] == "messages":
                name = parts[2]
                if request.method == "GET":
                    after = self.resolve(name, request.url.params.get("from", "-1"))
                    limit = int(request.url.params.get("limit", "100"))
                    ch = self.channel(name)
                    page = ch.messages[after : after + limit]
                    last = page[-1]["seq"] if page else after
                    return httpx.Response(200, json={
                        "messages": page, "next": offset(ch.epoch, last),
                        "up_to_date": last >= ch.head,
                    })
                body = json.loads(request.content)
                retry = request.headers.get("x-switchboard-retry")
                self.http_publishes.append((body, retry))
                items = body if isinstance(body, list) else [body]
                if not isinstance(body, list):
                    self.publish_attempts.append(time.monotonic())
                    if self.rate_limit_publishes > 0:
                        self.rate_limit_publishes -= 1
                        raise ContractError("rate_limited", 429, "slow down",
                                            {"retry_after_ms": self.retry_after_ms})
                acks = await self.append_many(
                    name, [(i["data"], i.get("id"), i.get("token")) for i in items],
                    retry == "true",
                )
                if self.lose_http_answers > 0:
                    self.lose_http_answers -= 1
                    raise httpx.ReadError("the answer was lost", request=request)
                return httpx.Response(201, json=acks if isinstance(body, list) else acks[0])
            if parts[:2] == ["v1", "channels"] and len(parts) == 3:
                name = parts[2]
                if request.method == "DELETE":
                    if name not in self.channels:
                        raise ContractError("not_found", 404, f"Channel {name!r} does not exist.",
                                            {"channel": name})
                    self.delete(name)
                    return httpx.Response(204)
                if request.method == "GET" and name not in self.channels:
                    raise ContractError("not_found", 404, f"Channel {name!r} does not exist.",
                                        {"channel": name})
                ch = self.channel(name)
                return httpx.Response(200, json={
                    "name": name, "epoch": ch.epoch,
                    "head": offset(ch.epoch, ch.head) if ch.head else "-1",
                    "head_seq": ch.head, "retention": 86400, "created": 0,
                })
        except ContractError as error:
            return _error(error)
        return httpx.Response(404, text="no route")


class ContractError(Exception):
    def __init__(self, code: str, status: int, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.detail = code, status, message, detail

    def payload(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


def _error(error: ContractError) -> httpx.Response:
    return httpx.Response(error.status, json={"error": error.payload()})


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
