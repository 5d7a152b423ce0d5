"""One connection's socket, as the hub's main flow sees it: a ``Peer``, whichever server serves it.

- ``RawPeer``: the socket is served by ``realtime.uvicorn_ws.HubWebSocketProtocol`` (``livecart serve``).
  The connection's ``write`` is the transport's own (a room event costs one C call per viewer); the protocol
  reports a viewer too slow to keep up and a socket closing; once in sync, the connection is handed over
  from ASGI to callbacks and the serving task ends.
- ``AsgiPeer``: any other ASGI server. Each frame is one ASGI send (slower, the same frames); the serving
  task reads the client's messages until it leaves. Too-slow viewers are not detected.

``connect`` picks the one that fits and wires the connection to it; from then on the main flow only calls
the ``Peer`` interface.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketState

from realtime.client_frames import Chat
from realtime.hub import Connection
from realtime.uvicorn_ws import EXTENSION, RawSocket

#: a client's message (text or bytes), called in the event loop
OnMessage = Callable[[str | bytes], None]


class Peer(abc.ABC):
    """The socket side of one connection, and its chat state."""

    def __init__(self, conn: Connection, chat: Chat) -> None:
        self.conn = conn
        self.chat = chat

    @abc.abstractmethod
    def open(self) -> bool:
        """Whether frames may still be written (the client has not left, no close was begun)."""

    @abc.abstractmethod
    def close(self, code: int, reason: str) -> None:
        """Start closing the socket with ``code``."""

    @abc.abstractmethod
    async def hand_over(self, on_message: OnMessage) -> bool:
        """The connection is in sync: the client's messages go to ``on_message`` from now on. ``True``:
        the socket was handed over and lives on after this returns (its end is reported as ``on_gone``);
        ``False``: this returned when the client left."""


def connect(
    websocket: WebSocket,
    conn: Connection,
    chat: Chat,
    *,
    max_backlog_bytes: int,
    close_timeout: float,
    on_too_slow: Callable[[], None],
    on_gone: Callable[[], None],
) -> Peer:
    """The peer of an accepted websocket, with ``conn.write`` set to write to it. ``on_too_slow``: more than
    ``max_backlog_bytes`` wait to be sent to it; ``on_gone``: the socket is closing or closed (either may
    come at any time from now on, and more than once)."""
    raw = websocket.scope.get("extensions", {}).get(EXTENSION)
    if isinstance(raw, RawSocket):
        return RawPeer(conn, chat, raw, max_backlog_bytes, close_timeout, on_too_slow, on_gone)
    return AsgiPeer(conn, chat, websocket)


class RawPeer(Peer):
    def __init__(
        self,
        conn: Connection,
        chat: Chat,
        raw: RawSocket,
        max_backlog_bytes: int,
        close_timeout: float,
        on_too_slow: Callable[[], None],
        on_gone: Callable[[], None],
    ) -> None:
        super().__init__(conn, chat)
        self.raw = raw
        self.close_timeout = close_timeout
        conn.write = raw.write
        raw.on_too_slow = on_too_slow
        raw.on_closing = on_gone
        if raw.open():  # else the client left while it was being admitted (the hooks came late)
            raw.limit_backlog(max_backlog_bytes)

    def open(self) -> bool:
        return self.raw.open()

    def close(self, code: int, reason: str) -> None:
        self.raw.close(code, reason)
        # A viewer that does not even take its close frame is dropped.
        asyncio.get_running_loop().call_later(self.close_timeout, self.raw.abort)

    async def hand_over(self, on_message: OnMessage) -> bool:
        # From here on the socket is served by callbacks, and the serving task ends.
        self.raw.detach(on_message)
        return True


class AsgiPeer(Peer):
    def __init__(self, conn: Connection, chat: Chat, websocket: WebSocket) -> None:
        super().__init__(conn, chat)
        self.websocket = websocket
        self._closing: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        conn.write = self._write

    def _write(self, frame: bytes) -> None:
        task = asyncio.ensure_future(_send_text(self.websocket, _payload(frame)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def open(self) -> bool:
        ws = self.websocket
        return (
            self._closing is None
            and ws.client_state is WebSocketState.CONNECTED
            and ws.application_state is WebSocketState.CONNECTED
        )

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(_close(self.websocket, code, reason))

    async def hand_over(self, on_message: OnMessage) -> bool:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return False
            on_message(message.get("text") or message.get("bytes") or b"")


def _payload(frame: bytes) -> bytes:
    """The payload of one server frame built by ``realtime.frames.text_frame``."""
    n = frame[1] & 0x7F
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0) :]


async def _send_text(websocket: WebSocket, payload: bytes) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(payload.decode())


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)
