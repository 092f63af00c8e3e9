"""uvicorn's WebSocket protocol with API Gateway's frame limits, both ways.

- **Outbound.** API Gateway sends a WebSocket message larger than 32 KB as several frames of
  at most 32 KB (a first TEXT/BINARY frame, then CONTINUATION frames). ASGI has no notion of
  frames, so the split happens here, in the protocol class uvicorn instantiates per
  connection (``uvicorn.Config(ws=protocol_class(...))``).
- **Inbound.** API Gateway closes the connection with 1009 ("Message too big") when a client
  sends a frame over 32 KB, or a message (the frames of one message reassembled) over 128 KB:
  clients must fragment. Fragmented messages within both limits are reassembled and handed to
  the app as one message, as API Gateway hands one ``$default`` event per message.

Everything else is uvicorn's sans-I/O implementation unchanged; the end-to-end tests check
every frame's size. Its logger skips one false alarm: the error uvicorn logs after a refused
handshake.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

# API Gateway's WebSocket frame limit; messages are limited to 128 KB (the Management API
# answers 413 above that, see gateway.py).
MAX_FRAME_BYTES = 32 * 1024
TOO_BIG = 1009
TOO_BIG_REASON = "Message too big"  # what API Gateway sends with 1009
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


def fragments(data: bytes, size: int = MAX_FRAME_BYTES) -> list[bytes]:
    """``data`` in pieces of at most ``size`` bytes (one empty piece for empty data).

    Text may be cut inside a UTF-8 sequence: RFC 6455 validates the reassembled message.
    """
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


_NO_HANDSHAKE = "ASGI callable returned without completing handshake."


class _DenialAwareLog:
    """uvicorn's logger for one connection, minus the error uvicorn logs after the app
    refused the handshake with an HTTP response (a refusal is a complete answer: the
    gateway's 401/403 for bad credentials, not a bug)."""

    def __init__(self, protocol: WebSocketsSansIOProtocol, logger: logging.Logger) -> None:
        self._protocol = protocol
        self._logger = logger

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg == _NO_HANDSHAKE and self._protocol.initial_response is not None:
            return
        self._logger.error(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class FragmentingWebSocketProtocol(WebSocketsSansIOProtocol):
    """Fragments outbound messages; refuses inbound frames and messages over the limits."""

    # None: not enforced (switchboard dev --lenient). The message limit is also given to
    # uvicorn (ws_max_size), which refuses a single frame over it before reading it.
    max_inbound_frame_bytes: int | None = MAX_FRAME_BYTES
    max_inbound_message_bytes: int | None = 128 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbound_message_bytes = 0
        self.logger = _DenialAwareLog(self, self.logger)  # type: ignore[assignment]

    def handle_events(self) -> None:
        for event in self.conn.events_received():
            if isinstance(event, Frame) and event.opcode in _DATA and self._over_limit(event):
                self._refuse_too_big()
                return
            self._dispatch(event)

    def _over_limit(self, frame: Frame) -> bool:
        size = len(frame.data)
        if frame.opcode != Opcode.CONT:
            self._inbound_message_bytes = 0
        self._inbound_message_bytes += size
        frame_limit, message_limit = self.max_inbound_frame_bytes, self.max_inbound_message_bytes
        return (frame_limit is not None and size > frame_limit) or (
            message_limit is not None and self._inbound_message_bytes > message_limit
        )

    def _refuse_too_big(self) -> None:
        """Close with 1009 as API Gateway does; the app sees a disconnect with that code."""
        self.conn.fail(TOO_BIG, TOO_BIG_REASON)
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": TOO_BIG, "reason": TOO_BIG_REASON}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def _dispatch(self, event: Request | Response | Frame) -> None:
        """uvicorn's handle_events body for one event."""
        if isinstance(event, Request):
            self.handle_connect(event)
            return
        if not isinstance(event, Frame):
            return
        if event.opcode == Opcode.CONT:
            self.handle_cont(event)
        elif event.opcode == Opcode.TEXT:
            self.handle_text(event)
        elif event.opcode == Opcode.BINARY:
            self.handle_bytes(event)
        elif event.opcode == Opcode.PING:
            self.handle_ping()
        elif event.opcode == Opcode.PONG:
            self.handle_pong(event)
        elif event.opcode == Opcode.CLOSE:
            self.handle_close(event)

    async def send(self, message: Any) -> None:
        if (
            message["type"] != "websocket.send"
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
        ):
            await super().send(message)
            return
        text = message.get("text")
        data: bytes = text.encode() if text is not None else bytes(message.get("bytes") or b"")
        if len(data) <= MAX_FRAME_BYTES:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        pieces = fragments(data)
        try:
            for index, piece in enumerate(pieces):
                fin = index == len(pieces) - 1
                if index:
                    self.conn.send_continuation(piece, fin=fin)
                elif text is not None:
                    self.conn.send_text(piece, fin=fin)
                else:
                    self.conn.send_binary(piece, fin=fin)
            self.transport.write(b"".join(self.conn.data_to_send()))
        except InvalidState:
            raise ClientDisconnected() from None


def protocol_class(
    frame_bytes: int | None, message_bytes: int | None
) -> type[FragmentingWebSocketProtocol]:
    """The protocol class uvicorn should instantiate, with these inbound limits."""
    return type(
        "LimitedWebSocketProtocol",
        (FragmentingWebSocketProtocol,),
        {"max_inbound_frame_bytes": frame_bytes, "max_inbound_message_bytes": message_bytes},
    )
