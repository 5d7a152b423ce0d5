"""uvicorn's websocket protocol, plus a way for the hub to write pre-built frames straight to the socket.

ASGI sends one message per connection (``websocket.send``: encode, frame, write). The hub builds each
frame once and writes the same bytes to every viewer, as ``websockets.broadcast()`` does; this protocol
puts a ``RawSocket`` for that in the scope's extensions (``livecart.raw_socket``). Everything else (the
handshake, pings and dead-peer detection, close, the frame size cap on what clients send) is uvicorn's.
Per-message compression is off on these sockets (``ws_per_message_deflate=False``): a frame written raw is
then valid as it is.

Select it with ``uvicorn.Config(ws=WS_PROTOCOL)``; the endpoint falls back to ASGI sends without it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

WS_PROTOCOL = "realtime.uvicorn_ws:HubWebSocketProtocol"
EXTENSION = "livecart.raw_socket"


class RawSocket:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: HubWebSocketProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        """Write one complete server frame; ``False`` if the socket is closing (nothing was written)."""
        p = self._protocol
        if not p.handshake_complete or p.close_sent or p.transport.is_closing():
            return False
        p.transport.write(frame)
        return True

    def send(self, frame: bytes, max_backlog: int) -> bool:
        """Write one complete frame (nothing if the socket is closing); ``True`` when more than
        ``max_backlog`` bytes now wait to be sent: the viewer is not keeping up."""
        p = self._protocol
        transport = p.transport
        if p.close_sent or transport.is_closing():
            return False
        transport.write(frame)
        return transport.get_write_buffer_size() > max_backlog

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel: how far behind this viewer is."""
        return self._protocol.transport.get_write_buffer_size()


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        extensions: dict[str, Any] = self.scope["extensions"]
        extensions[EXTENSION] = RawSocket(self)
