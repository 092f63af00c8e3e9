"""API Gateway on one port: REST, WebSocket and the ``@connections`` Management API.

- ``/ws``: a WebSocket upgrade becomes a ``$connect`` event (query string and headers passed
  through; a non-2xx ``statusCode`` rejects the handshake with that status), every text frame
  a ``$default`` event, the close a ``$disconnect`` event.
- ``POST/GET/DELETE /@connections/{id}``: the Management API the production sender talks to
  (410 ``GoneException`` for an unknown or closed connection, 413 over 128 KB, DELETE closes
  the socket and fires ``$disconnect``).
- ``/`` describes the endpoints (or serves ``switchboard/web/index.html`` once it exists),
  ``/web/...`` serves ``switchboard/web/``, and every other path goes to the Chalice app.
- ``/_dev/connections`` lists sockets and ``/_dev/connections/{id}/drop`` makes the gateway
  lose one without ``$disconnect`` (API Gateway's ``$disconnect`` is best effort): fault
  injection for tests, not part of AWS. ``/_dev/limits`` and ``/_dev/stream-trigger`` show
  the limits enforced and the stream trigger's settings, counters and set-aside records.
- ``/@connections/*`` and ``/_dev/*`` answer only a loopback peer that names a loopback host
  (``Host: 127.0.0.1:…``, ``localhost``, ``[::1]``): with ``--host 0.0.0.0`` other machines
  cannot post to sockets or mint tokens, and a web page that rebinds its own DNS name to
  127.0.0.1 (DNS rebinding) still sends its own name as Host and is refused. ``/_dev/token``
  also refuses a browser request whose ``Origin`` is not this server's own.

Handlers block (boto3, moto), so they run on a thread pool, one invocation per event, like
Lambda. API Gateway may invoke the ``$default`` Lambda for several frames of one connection at
once, so frames of one connection are handled concurrently here too (at most
``FRAMES_IN_FLIGHT`` at a time, further frames wait): replies are matched by ``ref``, not by
order, exactly as they must be on AWS. ``$disconnect`` runs after the connection's in-flight
frames finish. Management API calls are answered on the event loop, never on the pool, so a
handler posting to its own socket cannot starve the pool.

AWS's limits (limits.py, docs/architecture.md) are enforced here unless ``--lenient``: every
invocation ends at its function's timeout from ``.chalice/config.json`` (REST: 502, or 504 at
API Gateway's 29 s integration timeout), the handshake is refused for a URL over 4,096
characters (414) or an authorizer result over 8 KB (500), and a connection is closed with
1001 after 10 idle minutes or 2 hours (inbound frame limits: protocol.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import events, rest, sse
from .events import LambdaContext, WsPeer
from .limits import (
    API_HANDLER,
    WS_AUTHORIZER,
    WS_CONNECT,
    WS_DISCONNECT,
    WS_MESSAGE,
    Limits,
)

Handler = Callable[[dict[str, Any], Any], Any]

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
FRAMES_IN_FLIGHT = 10
GOING_AWAY = 1001  # API Gateway's close code for the idle and duration limits
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those


@dataclass(frozen=True)
class WsHandlers:
    """The WebSocket Lambda entry points (``app.connect`` and friends)."""

    connect: Handler
    message: Handler
    disconnect: Handler
    # The $connect authorizer (app.ws_authorizer), run first as API Gateway does.
    authorizer: Handler | None = None


@dataclass
class Connection:
    peer: WsPeer
    websocket: WebSocket
    last_active_ms: int
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(FRAMES_IN_FLIGHT))
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    frames_in: int = 0
    frames_out: int = 0
    # Why the gateway closed it (Management API DELETE, drop, a time limit), if it did.
    closed_by_gateway: str | None = None
    closed_code: int | None = None
    lost: bool = False  # dropped by fault injection: no $disconnect


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(authority: str) -> str:
    """The host of a ``Host`` header or an origin's authority, without its port."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _is_loopback_name(authority: str) -> bool:
    name = _host_name(authority.strip().lower())
    return name == "localhost" or name.endswith(".localhost") or _is_loopback_address(name)


