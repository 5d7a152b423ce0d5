"""Everything realtime of one process: the hub, its broker, presence, and each connection's life.

A connection: Origin checked before the upgrade; the token checked before anything is sent (``admission``:
4401, 4403, 4404); joined to the hub as syncing; a viewer's socket counted against their cap, their oldest
closed past it (``socket_cap``: 4509); the room watched; then either the events after ``since``
(same epoch, still in the history) or a snapshot at the current ``seq`` (``snapshot``); then the frames held
meanwhile; then live, the client's messages going to ``client_frames``.

Stock counters coalesce per room, not per viewer (``realtime.stock``): at most 10 stock frames per second
per card, and always the final value. Presence is reported every second by each process
(``realtime.presence``); ``viewers`` events go out at most once a second, and only when the count changed.

Chat (``client_frames``): each message is checked, held to its socket's bucket at once, then (in order,
one sender's after the other) to the per-customer and per-IP limits in Redis, and published as
``{"type": "chat", "seq", "from", "text", "role"}``; ``role`` is ``host`` only for the room's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket, WebSocketDisconnect

from base.clock import Clock
from base.errors import DEPENDENCY_ERRORS, RateLimited
from base.limits import Limit, RateLimits
from identity.guards import Authenticator
from identity.tokens import HostIdentity, ViewerIdentity
from realtime.admission import Admission, origin_allowed
from realtime.broker import Broker
from realtime.client_frames import Chat, ChatLimiter, chat_text, rate_limited_frame
from realtime.errors import CloseCode, RealtimeError
from realtime.frames import text_frame
from realtime.hub import Connection, Hub, State, write_all
from realtime.presence import Presence
from realtime.publisher import Publisher
from realtime.snapshot import Snapshots
from realtime.socket_cap import SocketCap
from realtime.sockets import Peer, connect
from realtime.source import RoomSource

log = logging.getLogger("livecart.realtime")


class Realtime:
    """Everything realtime of one process."""

    def __init__(
        self,
        *,
        redis: Redis,
        broker: Broker,
        publisher: Publisher,
        sessions: async_sessionmaker[AsyncSession],
        auth: Authenticator,
        rate_limits: RateLimits,
        clock: Clock,
        rooms: RoomSource,
        allowed_origins: list[str],
        presence_interval: float = 1.0,
        max_backlog_bytes: int = 1 << 20,
        close_timeout: float = 5.0,
        snapshot_max_age: float = 1.0,
        max_sockets_per_viewer: int = 3,
        chat_burst: int = 10,
        chat_per_second: float = 1.0,
    ) -> None:
        """``max_sockets_per_viewer``: across every process (``socket_cap``); ``chat_burst`` and
        ``chat_per_second``: each socket's chat bucket (the per-customer limit's amount and average rate)."""
        self.clock = clock
        self.allowed_origins = allowed_origins
        self.hub = Hub()
        self.broker = broker
        self.publisher = publisher
        self.rooms = rooms
        self.admission = Admission(auth, rooms, self.hub)
        self.presence_interval = presence_interval
        self._presence = Presence(redis, sessions, clock, interval=presence_interval)
        self.snapshots = Snapshots(broker, rooms, self._presence, max_age=snapshot_max_age)
        self.max_backlog_bytes = max_backlog_bytes
        self.close_timeout = close_timeout
        self.rate_limits = rate_limits
        # A killed process's sockets stop counting after a few missed ticks.
        self.sockets = SocketCap(
            redis, max_per_viewer=max_sockets_per_viewer, stale_after=max(3.0, 5 * presence_interval)
        )
        self.chat_burst = chat_burst
        self.chat_per_second = chat_per_second
        self._peers: dict[int, Peer] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.broker.start(self._on_frame, self._on_gap)
        self.publisher.stock.start()
        self._tasks = [
            asyncio.create_task(self._every(self.presence_interval, self._report_presence), name="presence"),
            asyncio.create_task(
                self._every(self.presence_interval, self._refresh_sockets), name="socket-cap"
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sockets.close()
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

    # -- presence ----------------------------------------------------------------------------------------

    async def _report_presence(self) -> None:
        now = self.clock.now_ms()
        for room_id in self.hub.rooms():
            viewers_now = await self._presence.report(
                room_id, self.hub.viewers(room_id), len(self.hub.connections(room_id)), now_ms=now
            )
            await self.broker.publish(
                room_id,
                "viewers",
                {"count": viewers_now},
                now_ms=now,
                gate="viewers",
                min_interval_ms=int(self.presence_interval * 1000),
                value=str(viewers_now),
            )

    async def presence(self, room_id: str) -> dict[str, int]:
        """The room's live numbers, across processes (unique viewers and the peak are in SQL)."""
        return await self._presence.numbers(room_id)

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
        """This process lost events of the room (it fell behind the broker's history): its viewers there
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

    def _evict(self, conn_id: int) -> None:
        """One of this process's sockets was evicted past its viewer's cap: close it (4509)."""
        peer = self._peers.get(conn_id)
        if peer is not None:
            self._close(peer.conn, CloseCode.TOO_MANY_SOCKETS, "this viewer opened too many sockets")

    async def _refresh_sockets(self) -> None:
        for conn_id in await self.sockets.refresh():
            self._evict(conn_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self._background.discard)
        return task

    # -- one connection ----------------------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), self.allowed_origins):
            await websocket.close(code=1008)  # before the upgrade: the client gets 403, nothing else
            return
        await websocket.accept()
        params = websocket.query_params
        try:
            conn, who = await self.admission.admit(params.get("token") or "", websocket.path_params["room"])
        except RealtimeError as exc:
            await websocket.close(code=exc.code, reason=exc.reason)
            return
        peer = connect(
            websocket,
            conn,
            self._chat_of(who, websocket),
            max_backlog_bytes=self.max_backlog_bytes,
            close_timeout=self.close_timeout,
            on_too_slow=lambda: self._close(conn, CloseCode.TOO_SLOW, "too slow to keep up"),
            on_gone=lambda: self._gone(conn),
        )
        self._peers[conn.id] = peer
        handed_over = False
        try:  # from here on, however it ends, the connection leaves the hub unless it was handed over
            if not peer.open():  # the client left while it was being admitted
                return
            if conn.viewer_id is not None:
                await self._count(conn)
            await self._sync(peer, params.get("since"), params.get("epoch"))
            handed_over = await peer.hand_over(lambda message: self._on_message(conn, message))
        except RealtimeError as exc:
            peer.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if not handed_over:
                self._gone(conn)

    def _chat_of(self, who: HostIdentity | ViewerIdentity, websocket: WebSocket) -> Chat:
        limiter = ChatLimiter(time.monotonic(), burst=self.chat_burst, per_second=self.chat_per_second)
        if isinstance(who, HostIdentity):
            return Chat(limiter, "host", None)  # the host's own name, read at their first message
        client = websocket.client
        return Chat(limiter, "viewer", None, buyer=who.buyer_key, ip=client.host if client else "")

    async def _count(self, conn: Connection) -> None:
        """Count a viewer's socket across processes; close their oldest past the cap."""
        try:
            evicted = await self.sockets.admit(conn)
        except DEPENDENCY_ERRORS as exc:  # Redis is down: the client reconnects with backoff
            raise RealtimeError(CloseCode.SERVER_ERROR, "try again") from exc
        for conn_id in evicted:
            self._evict(conn_id)

    async def _sync(self, peer: Peer, since: str | None, since_epoch: str | None) -> None:
        conn = peer.conn
        seq, epoch = await self.broker.position(conn.room_id)
        await self.broker.watch(conn.room_id, seq)
        # The position is read again after watching: every event after it reaches this connection.
        seq, epoch = await self.broker.position(conn.room_id)
        frames: list[bytes] | None = None
        if since is not None and since.isdigit() and since_epoch == epoch:
            replayed = await self.broker.replay(conn.room_id, int(since), epoch)
            if replayed is not None and (not replayed or replayed[-1][0] <= seq):
                frames = [text_frame(f) for _, f in replayed]
        if frames is None:
            frames = [await self.snapshots.frame(conn.room_id, seq, epoch)]
        if not peer.open():
            raise WebSocketDisconnect()
        for frame in [*frames, *self.hub.synced(conn, seq)]:
            conn.write(frame)

    def _gone(self, conn: Connection) -> None:
        """The connection is closing or closed (idempotent): forget it."""
        self.hub.leave(conn)
        self._peers.pop(conn.id, None)
        self.sockets.leave(conn)
        if not self.hub.connections(conn.room_id):
            self.broker.unwatch(conn.room_id)
            self._presence.forget(conn.room_id)
            self.snapshots.forget(conn.room_id)

    # -- what clients send -------------------------------------------------------------------------------

    def _on_message(self, conn: Connection, message: str | bytes) -> None:
        """A client frame of a connection in sync (called in the event loop)."""
        peer = self._peers.get(conn.id)
        if peer is None or conn.state is State.CLOSED:
            return
        chat = peer.chat
        try:
            text = chat_text(message, conn.room_id)
            wait = chat.limiter.take(time.monotonic())
            if wait:
                chat.refused()
        except RealtimeError as exc:
            self._close(conn, exc.code, exc.reason)
            return
        if wait:
            conn.write(rate_limited_frame(wait))
            return
        chat.sent = self._spawn(self._publish_chat(peer, text, after=chat.sent))

    async def _publish_chat(self, peer: Peer, text: str, *, after: asyncio.Future[None] | None) -> None:
        if after is not None:  # one viewer's messages go out in the order they were sent
            with contextlib.suppress(Exception):
                await after
        chat, conn = peer.chat, peer.conn
        if chat.buyer is not None:
            checks = [(Limit.CHAT_PER_CUSTOMER, chat.buyer)]
            if chat.ip:
                checks.append((Limit.CHAT_PER_IP, chat.ip))
            try:
                await self.rate_limits.hit_all(*checks, what="chat messages")
            except RateLimited as exc:
                self._refuse(peer, exc.retry_after)
                return
        if chat.name is None:
            chat.name = (
                await self.rooms.host_name(conn.room_id)
                if chat.role == "host"
                else await self.rooms.viewer_name(conn.viewer_id or "")
            )
        await self.broker.publish(
            conn.room_id,
            "chat",
            {"from": chat.name, "text": text, "role": chat.role},
            now_ms=self.clock.now_ms(),
        )
        chat.went_out()

    def _refuse(self, peer: Peer, retry_after: int) -> None:
        """A message over the limits in Redis: an error frame, or 4429 after repeated refusals."""
        if not peer.open():
            return
        try:
            peer.chat.refused()
        except RealtimeError as exc:
            self._close(peer.conn, exc.code, exc.reason)
            return
        peer.conn.write(rate_limited_frame(retry_after))


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("realtime task failed: %s", task.exception())
