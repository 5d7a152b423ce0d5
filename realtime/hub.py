"""The fan-out core, sans-I/O: which connection gets which frame. Nothing here awaits or touches a socket.

A connection starts ``syncing``: room events that arrive while its snapshot (or its replay of missed
events) is being fetched are held for it. When the adapter has sent the snapshot taken at position ``seq``,
``synced(conn, seq)`` hands back the held frames after ``seq`` and the connection is ``live``: it never
misses an event between its snapshot and the stream, and never gets one twice.

Backlog policy ``"disconnect"``: a connection whose unsent bytes pass ``max_backlog_bytes`` (a viewer that
cannot keep up) is to be closed with 4408; it never holds the others up, because frames are handed out,
not awaited. A syncing connection that would hold more than ``max_held`` frames is closed the same way.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class State(enum.Enum):
    SYNCING = "syncing"
    LIVE = "live"
    CLOSED = "closed"


_ids = itertools.count(1)


@dataclass(eq=False)
class Connection:
    room_id: str
    #: ``None`` for the host (who gets no personal frames)
    viewer_id: str | None
    id: int = field(default_factory=lambda: next(_ids))
    state: State = State.SYNCING
    held: list[tuple[int, bytes]] = field(default_factory=list)
    #: the highest room ``seq`` this connection has been given
    seq: int = 0
    #: the adapter's writer for this connection (the core never calls it)
    sink: Any = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Write ``frame`` to each of ``to``; close each of ``too_slow`` with 4408."""

    frame: bytes
    to: tuple[Connection, ...]
    too_slow: tuple[Connection, ...] = ()


class Hub:
    def __init__(self, *, max_held: int = 1024, max_backlog_bytes: int = 1 << 20) -> None:
        self.max_held = max_held
        self.max_backlog_bytes = max_backlog_bytes
        self._rooms: dict[str, dict[int, Connection]] = {}
        #: live connections per room, as a tuple rebuilt only when membership changes (the hot path)
        self._live: dict[str, tuple[Connection, ...]] = {}

    # -- membership ------------------------------------------------------------------------------------

    def join(self, room_id: str, viewer_id: str | None) -> Connection:
        conn = Connection(room_id, viewer_id)
        self._rooms.setdefault(room_id, {})[conn.id] = conn
        return conn

    def leave(self, conn: Connection) -> None:
        was_live = conn.state is State.LIVE
        conn.state = State.CLOSED
        conn.held.clear()
        room = self._rooms.get(conn.room_id)
        if room is None:
            return
        room.pop(conn.id, None)
        if not room:
            del self._rooms[conn.room_id]
            self._live.pop(conn.room_id, None)
        elif was_live:
            self._rebuild(conn.room_id)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room_id: str) -> list[Connection]:
        return list(self._rooms.get(room_id, {}).values())

    def viewers(self, room_id: str) -> set[str]:
        """Distinct viewers with a connection here (hosts are not counted)."""
        return {c.viewer_id for c in self._rooms.get(room_id, {}).values() if c.viewer_id is not None}

    def count(self) -> int:
        return sum(len(r) for r in self._rooms.values())

    def _rebuild(self, room_id: str) -> None:
        self._live[room_id] = tuple(c for c in self._rooms.get(room_id, {}).values() if c.state is State.LIVE)

    # -- sync --------------------------------------------------------------------------------------------

    def synced(self, conn: Connection, seq: int) -> list[bytes]:
        """The snapshot or replay up to ``seq`` was sent: the held frames after it, in order; now live."""
        if conn.state is not State.SYNCING:
            return []
        frames = [frame for s, frame in sorted(conn.held, key=lambda h: h[0]) if s > seq]
        conn.seq = max([seq, *(s for s, _ in conn.held)])
        conn.held = []
        conn.state = State.LIVE
        self._rebuild(conn.room_id)
        return frames

    # -- events ------------------------------------------------------------------------------------------

    def event(self, room_id: str, seq: int, frame: bytes) -> Delivery:
        """A room event at position ``seq``: the live connections get ``frame``; syncing ones hold it."""
        too_slow: list[Connection] = []
        for conn in self._rooms.get(room_id, {}).values():
            if conn.state is State.SYNCING:
                if len(conn.held) >= self.max_held:
                    too_slow.append(conn)
                else:
                    conn.held.append((seq, frame))
        live = self._live.get(room_id, ())
        for conn in live:
            if seq > conn.seq:
                conn.seq = seq
        return Delivery(frame, live, tuple(too_slow))

    def personal(self, room_id: str, viewer_id: str, frame: bytes) -> Delivery:
        """A frame for one viewer (their order): every connection of theirs in the room, syncing or live."""
        to = tuple(
            c
            for c in self._rooms.get(room_id, {}).values()
            if c.viewer_id == viewer_id and c.state is not State.CLOSED
        )
        return Delivery(frame, to)

    def over_backlog(self, buffered: Iterable[tuple[Connection, int]]) -> list[Connection]:
        """Of these (connection, unsent bytes) pairs, the ones to close as too slow."""
        return [c for c, n in buffered if n > self.max_backlog_bytes and c.state is not State.CLOSED]
