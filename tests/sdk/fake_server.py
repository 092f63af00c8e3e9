"""A small in-process Switchboard for SDK tests: the wire contract over a real WebSocket
(``websockets``) and the /v1 HTTP API as an ``httpx.MockTransport``, with fault knobs.

It follows protocol.md closely enough for the client's recovery logic: gapless seqs per
epoch, id idempotency, subscribe = register then replay, `offset_expired` and
`epoch_mismatch`. Faults are injected deliberately: dropped or duplicated live frames,
swallowed acks, killed sockets, silent pongs.
"""

from __future__ import annotations

import asyncio
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


def offset(epoch: str, seq: int) -> str:
    return f"{epoch}_{seq:016d}"


@dataclass
class FakeChannel:
    epoch: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    earliest: int = 1  # first retained seq (tests "expire" messages by raising it)

    @property
    def head(self) -> int:
        return len(self.messages)


class FakeSwitchboard:
    def __init__(self) -> None:
        self.channels: dict[str, FakeChannel] = {}
        self.subs: dict[ServerConnection, set[str]] = {}
        self.server: Server | None = None
        self.url = ""
        self.connections = 0
        self.pings = 0
        self.tokens: list[str | None] = []
        self.http_auth: list[str | None] = []
        self.ws_frames: list[dict[str, Any]] = []
        self._epochs = 0
        # Fault knobs.
        self.drop_live: Callable[[dict[str, Any]], bool] = lambda m: False
        self.duplicate_live = False
        self.swallow_acks = 0  # this many acks are lost, each followed by a killed socket
        self.answer_pings = True
        self.require_token: str | None = None
        # Refuse WebSocket handshakes whose token is not `require_token` with this HTTP
        # status (as API Gateway's authorizer does), instead of closing after the upgrade.
        self.refuse_status: int | None = None
        self.refused = 0
        # `POST /v1/tokens` with `Authorization: Bearer <api_key>` answers `require_token`.
        self.api_key: str | None = None
        self.issued: list[dict[str, Any]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await serve(
            self._handle, "127.0.0.1", 0, ping_interval=None, process_request=self._upgrade
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

    async def append(self, name: str, data: Any, id: str | None) -> dict[str, Any]:
        ch = self.channel(name)
        if id is not None and id in ch.ids:
            seq = ch.ids[id]
            return {"channel": name, "seq": seq, "offset": offset(ch.epoch, seq),
                    "duplicate": True}
        seq = ch.head + 1
        message = {"channel": name, "seq": seq, "offset": offset(ch.epoch, seq),
                   "epoch": ch.epoch, "id": id, "data": data,
                   "ts": int(time.time() * 1000), "publisher": None}
        ch.messages.append(message)
        if id is not None:
            ch.ids[id] = seq
        await self._fan_out(name, message)
        return {"channel": name, "seq": seq, "offset": offset(ch.epoch, seq), "duplicate": False}

    async def _fan_out(self, name: str, message: dict[str, Any]) -> None:
        if self.drop_live(message):
            return
        frame = json.dumps({"type": "message", **message})
        for ws, channels in list(self.subs.items()):
            if name in channels:
                for _ in range(2 if self.duplicate_live else 1):
                    with contextlib.suppress(Exception):
                        await ws.send(frame)

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
        self.subs[ws] = set()
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.ws_frames.append(frame)
                await self._frame(ws, frame)
        except Exception:
            pass
        finally:
            self.subs.pop(ws, None)

    async def _frame(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        action = frame.get("action")
        if action == "ping":
            self.pings += 1
            if self.answer_pings:
                await ws.send(json.dumps({"type": "pong", "ref": ref}))
            return
        name = frame["channel"]
        if action == "publish":
            ack = await self.append(name, frame["data"], frame.get("id"))
            if self.swallow_acks > 0:
                self.swallow_acks -= 1
                ws.transport.abort()
                return
            await ws.send(json.dumps({"type": "ack", "ref": ref, **ack}))
        elif action == "subscribe":
            try:
                after = self.resolve(name, frame.get("from", "now"))
            except ContractError as error:
                await ws.send(json.dumps({"type": "error", "ref": ref, "channel": name,
                                          **error.payload()}))
                return
            ch = self.channel(name)
            self.subs[ws].add(name)  # register first, then replay
            await ws.send(json.dumps({
                "type": "subscribed", "ref": ref, "channel": name, "epoch": ch.epoch,
                "from": offset(ch.epoch, after),
                "head": offset(ch.epoch, ch.head) if ch.head else "-1",
            }))
            for message in list(ch.messages[after:]):
                await ws.send(json.dumps({"type": "message", **message}))
        elif action == "unsubscribe":
            self.subs[ws].discard(name)
            await ws.send(json.dumps({"type": "unsubscribed", "ref": ref, "channel": name}))

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
                items = body if isinstance(body, list) else [body]
                acks = [await self.append(name, i["data"], i.get("id")) for i in items]
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
