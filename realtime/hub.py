"""The fan-out core, sans-I/O: which connection gets which frame. Nothing here awaits or touches a socket.

A connection starts ``syncing``: room events that arrive while its snapshot (or its replay of missed
events) is being fetched are held for it. When the adapter has sent the snapshot taken at position ``seq``,
``synced(conn, seq)`` hands back the held frames after ``seq`` and the connection is ``live``: it never
misses an event between its snapshot and the stream, and never gets one twice. The snapshot's position is
read from the broker, which can be ahead of the events this process has been handed so far (its reader
lags by up to one read): then nothing after ``seq`` is held yet, and the connection waits, still syncing,
until the first event after ``seq`` arrives; the events up to ``seq`` that reach it meanwhile are dropped.

A room event costs one call per live connection and nothing else: the hub keeps, per room, the tuple of
the live connections' ``write`` callables (rebuilt only when membership changes), which the adapter calls
with the same bytes, and it only looks at the syncing connections one by one.

Backlog policy ``"disconnect"``: a viewer that cannot keep up is closed with 4408 (the adapter learns of it
from its transport's high-water mark); it never holds the others up, because frames are handed out, not
awaited. A syncing connection that would hold more than ``max_held`` frames is closed the same way.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

Write = Callable[[bytes], object]


class State(enum.Enum):
    SYNCING = "syncing"
    LIVE = "live"
    CLOSED = "closed"


_ids = itertools.count(1)


def _discard(frame: bytes) -> None:
    return None


@dataclass(eq=False, slots=True)
class Connection:
    room_id: str
    #: ``None`` for the host (who gets no personal frames)
    viewer_id: str | None
    #: writes one complete frame to this connection's socket (the adapter's; the core never calls it)
    write: Write = _discard
    id: int = field(default_factory=lambda: next(_ids))
    state: State = State.SYNCING
    held: list[tuple[int, bytes]] = field(default_factory=list)
    #: set by ``synced`` while the stream has not passed the snapshot's position yet
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """Call each of writers with frame (one per connection of to); close too_slow (4408)."""

    frame: bytes
    to: tuple[Connection, ...]
    writers: tuple[Write, ...]
    too_slow: tuple[Connection, ...] = ()


class Hub:
    def __init__(self, *, max_held: int = 1024) -> None:
        self.max_held = max_held
        self._rooms: dict[str, dict[int, Connection]] = {}
        self._syncing: dict[str, dict[int, Connection]] = {}
        #: per room, the live connections and their writers, as tuples rebuilt only on membership changes
        self._live: dict[str, tuple[tuple[Connection, ...], tuple[Write, ...]]] = {}
        #: rooms whose tuples are out of date; rebuilt at their next event (a connect storm rebuilds once)
        self._stale: set[str] = set()

    # -- membership ------------------------------------------------------------------------------------

    def join(self, room_id: str, viewer_id: str | None, write: Write = _discard) -> Connection:
        conn = Connection(room_id, viewer_id, write)
        self._rooms.setdefault(room_id, {})[conn.id] = conn
        self._syncing.setdefault(room_id, {})[conn.id] = conn
        return conn

    def leave(self, conn: Connection) -> None:
        """Idempotent: the connection gets nothing more."""
        was_live = conn.state is State.LIVE
        conn.state = State.CLOSED
        conn.held.clear()
        room_id = conn.room_id
        syncing = self._syncing.get(room_id)
        if syncing is not None:
            syncing.pop(conn.id, None)
        room = self._rooms.get(room_id)
        if room is None or room.pop(conn.id, None) is None:
            return
        if not room:
            del self._rooms[room_id]
            self._syncing.pop(room_id, None)
            self._live.pop(room_id, None)
            self._stale.discard(room_id)
        elif was_live:
            self._stale.add(room_id)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room_id: str) -> list[Connection]:
        return list(self._rooms.get(room_id, {}).values())

    def viewers(self, room_id: str) -> set[str]:
        """Distinct viewers with a connection here (hosts are not counted)."""
        return {c.viewer_id for c in self._rooms.get(room_id, {}).values() if c.viewer_id is not None}

    def count(self) -> int:
        return sum(len(r) for r in self._rooms.values())

    def _current(self, room_id: str) -> tuple[tuple[Connection, ...], tuple[Write, ...]]:
        if room_id in self._stale:
            self._stale.discard(room_id)
            live = tuple(c for c in self._rooms.get(room_id, {}).values() if c.state is State.LIVE)
            self._live[room_id] = (live, tuple(c.write for c in live))
        return self._live.get(room_id, ((), ()))

    # -- sync --------------------------------------------------------------------------------------------

    def synced(self, conn: Connection, seq: int) -> list[bytes]:
        """The snapshot or replay up to ``seq`` was sent: the held frames after it, in order; now live."""
        if conn.state is not State.SYNCING:
            return []
        frames = [frame for s, frame in sorted(conn.held, key=lambda h: h[0]) if s > seq]
        conn.held = []
        if frames:  # the stream is past ``seq`` here: nothing up to it can still come
            self._go_live(conn)
        else:
            conn.after = seq
        return frames

    def _go_live(self, conn: Connection) -> None:
        conn.state = State.LIVE
        conn.after = None
        self._syncing.get(conn.room_id, {}).pop(conn.id, None)
        self._stale.add(conn.room_id)

    # -- events ------------------------------------------------------------------------------------------

    def event(self, room_id: str, seq: int, frame: bytes) -> Delivery:
        """A room event at position ``seq``: the live connections get ``frame``; syncing ones hold it."""
        too_slow: list[Connection] = []
        caught_up: list[Connection] = []
        for conn in self._syncing.get(room_id, {}).values():
            if conn.after is not None:
                if seq > conn.after:
                    caught_up.append(conn)  # gets this frame as a live connection, below
            elif len(conn.held) >= self.max_held:
                too_slow.append(conn)
            else:
                conn.held.append((seq, frame))
        for conn in caught_up:
            self._go_live(conn)
        live, writers = self._current(room_id)
        return Delivery(frame, live, writers, tuple(too_slow))

    def personal(self, room_id: str, viewer_id: str, frame: bytes) -> Delivery:
        """A frame for one viewer (their order): every connection of theirs in the room, syncing or live."""
        to = tuple(
            c
            for c in self._rooms.get(room_id, {}).values()
            if c.viewer_id == viewer_id and c.state is not State.CLOSED
        )
        return Delivery(frame, to, tuple(c.write for c in to))


def write_all(writers: tuple[Write, ...], frame: bytes) -> list[int]:
    """Call every writer with ``frame``; the positions of those that raised (the others all got it once).

    The loop body is one call: this is the whole per-viewer cost of a room event."""
    failed: list[int] = []
    start, part = 0, writers
    while True:
        write: Write | None = None
        try:
            for write in part:
                write(frame)
            return failed
        except Exception:
            i = start + part.index(write)
            failed.append(i)
            start = i + 1
            part = writers[start:]
