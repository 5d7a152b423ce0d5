"""The socket adapter around the pure ``Hub``: ``/ws/rooms/{room}``, the Redis reader, stock and presence.

A connection: Origin checked before the upgrade; the token checked before anything is sent (4401, 4403,
4404); joined to the hub as syncing; the room's stream watched; then either the events after ``since`` (same
epoch, still in the stream) or a snapshot at the current ``seq``; then the frames held meanwhile; then live.

Stock counters coalesce per room, not per viewer (``realtime.stock``): at most 10 stock frames per second
per card, and always the final value. Presence is reported every second by each process; ``viewers``
events go out at most once a second, and only when the count changed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import base.http  # noqa: F401  # registers the ``{x:id}`` path convertor used below
from base.clock import Clock
from base.db import insert_ignoring_conflicts
from identity.errors import InvalidToken
from identity.tokens import HostIdentity, TokenSigner, ViewerIdentity
from live.models import Room, Viewer
from live.views import public_room
from realtime.broker_redis import RedisBroker, dumps, room_keys, text_of
from realtime.chat import ChatLimiter, chat_text
from realtime.errors import CloseCode, RealtimeError
from realtime.frames import text_frame
from realtime.hub import Connection, Hub, State, write_all
from realtime.models import RoomViewer, ViewerSample
from realtime.publisher import Publisher
from realtime.uvicorn_ws import EXTENSION, RawSocket

log = logging.getLogger("livecart.realtime")


class Realtime:
    """Everything realtime of one process."""

    def __init__(
        self,
        *,
        redis: Redis,
        broker: RedisBroker,
        publisher: Publisher,
        sessions: async_sessionmaker[AsyncSession],
        signer: TokenSigner,
        clock: Clock,
        snapshot: Callable[[str, dict[str, int]], Awaitable[list[dict[str, Any]]]],
        allowed_origins: list[str],
        presence_interval: float = 1.0,
        max_backlog_bytes: int = 1 << 20,
        close_timeout: float = 5.0,
        snapshot_max_age: float = 1.0,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.signer = signer
        self.clock = clock
        #: (room id, the stock last published per card) -> the room's cards as JSON objects
        self.snapshot_cards = snapshot
        self.allowed_origins = allowed_origins
        self.hub = Hub()
        self.max_backlog_bytes = max_backlog_bytes
        self.close_timeout = close_timeout
        self.broker = broker
        self.publisher = publisher
        self.presence_interval = presence_interval
        self._peers: dict[int, _Peer] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._process = f"{os.getpid()}-{id(self):x}"
        self.snapshot_max_age = snapshot_max_age
        self._snapshots: dict[str, tuple[tuple[str, int, str], float, asyncio.Future[bytes]]] = {}
        self._room_hosts: dict[str, str] = {}  # room id -> its host (rooms are never moved or deleted)
        self._recorded: dict[str, set[str]] = {}  # room id -> viewers already in ``room_viewers``
        self._last_sample: dict[str, int] = {}  # room id -> the count last written to ``room_viewer_samples``
        self._presence = redis.register_script(
            resources.files("realtime").joinpath("lua/presence.lua").read_text()
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.broker.start(self._on_frame, self._on_gap)
        self.publisher.stock.start()
        self._tasks = [
            asyncio.create_task(self._every(self.presence_interval, self._report_presence), name="presence"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.publisher.stock.stop()
        await self.broker.stop()

    async def _every(self, seconds: float, step: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: try again next tick
                log.warning("%s failed: %s", getattr(step, "__name__", step), exc)

    # -- presence (any process) -------------------------------------------------------------------------

    async def _report_presence(self) -> None:
        now = self.clock.now_ms()
        fresh = int(self.presence_interval * 2500)
        for room_id in self.hub.rooms():
            viewers = self.hub.viewers(room_id)
            sockets = len(self.hub.connections(room_id))
            viewers_now, connections_now = (
                int(n)
                for n in await self._presence(
                    keys=presence_keys(room_id), args=[now, fresh, self._process, sockets, *viewers]
                )
            )
            await self._record(room_id, viewers, viewers_now, connections_now, now)
            await self.broker.publish(
                room_id,
                "viewers",
                {"count": viewers_now},
                now_ms=now,
                gate="viewers",
                min_interval_ms=int(self.presence_interval * 1000),
                value=str(viewers_now),
            )

    async def _record(
        self, room_id: str, viewers: set[str], viewers_now: int, sockets: int, now: int
    ) -> None:
        """Into SQL: the viewers seen here for the first time, and the room's count when it changed."""
        recorded = self._recorded.setdefault(room_id, set())
        new = viewers - recorded
        sample = viewers_now != self._last_sample.get(room_id)
        if not new and not sample:
            return
        async with self.sessions() as session, session.begin():
            if new:
                await session.execute(
                    insert_ignoring_conflicts(session, RoomViewer),
                    [{"room_id": room_id, "viewer_id": v, "first_seen_ms": now} for v in sorted(new)],
                )
            if sample:
                await session.execute(
                    insert_ignoring_conflicts(session, ViewerSample).values(
                        room_id=room_id, at_ms=now, viewers=viewers_now, connections=sockets
                    )
                )
        recorded |= new
        self._last_sample[room_id] = viewers_now

    async def presence(self, room_id: str) -> dict[str, int]:
        """The room's live numbers, across processes (unique viewers and the peak are in SQL)."""
        k = presence_keys(room_id)
        now = self.clock.now_ms()
        fresh = int(self.presence_interval * 2500)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(k[0], now - fresh, "+inf")
            pipe.hgetall(k[1])
            viewers, conns = await pipe.execute()
        sockets = 0
        for value in conns.values():
            n, _, at = value.decode().partition(":")
            if int(at) > now - fresh:
                sockets += int(n)
        return {"viewers_now": int(viewers), "connections_now": sockets}

    # -- fan-out (this process) --------------------------------------------------------------------------

    def _on_frame(self, room_id: str, seq: int, payload: bytes, to: str | None) -> None:
        frame = text_frame(payload)
        delivery = (
            self.hub.personal(room_id, to, frame) if to is not None else self.hub.event(room_id, seq, frame)
        )
        for conn in delivery.too_slow:
            self._close(conn, CloseCode.TOO_SLOW, "too slow to keep up")
        for i in write_all(delivery.writers, frame):  # a socket that went away between two checks
            self.hub.leave(delivery.to[i])

    def _on_gap(self, room_id: str) -> None:
        """This process lost events of the room (it fell behind the stream's history): its viewers there
        could not be told what they missed, so they are closed as too slow; they reconnect to a snapshot."""
        log.warning(
            "room %s: events were trimmed before this process read them; resyncing its viewers", room_id
        )
        for conn in self.hub.connections(room_id):
            self._close(conn, CloseCode.TOO_SLOW, "fell behind the room's events")

    def _close(self, conn: Connection, code: CloseCode, reason: str) -> None:
        """Close one connection with ``code``: it gets nothing more from now on."""
        self.hub.leave(conn)
        peer = self._peers.get(conn.id)
        if peer is not None:
            peer.close(code, reason)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self._background.discard)
        return task

    # -- one connection ----------------------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if "*" not in self.allowed_origins and origin not in self.allowed_origins:
            await websocket.close(code=1008)  # before the upgrade: the client gets 403, nothing else
            return
        await websocket.accept()
        try:
            conn = await self._admit(websocket)
        except RealtimeError as exc:
            await websocket.close(code=exc.code, reason=exc.reason)
            return
        raw = websocket.scope.get("extensions", {}).get(EXTENSION)
        peer = (
            _RawPeer(conn, raw, self.close_timeout)
            if isinstance(raw, RawSocket)
            else _AsgiPeer(conn, websocket)
        )
        self._peers[conn.id] = peer
        detached = False
        try:  # from here on, however it ends, the connection leaves the hub unless it was detached
            if isinstance(raw, RawSocket):
                conn.write = raw.write
                raw.on_too_slow = lambda: self._close(conn, CloseCode.TOO_SLOW, "too slow to keep up")
                raw.on_closing = lambda: self._gone(conn)
                if not raw.open():  # the client left while it was being admitted (the hooks came late)
                    return
                raw.limit_backlog(self.max_backlog_bytes)
            else:  # not served by HubWebSocketProtocol: one ASGI send per frame (slower, same frames)
                conn.write = lambda frame: self._spawn(_send_text(websocket, _payload(frame)))
            await self._sync(websocket, conn)
            if isinstance(raw, RawSocket):
                # In sync: from here on the socket is served by callbacks, and this task ends.
                raw.detach(lambda message: self._on_message(conn, message))
                detached = True
                return
            await self._receive(websocket, conn)
        except RealtimeError as exc:
            peer.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if not detached:
                self._gone(conn)

    def _gone(self, conn: Connection) -> None:
        """The connection is closing or closed (idempotent): forget it."""
        self.hub.leave(conn)
        self._peers.pop(conn.id, None)
        if not self.hub.connections(conn.room_id):
            self.broker.unwatch(conn.room_id)
            self._recorded.pop(conn.room_id, None)
            self._snapshots.pop(conn.room_id, None)

    def _on_message(self, conn: Connection, message: str | bytes) -> None:
        """A client frame on a detached connection (called by the protocol, in the event loop)."""
        peer = self._peers.get(conn.id)
        if peer is None or conn.state is State.CLOSED:
            return
        try:
            text = chat_text(message, conn.room_id)
            allowed = peer.chat.allow(time.monotonic())
        except RealtimeError as exc:
            self._close(conn, exc.code, exc.reason)
            return
        if not allowed:
            conn.write(RATE_LIMITED_FRAME)
            return
        peer.chat_sent = self._spawn(self._publish_chat(peer, text, after=peer.chat_sent))

    async def _admit(self, websocket: WebSocket) -> Connection:
        """Token and room checked; no SQL once the room is known (a show's start is a connect storm)."""
        token = websocket.query_params.get("token") or ""
        try:
            who = self.signer.verify(token)
        except InvalidToken:
            raise RealtimeError(CloseCode.UNAUTHORIZED, "bad token") from None
        room_id = websocket.path_params["room"]
        host_id = self._room_hosts.get(room_id)
        if host_id is None:
            async with self.sessions() as session:
                room = await session.get(Room, room_id)
            if room is None:
                raise RealtimeError(CloseCode.NO_ROOM, "no such room")
            host_id = self._room_hosts[room_id] = room.host_id  # a room never changes hands
        if isinstance(who, HostIdentity):
            if host_id != who.host_id:
                raise RealtimeError(CloseCode.FORBIDDEN, "not your room")
            return self.hub.join(room_id, None)
        assert isinstance(who, ViewerIdentity)
        if who.room_id != room_id:
            raise RealtimeError(CloseCode.FORBIDDEN, "not a viewer of this room")
        return self.hub.join(room_id, who.viewer_id)

    async def _sync(self, websocket: WebSocket, conn: Connection) -> None:
        seq, epoch = await self.broker.position(conn.room_id)
        await self.broker.watch(conn.room_id, seq)
        # The position is read again after watching: every event after it reaches this connection.
        seq, epoch = await self.broker.position(conn.room_id)
        frames: list[bytes] | None = None
        since = websocket.query_params.get("since")
        if since is not None and since.isdigit() and websocket.query_params.get("epoch") == epoch:
            replayed = await self.broker.replay(conn.room_id, int(since), epoch)
            if replayed is not None and (not replayed or replayed[-1][0] <= seq):
                frames = [text_frame(f) for _, f in replayed]
        if frames is None:
            frames = [await self._snapshot(conn.room_id, seq, epoch)]
        raw = websocket.scope.get("extensions", {}).get(EXTENSION)
        if isinstance(raw, RawSocket) and not raw.open():
            raise WebSocketDisconnect()
        for frame in [*frames, *self.hub.synced(conn, seq)]:
            conn.write(frame)

    async def _snapshot(self, room_id: str, seq: int, epoch: str) -> bytes:
        """The snapshot frame at ``seq``: built once for every connection that asks at the same position
        (within ``snapshot_max_age``), so a thousand viewers joining at once cost one build, not a
        thousand. Reusing it is exact: any change after ``seq`` reaches them as an event after ``seq``."""
        key = (room_id, seq, epoch)
        now = time.monotonic()
        cached = self._snapshots.get(room_id)
        if cached is not None and cached[0] == key and now - cached[1] <= self.snapshot_max_age:
            return await asyncio.shield(cached[2])
        built: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._snapshots[room_id] = (key, now, built)
        try:
            built.set_result(await self._build_snapshot(room_id, seq, epoch))
        except BaseException as exc:
            if self._snapshots.get(room_id, (None,))[0] == key:
                del self._snapshots[room_id]
            built.set_exception(exc)
            built.exception()  # retrieved: waiters get it too, an unawaited one is no warning
            raise
        return built.result()

    async def _build_snapshot(self, room_id: str, seq: int, epoch: str) -> bytes:
        async with self.sessions() as session:
            room = await session.get(Room, room_id)
        assert room is not None
        # The stock viewers were last told (a newer value is on its way as a stock event after ``seq``).
        gate = await self.redis.hgetall(room_keys(room_id)[3])
        prefix = "v:stock:"
        published = {
            key[len(prefix) :]: int(v) for k, v in gate.items() if (key := text_of(k)).startswith(prefix)
        }
        cards = await self.snapshot_cards(room_id, published)
        viewers = (await self.presence(room_id))["viewers_now"]
        body = {
            "type": "snapshot",
            "seq": seq,
            "epoch": epoch,
            "room": public_room(room),
            "cards": cards,
            "viewers": viewers,
        }
        return text_frame(dumps(body).encode())

    async def _viewer_name(self, viewer_id: str) -> str:
        async with self.sessions() as session:
            viewer = await session.get(Viewer, viewer_id)
        return viewer.name if viewer is not None else "Viewer"

    async def _receive(self, websocket: WebSocket, conn: Connection) -> None:
        """The ASGI fallback's receive loop (a detached connection gets ``_on_message`` calls instead)."""
        peer = self._peers[conn.id]
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = chat_text(message.get("text") or message.get("bytes") or b"", conn.room_id)
            if not peer.chat.allow(time.monotonic()):
                await websocket.send_text(_payload(RATE_LIMITED_FRAME).decode())
                continue
            await self._publish_chat(peer, text, after=None)

    async def _publish_chat(self, peer: _Peer, text: str, *, after: asyncio.Future[None] | None) -> None:
        if after is not None:  # one viewer's messages go out in the order they were sent
            with contextlib.suppress(Exception):
                await after
        if peer.name is None:
            peer.name = await self._viewer_name(peer.conn.viewer_id or "")
        await self.broker.publish(
            peer.conn.room_id, "chat", {"from": peer.name, "text": text}, now_ms=self.clock.now_ms()
        )