def _local_only_refusal(request: Request) -> Response | None:
    """None for a loopback peer naming a loopback host; else a 403 saying why.

    The peer check keeps other machines out (``--host 0.0.0.0``); the Host check keeps out a
    page whose DNS name was rebound to 127.0.0.1, whose requests come from loopback but
    still carry its own name."""
    peer = request.client.host if request.client else ""
    if not _is_loopback_address(peer):
        why = "this address is not the dev server's machine (loopback only)"
    elif not _is_loopback_name(request.headers.get("host", "")):
        why = "the Host header is not a loopback name (127.0.0.1, localhost or [::1])"
    else:
        return None
    log.warning("%s %s refused: %s", request.method, request.url.path, why)
    return JSONResponse(
        {"error": {"code": "forbidden", "detail": {},
                   "message": f"{request.url.path} is for this machine only: {why}."}},
        status_code=403,
    )


def _foreign_origin(request: Request) -> str | None:
    """The request's Origin when it is not this server's own (a browser page elsewhere)."""
    origin = request.headers.get("origin")
    if origin is None:
        return None  # not a browser (curl, the SDK, the CLI)
    parsed = urlsplit(origin)
    host = request.headers.get("host", "")
    if parsed.scheme in ("http", "https") and parsed.netloc.lower() == host.lower():
        return None
    return origin


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _aws_error(status: int, error_type: str, message: str) -> Response:
    return JSONResponse(
        {"message": message}, status_code=status, headers={"x-amzn-ErrorType": error_type}
    )


