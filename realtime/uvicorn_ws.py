"""uvicorn's websocket protocol, plus a way for the hub to write pre-built frames straight to the socket.

ASGI sends one message per connection (``websocket.send``: encode, frame, write). The hub builds each
frame once and writes the same bytes to every viewer, as ``websockets.broadcast()`` does; this protocol
puts a ``RawSocket`` for that in the scope's extensions (``livecart.raw_socket``). Everything else (the
handshake, pings and dead-peer detection, close, the frame size cap on what clients send) is uvicorn's.
Per-message compression is off on these sockets (``ws_per_message_deflate=False``): a frame written raw is
then valid as it is.

``RawSocket.write`` is the transport's own ``write``: a room event costs the hub one C call per viewer. So
that nothing is written after a close frame, the protocol tells the adapter (``on_closing``) before it
sends or answers a close, times out a ping, shuts down or loses the connection; and it reports a viewer
whose unsent bytes pass the high-water mark set by ``limit_backlog`` (``on_too_slow``), instead of the hub
asking every socket after every write.

Select it with ``uvicorn.Config(ws=WS_PROTOCOL)``; the endpoint falls back to ASGI sends without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request

WS_PROTOCOL = "realtime.uvicorn_ws:HubWebSocketProtocol"
EXTENSION = "livecart.raw_socket"


def _nothing() -> None:
    return None


class RawSocket:
    __slots__ = ("_protocol", "on_closing", "on_too_slow", "write")

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol
        #: writes one complete server frame (the transport's own method)
        self.write: Callable[[bytes], None] = protocol.transport.write
        self.on_closing: Callable[[], None] = _nothing
        self.on_too_slow: Callable[[], None] = _nothing

    def open(self) -> bool:
        """Whether frames may still be written (no close sent or received, the transport not closing)."""
        p = self._protocol
        return not (p.close_sent or p.closing or p.transport.is_closing())

    def limit_backlog(self, max_bytes: int) -> None:
        """Report the viewer as too slow once more than ``max_bytes`` wait to be sent."""
        self._protocol.transport.set_write_buffer_limits(high=max_bytes, low=max_bytes // 4)

    def abort(self) -> None:
        """Drop the connection now (a viewer that does not even take its close frame)."""
        if not self._protocol.disconnected:
            self._protocol.transport.abort()

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel: how far behind this viewer is."""
        return self._protocol.transport.get_write_buffer_size()


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    raw: RawSocket | None = None
    closing = False

    def _closing(self) -> None:
        if not self.closing:
            self.closing = True
            if self.raw is not None:
                self.raw.on_closing()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        self.raw = RawSocket(self)
        extensions: dict[str, Any] = self.scope["extensions"]
        extensions[EXTENSION] = self.raw

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.raw is not None and not self.closing:
            self.raw.on_too_slow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._closing()
        super().shutdown()

    def handle_close(self, event: Frame) -> None:
        self._closing()
        super().handle_close(event)

    def keepalive_timeout(self) -> None:
        self._closing()
        super().keepalive_timeout()

    def handle_parser_exception(self) -> None:  # pragma: no cover - a protocol error from the client
        self._closing()
        super().handle_parser_exception()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close":
            self._closing()
        await super().send(message)