class _Peer(abc.ABC):
    """The adapter's side of one connection: how to close it, and its chat state."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.chat = ChatLimiter(time.monotonic())
        #: a viewer's display name, read at their first chat message
        self.name: str | None = None if conn.viewer_id is not None else "Host"
        self.chat_sent: asyncio.Future[None] | None = None

    @abc.abstractmethod
    def close(self, code: int, reason: str) -> None:
        """Start closing the socket with ``code``."""


class _RawPeer(_Peer):
    def __init__(self, conn: Connection, raw: RawSocket, close_timeout: float) -> None:
        super().__init__(conn)
        self.raw = raw
        self.close_timeout = close_timeout

    def close(self, code: int, reason: str) -> None:
        self.raw.close(code, reason)
        # A viewer that does not even take its close frame is dropped.
        asyncio.get_running_loop().call_later(self.close_timeout, self.raw.abort)


class _AsgiPeer(_Peer):
    def __init__(self, conn: Connection, websocket: WebSocket) -> None:
        super().__init__(conn)
        self.websocket = websocket
        self._closing: asyncio.Task[None] | None = None

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(_close(self.websocket, code, reason))


RATE_LIMITED_FRAME = text_frame(dumps({"type": "error", "error": "rate_limited"}).encode())


def presence_keys(room_id: str) -> list[str]:
    tag = "{room:" + room_id + "}"
    return [f"{tag}:presence", f"{tag}:conns"]


def _payload(frame: bytes) -> bytes:
    n = frame[1] & 0x7F
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0) :]


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("realtime task failed: %s", task.exception())


async def _send_text(websocket: WebSocket, payload: bytes) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(payload.decode())


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)


async def room_socket(websocket: WebSocket) -> None:
    realtime: Realtime = websocket.state.realtime
    await realtime.serve(websocket)


routes = [WebSocketRoute("/ws/rooms/{room:id}", room_socket)]
