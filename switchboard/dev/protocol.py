"""uvicorn's WebSocket protocol with API Gateway's outbound frame limit.

API Gateway sends a WebSocket message larger than 32 KB as several frames of at most 32 KB
(a first TEXT/BINARY frame, then CONTINUATION frames). ASGI has no notion of frames, so the
split happens here, in the protocol class uvicorn instantiates per connection
(``uvicorn.Config(ws=FragmentingWebSocketProtocol)``). Everything else is uvicorn's
sans-I/O implementation unchanged; the end-to-end tests check every frame's size. Its
logger skips one false alarm: the error uvicorn logs after a refused handshake.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

# API Gateway's WebSocket frame limit; messages are limited to 128 KB (the Management API
# answers 413 above that, see gateway.py).
MAX_FRAME_BYTES = 32 * 1024


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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _DenialAwareLog(self, self.logger)  # type: ignore[assignment]

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