async def _unknown_resource(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/web/"):
        return JSONResponse({"message": "Not Found"}, status_code=404)  # a missing file
    return JSONResponse({"message": "Missing Authentication Token"}, status_code=403)


class LambdaTimeoutError(Exception):
    """The invocation ran past its function's timeout (Lambda: "Task timed out")."""


class IntegrationTimeoutError(Exception):
    """API Gateway stopped waiting for the integration (REST: 504)."""


RestResult = tuple[int, list[tuple[str, str]], bytes]


class Gateway:
    def __init__(
        self, rest_gateway: rest.DevRestGateway, ws: WsHandlers, executor: ThreadPoolExecutor,
        web_dir: Path = WEB_DIR,
        token_issuer: Callable[[], dict[str, Any]] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits if limits is not None else Limits(lenient=True)
        self.stopping = False  # set at shutdown: open SSE responses end
        # The stream pump's settings and counters (server.py sets it once the pump exists).
        self.trigger_status: Callable[[], dict[str, Any]] | None = None
        self.rest_gateway = rest_gateway
        self.token_issuer = token_issuer
        self.ws = ws
        self.executor = executor
        self.web_dir = web_dir
        self.connections: dict[str, Connection] = {}
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET"]),
                Mount("/web", app=StaticFiles(directory=web_dir, check_dir=False)),
                WebSocketRoute("/ws", self.websocket),
                Route(
                    "/@connections/{connection_id}", self.management,
                    methods=["GET", "POST", "DELETE"],
                ),
                Route("/_dev/connections", self.dev_connections, methods=["GET"]),
                Route("/_dev/token", self.dev_token, methods=["POST"]),
                Route("/_dev/limits", self.dev_limits, methods=["GET"]),
                Route("/_dev/stream-trigger", self.dev_stream_trigger, methods=["GET"]),
                Route(
                    "/_dev/connections/{connection_id}/drop", self.dev_drop, methods=["POST"]
                ),
                Route("/{path:path}", self.rest, methods=_HTTP_METHODS),
            ],
            # A path no route can take (a control character, say): answer like API Gateway
            # does for an unknown resource, in JSON, rather than Starlette's text page.
            exception_handlers={404: _unknown_resource, 405: _unknown_resource},
        )

    async def _invoke(self, handler: Handler, event: dict[str, Any], function: str) -> Any:
        """One Lambda invocation on the pool, ended at the function's timeout.

        Python cannot stop a thread: past the timeout the call goes on in the background, its
        result ignored, as a timed-out Lambda's work is lost.
        """
        config = self.limits.function(function)
        context = LambdaContext(f"switchboard-dev-{function}", timeout_s=config.timeout_s,
                                memory_mb=config.memory_mb)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, functools.partial(handler, event, context))
        return await self._within(call, function, self.limits.timeout_s(function))

    async def _within(self, call: asyncio.Future[Any], function: str,
                      timeout_s: float | None) -> Any:
        if timeout_s is None:
            return await call
        try:
            return await asyncio.wait_for(asyncio.shield(call), timeout_s)
        except TimeoutError:
            log.error("%s: Task timed out after %.2f seconds", function, timeout_s)
            raise LambdaTimeoutError(function) from None

    # -- REST ----------------------------------------------------------------------------

    async def rest(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():  # repeated headers joined, as HTTP allows
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        # The path as the client sent it: API Gateway REST does not URL-decode it.
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        query = request.url.query
        target = path + (f"?{query}" if query else "")
        status, out_headers, data = await self._rest_invoke(request.method, target, headers,
                                                             body)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.1f ms", request.method, target, status, elapsed)
        if status == 200 and sse.is_sse_request(request.method, query) and \
                sse.is_event_stream(out_headers):
            return self._sse_response(request.method, path, query, headers, out_headers, data)
        response = Response(content=data, status_code=status)
        for name, value in out_headers:
            if name.lower() != "content-length":
                response.headers.append(name, value)
        return response

    async def _rest_invoke(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> RestResult:
        """One REST invocation with API Gateway's and Lambda's time limits."""
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self.executor, rest.invoke, self.rest_gateway, method, target, headers,
            body or None, self.limits,
        )
        integration_s = self.limits.rest_timeout_s
        lambda_s = self.limits.timeout_s(API_HANDLER)
        try:
            if integration_s is not None and (lambda_s is None or integration_s < lambda_s):
                try:
                    return await asyncio.wait_for(asyncio.shield(call), integration_s)
                except TimeoutError:
                    raise IntegrationTimeoutError from None
            return await self._within(call, API_HANDLER, lambda_s)  # type: ignore[no-any-return]
        except IntegrationTimeoutError:
            # The Lambda goes on (until its own timeout); API Gateway has answered.
            log.error("%s %s: no response within API Gateway's %g s integration timeout: 504",
                      method, target.split("?")[0], integration_s)
            return 504, [("Content-Type", "application/json"),
                         ("x-amzn-ErrorType", "InternalServerErrorException")], \
                b'{"message": "Endpoint request timed out"}'
        except LambdaTimeoutError:
            return 502, [("Content-Type", "application/json"),
                         ("x-amzn-ErrorType", "InternalServerErrorException")], \
                rest.INTERNAL_ERROR
        except Exception:
            # API Gateway answers a crashed Lambda with a bare 502; the trace stays here.
            log.exception("%s %s: the handler raised", method, target.split("?")[0])
            return 502, [("x-amzn-ErrorType", "InternalServerErrorException")], \
                rest.INTERNAL_ERROR

    def _sse_response(
        self, method: str, path: str, query: str, headers: dict[str, str],
        out_headers: list[tuple[str, str]], first: bytes,
    ) -> Response:
        """Stream the first invocation's events, then successive invocations' (sse.py)."""

        async def chunks() -> Any:
            data, current = first, query
            while True:
                yield data
                control = sse.last_control(data)
                following = sse.next_query(current, control) if control else None
                if following is None or self.stopping:
                    return
                current = following
                status, next_headers, data = await self._rest_invoke(
                    method, f"{path}?{current}", headers, b""
                )
                if status != 200 or not sse.is_event_stream(next_headers):
                    log.info("SSE %s: invocation answered %d; the response ends", path, status)
                    return

        response = StreamingResponse(chunks(), status_code=200)
        for name, value in out_headers:
            if name.lower() != "content-length":
                response.headers.append(name, value)
        return response

    async def index(self, request: Request) -> Response:
        page = self.web_dir / "index.html"
        if page.is_file():
            return FileResponse(page)
        base = f"{request.url.scheme}://{request.url.netloc}"
        ws_base = base.replace("http", "ws", 1)
        return JSONResponse(
            {
                "service": "switchboard dev",
                "description": "Switchboard's real handlers over emulated AWS (moto).",
                "endpoints": {
                    "websocket": f"{ws_base}/ws",
                    "rest": f"{base}/v1 (channels, messages, Durable Streams, health)",
                    "health": f"{base}/v1/health",
                    "management_api": f"{base}/@connections/{{connectionId}}",
                    "static": f"{base}/web/",
                },
            }
        )

    # -- WebSocket -----------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        started = time.perf_counter()
        client = websocket.client
        source_ip = client.host if client else "127.0.0.1"
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1"))
                       for k, v in websocket.scope["headers"]]
        lower = {k.lower(): v for k, v in raw_headers}
        port = websocket.url.port or 80
        peer = WsPeer(
            connection_id=events.new_connection_id(),
            domain_name=lower.get("host", f"127.0.0.1:{port}"),
            source_ip=source_ip,
            user_agent=lower.get("user-agent"),
            connected_at_ms=_now_ms(),
            headers=[
                *raw_headers,
                ("X-Forwarded-For", source_ip),
                ("X-Forwarded-Port", str(port)),
                ("X-Forwarded-Proto", websocket.url.scheme.replace("ws", "http", 1)),
            ],
            query=parse_qsl(websocket.url.query, keep_blank_values=True),
        )
        url_limit = self.limits.ws_url_chars
        if url_limit is not None and (length := len(str(websocket.url))) > url_limit:
            log.warning("WS connect refused: the URL is %d characters, over API Gateway's "
                        "%d", length, url_limit)
            await websocket.send_denial_response(Response(b"", status_code=414))
            return
        status, subprotocol, denial = await self._connect(peer)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("WS connect %s %d %.1f ms", peer.connection_id, status, elapsed)
        if not 200 <= status < 300:
            await websocket.send_denial_response(Response(denial, status_code=status))
            return
        # The idle clock starts when the socket is open ($connect may have taken a while: a
        # cold handler, a busy machine); the 2-hour limit counts from the connect request.
        connection = Connection(peer, websocket, last_active_ms=_now_ms())
        await websocket.accept(subprotocol=subprotocol)
        self.connections[peer.connection_id] = connection
        watchdog = asyncio.create_task(self._watch(connection))
        code, reason = 1006, "Going away"
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = int(message.get("code") or 1005)
                    reason = str(message.get("reason") or "")
                    break
                text, data = message.get("text"), message.get("bytes")
                body: str | bytes = text if text is not None else bytes(data or b"")
                connection.last_active_ms = _now_ms()
                connection.frames_in += 1
                await connection.slots.acquire()
                task = asyncio.create_task(self._frame(connection, body))
                connection.inflight.add(task)
                task.add_done_callback(connection.inflight.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the socket went away under us: same as a close without a code
        finally:
            watchdog.cancel()
            self.connections.pop(peer.connection_id, None)
            if connection.closed_code is not None:
                code = connection.closed_code
            await self._disconnected(connection, code, reason)

    async def _watch(self, connection: Connection) -> None:
        """Close the connection at API Gateway's idle timeout or maximum duration."""
        idle_s, max_s = self.limits.ws_idle_s, self.limits.ws_max_s
        if idle_s is None and max_s is None:
            return
        while connection.peer.connection_id in self.connections:
            now = _now_ms()
            ends = []
            if max_s is not None:
                ends.append((connection.peer.connected_at_ms + max_s * 1000, "duration"))
            if idle_s is not None:
                ends.append((connection.last_active_ms + idle_s * 1000, "idle"))
            at, why = min(ends)
            if now >= at:
                log.info("WS %s closed by the gateway: %s limit (%s)",
                         connection.peer.connection_id, why,
                         f"{max_s:g} s" if why == "duration" else f"{idle_s:g} s idle")
                await self._close(connection, GOING_AWAY, "Going away")
                return
            await asyncio.sleep(min(1.0, (at - now) / 1000))

    async def _authorize(self, peer: WsPeer) -> int | None:
        """Run the authorizer: None to go on to $connect, else the status that refuses."""
        if self.ws.authorizer is None:
            return None
        try:
            policy = await self._invoke(
                self.ws.authorizer, events.authorizer_event(peer), WS_AUTHORIZER
            )
        except Exception as error:
            # API Gateway answers 401 when the authorizer raises "Unauthorized", else 500.
            status = 401 if str(error) == "Unauthorized" else 500
            log.info("WS connect %s refused by the authorizer (%d)", peer.connection_id, status)
            return status
        limit = self.limits.authorizer_context_bytes
        if limit is not None and (size := len(json.dumps(policy).encode())) > limit:
            # API Gateway cannot use the result: an authorizer configuration error (500).
            log.error("WS connect %s refused: the authorizer's result is %d bytes, over API "
                      "Gateway's %d-byte limit (500 on AWS)", peer.connection_id, size, limit)
            return 500
        statements = (policy.get("policyDocument") or {}).get("Statement") or [{}]
        if any(s.get("Effect") != "Allow" for s in statements):
            log.info("WS connect %s denied by the authorizer's policy", peer.connection_id)
            return 403
        peer.authorizer = {**(policy.get("context") or {}),
                           "principalId": policy.get("principalId")}
        return None

    async def _connect(self, peer: WsPeer) -> tuple[int, str | None, bytes]:
        refused = await self._authorize(peer)
        if refused is not None:
            return refused, None, b""
        try:
            result = await self._invoke(self.ws.connect, events.connect_event(peer), WS_CONNECT)
        except Exception:
            log.exception("WS connect %s: the $connect handler raised", peer.connection_id)
            return 500, None, b""
        if not isinstance(result, dict):
            return 200, None, b""
        status = int(result.get("statusCode", 200))
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body")
        denial = body.encode() if isinstance(body, str) else bytes(body or b"")
        return status, headers.get("sec-websocket-protocol"), denial

    async def _frame(self, connection: Connection, body: str | bytes) -> None:
        try:
            await self._invoke(
                self.ws.message, events.message_event(connection.peer, body), WS_MESSAGE
            )
        except LambdaTimeoutError:
            pass  # logged; a timed-out $default Lambda sends the client nothing either
        except Exception:
            # A failed $default Lambda sends the client nothing on AWS either.
            log.exception("WS frame on %s: the $default handler raised",
                          connection.peer.connection_id)
        finally:
            connection.slots.release()

    async def _disconnected(self, connection: Connection, code: int, reason: str) -> None:
        peer = connection.peer
        if connection.inflight:
            await asyncio.wait(set(connection.inflight), timeout=60)
        duration = (_now_ms() - peer.connected_at_ms) / 1000
        if connection.lost:
            log.info("WS lost %s after %.1f s (no $disconnect, as if API Gateway lost it)",
                     peer.connection_id, duration)
            return
        if connection.closed_by_gateway is not None:
            reason = connection.closed_by_gateway
        elif not reason:
            reason = f"Client-side close frame status code '{code}'"
        try:
            await self._invoke(
                self.ws.disconnect, events.disconnect_event(peer, code, reason), WS_DISCONNECT
            )
        except Exception:
            log.exception("WS disconnect %s: the $disconnect handler raised", peer.connection_id)
        log.info("WS disconnect %s %d after %.1f s (%d frames in, %d out)",
                 peer.connection_id, code, duration, connection.frames_in, connection.frames_out)

    # -- Management API ------------------------------------------------------------------

    async def management(self, request: Request) -> Response:
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        connection_id = request.path_params["connection_id"]
        connection = self.connections.get(connection_id)
        if connection is None:
            return self._gone(request, connection_id)
        if request.method == "GET":
            identity: dict[str, Any] = {"sourceIp": connection.peer.source_ip}
            if connection.peer.user_agent is not None:
                identity["userAgent"] = connection.peer.user_agent
            return JSONResponse(
                {
                    "connectedAt": _iso(connection.peer.connected_at_ms),
                    "identity": identity,
                    "lastActiveAt": _iso(connection.last_active_ms),
                }
            )
        if request.method == "DELETE":
            await self._close(connection, 1000, "Connection closed by the Management API")
            return Response(status_code=204)
        data = await request.body()
        limit = self.limits.ws_message_bytes
        if limit is not None and len(data) > limit:
            log.warning("@connections POST %s 413: %d bytes is over the %d-byte limit",
                        connection_id, len(data), limit)
            return _aws_error(413, "PayloadTooLargeException", "Request entity too large")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            if text is not None:
                await connection.websocket.send_text(text)
            else:
                await connection.websocket.send_bytes(data)
        except Exception:  # closing or closed under us: API Gateway says Gone
            self.connections.pop(connection_id, None)
            return self._gone(request, connection_id)
        connection.frames_out += 1
        connection.last_active_ms = _now_ms()
        return Response(status_code=200)

    def _gone(self, request: Request, connection_id: str) -> Response:
        log.info("@connections %s %s 410 GoneException", request.method, connection_id)
        return _aws_error(410, "GoneException", f"Connection {connection_id} is gone")

    async def _close(self, connection: Connection, code: int, why: str) -> None:
        self.connections.pop(connection.peer.connection_id, None)
        connection.closed_by_gateway = why
        connection.closed_code = code
        with contextlib.suppress(Exception):  # already closing: nothing left to do
            await connection.websocket.close(code, why)

    # -- fault injection -----------------------------------------------------------------

    async def dev_token(self, request: Request) -> Response:
        """A token for the console (pages this server serves): the dev server's stand-in for
        the backend that issues tokens in production. Loopback callers naming a loopback
        host only, and from a browser only pages of this very origin."""
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        if (origin := _foreign_origin(request)) is not None:
            log.warning("POST /_dev/token refused: Origin %s is not this server", origin[:100])
            return JSONResponse(
                {"error": {"code": "forbidden", "detail": {"origin": origin[:100]},
                           "message": "Dev tokens are for pages served by this dev server "
                                      "(the console); a page elsewhere gets its tokens from "
                                      "its own backend (POST /v1/tokens with an API key)."}},
                status_code=403,
            )
        if self.token_issuer is None:
            return JSONResponse({"token": None, "auth": False})
        issued = await asyncio.get_running_loop().run_in_executor(
            self.executor, self.token_issuer
        )
        return JSONResponse({**issued, "auth": True}, headers={"Cache-Control": "no-store"})

    async def dev_limits(self, request: Request) -> Response:
        """The limits this gateway enforces (limits.py): what a test may rely on."""
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        return JSONResponse(dataclasses.asdict(self.limits))

    async def dev_stream_trigger(self, request: Request) -> Response:
        """The stream trigger's settings (as deployed), counters and set-aside records."""
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        if self.trigger_status is None:
            return JSONResponse({"error": "no stream trigger"}, status_code=404)
        return JSONResponse(self.trigger_status())

    async def dev_connections(self, request: Request) -> Response:
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        return JSONResponse(
            [
                {
                    "connectionId": c.peer.connection_id,
                    "connectedAt": c.peer.connected_at_ms,
                    "sourceIp": c.peer.source_ip,
                    "query": {k: "[redacted]" if k == "token" else v
                              for k, v in c.peer.query},
                    "framesIn": c.frames_in,
                    "framesOut": c.frames_out,
                }
                for c in self.connections.values()
            ]
        )

    async def dev_drop(self, request: Request) -> Response:
        if (refused := _local_only_refusal(request)) is not None:
            return refused
        connection = self.connections.get(request.path_params["connection_id"])
        if connection is None:
            return JSONResponse({"error": "no such connection"}, status_code=404)
        connection.lost = True
        await self._close(connection, 1011, "Lost by the gateway")
        return Response(status_code=204)
