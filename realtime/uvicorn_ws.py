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

Once a viewer is in sync, its peer (``realtime.sockets``) ``detach``es it from ASGI: the ASGI app returns
(its task, the middleware frames, the scope and the handshake objects are freed) while the socket stays
open, and the client's messages go to a callback. An idle viewer then costs a protocol object and its
buffers, not a parked coroutine stack: that is what keeps a 5,000-viewer room within its memory budget.

Select it with ``uvicorn.Config(ws=WS_PROTOCOL)``; without it the hub falls back to ASGI sends
(``realtime.sockets.AsgiPeer``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
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

    def detach(self, on_message: Callable[[str | bytes], None]) -> None:
        """Hand the connection over from ASGI: the client's messages now go to ``on_message`` (those that
        came while it was still on ASGI first, in order), and the app may return without closing it."""
        p = self._protocol
        p.on_message = on_message
        while not p.queue.empty():
            message = p.queue.get_nowait()
            if message["type"] == "websocket.receive":
                on_message(message.get("text") or message.get("bytes") or b"")
        if p.read_paused:
            p.read_paused = False
            p.transport.resume_reading()
        p.scope = None  # type: ignore[assignment]  # nothing reads these after the handshake
        p.request = None  # type: ignore[assignment]
        p.response = None  # type: ignore[assignment]

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (as an ASGI ``websocket.close`` does); the peer has ``close_timeout``
        to answer before the transport is closed."""
        p = self._protocol
        if p.close_sent or p.transport.is_closing():
            return
        p.on_closing_now()
        p.conn.send_close(code, reason)
        p.transport.write(b"".join(p.conn.data_to_send()))
        p.close_sent = True
        if p.read_paused:
            p.read_paused = False
            p.transport.resume_reading()
        p.close_timer = p.loop.call_later(p.close_timeout, p.transport.close)


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    raw: RawSocket | None = None
    closing = False
    #: set by ``RawSocket.detach``: the client's messages go here, not to the ASGI app
    on_message: Callable[[str | bytes], None] | None = None

    def on_closing_now(self) -> None:
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
        self.on_closing_now()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self.on_closing_now()
        super().shutdown()

    def handle_close(self, event: Frame) -> None:
        self.on_closing_now()
        super().handle_close(event)

    def keepalive_timeout(self) -> None:
        self.on_closing_now()
        super().keepalive_timeout()

    def handle_parser_exception(self) -> None:  # pragma: no cover - a protocol error from the client
        self.on_closing_now()
        super().handle_parser_exception()

    def send_receive_event_to_app(self) -> None:
        if self.on_message is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "bytes":
            self.on_message(bytes(data))
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self.conn.send_close(1007)
            self.handle_parser_exception()
            return
        self.on_message(text)

    async def run_asgi(self) -> None:
        """uvicorn's, except that a detached connection stays open when the app returns."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None and self.on_message is None:
            self.transport.close()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close":
            self.on_closing_now()
        await super().send(message)
