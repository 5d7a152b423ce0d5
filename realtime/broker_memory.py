"""Room events in this process's memory: the ``Broker`` of one process (``LIVECART_REALTIME_BROKER=memory``).

The same contract as ``broker_redis`` without a Redis round trip on the way from publish to viewers: per
room a ``seq``, an ``epoch`` (made when the room is first seen, so a restart begins a new one), the last
``history`` events for replay, the gate of ``publish.lua`` (one event per interval per gate, the last value
dropped when it comes again), and the personal frames of the room's viewers. A reader task hands the events
of the watched rooms to the handler, as the Redis reader does after its ``XREAD``: it wakes when something
was published and reads at most ``batch`` entries per room before it lets the loop run again; a reader that
fell behind the history is told (``on_gap``) and goes on with what is left.

Single process only: another process sees none of it (``livecart serve`` refuses it with ``--workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import GapHandler, Handler, Later, Published
from realtime.frames import dumps

log = logging.getLogger("livecart.realtime.broker")


@dataclass(slots=True)
class _Room:
    history: int
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    #: (seq, frame JSON), the last ``history``; contiguous (trimmed from the left only)
    events: deque[tuple[int, bytes]] = field(init=False)
    #: (id, viewer id, frame JSON), the last ``history``; ids grow by one from 1
    personal: deque[tuple[int, str, bytes]] = field(init=False)
    personal_id: int = 0
    #: gate name -> when it last let an event through (ms), and the value it let through then
    gate_times: dict[str, int] = field(default_factory=dict)
    gate_values: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.history)
        self.personal = deque(maxlen=self.history)


def event_frame(kind: str, seq: int, body: dict[str, Any]) -> bytes:
    """The frame ``publish.lua`` builds: ``type`` and ``seq`` first, then the body's fields."""
    fields = dumps(body)
    head = '{"type":"' + kind + '","seq":' + str(seq)
    return (head + "}" if fields == "{}" else head + "," + fields[1:]).encode()


class MemoryBroker:
    """The ``Broker`` of one process."""

    def __init__(self, *, history: int = 1000, personal_delay: float = 0.005, batch: int = 1000) -> None:
        self.history = max(1, history)
        self.personal_delay = personal_delay
        self.batch = batch
        self._rooms: dict[str, _Room] = {}
        #: rooms read by this process: room id -> (last seq read, last personal id read)
        self._watched: dict[str, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handler: Handler | None = None
        self._on_gap: GapHandler | None = None
        self._personal: list[tuple[str, str, str]] = []  # (room, viewer, frame) not sent yet
        self._sending: asyncio.Task[None] | None = None
        self._stopped = False

    def _room(self, room_id: str) -> _Room:
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(self.history)
        return room

    # -- writing ---------------------------------------------------------------------------------------

    async def publish(
        self,
        room_id: str,
        kind: str,
        body: dict[str, Any],
        *,
        now_ms: int,
        gate: str = "",
        min_interval_ms: int = 0,
        value: str = "",
    ) -> Published:
        return self.publish_now(
            room_id, kind, body, now_ms=now_ms, gate=gate, min_interval_ms=min_interval_ms, value=value
        )

    def publish_now(
        self,
        room_id: str,
        kind: str,
        body: dict[str, Any],
        *,
        now_ms: int,
        gate: str = "",
        min_interval_ms: int = 0,
        value: str = "",
    ) -> Published:
        """``publish``, without an event loop (it never waits: the reader is woken, not awaited)."""
        room = self._room(room_id)
        if gate:
            if value and room.gate_values.get(gate) == value:
                return "same"
            wait = min_interval_ms - (now_ms - room.gate_times.get(gate, 0))
            if wait > 0:
                return Later(wait)
            room.gate_times[gate] = now_ms
            if value:
                room.gate_values[gate] = value
        room.seq += 1
        room.events.append((room.seq, event_frame(kind, room.seq, body)))
        self._wake.set()
        return room.seq

    async def gate_values(self, room_id: str) -> dict[str, str]:
        room = self._rooms.get(room_id)
        return dict(room.gate_values) if room is not None else {}

    def send_personal(self, room_id: str, viewer_id: str, kind: str, body: dict[str, Any]) -> None:
        """Queue a frame for one viewer's sockets: the frames queued within ``personal_delay`` join the
        room's personal frames together, as the Redis broker sends them (the caller never waits)."""
        if self._stopped:
            log.debug("personal %s frame for %s dropped: the broker has stopped", kind, viewer_id)
            return
        self._personal.append((room_id, viewer_id, dumps({"type": kind, **body})))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_personal())

    async def flush_personal(self) -> None:
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def _send_personal(self) -> None:
        try:
            while self._personal:
                await asyncio.sleep(self.personal_delay)
                batch, self._personal = self._personal, []
                for room_id, to, frame in batch:
                    self.append_personal(room_id, to, frame)
        finally:
            self._sending = None

    def append_personal(self, room_id: str, viewer_id: str, frame: str) -> None:
        """A queued personal frame goes out (to the room's personal frames, for the reader)."""
        room = self._room(room_id)
        room.personal_id += 1
        room.personal.append((room.personal_id, viewer_id, frame.encode()))
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------------------

    async def position(self, room_id: str) -> tuple[int, str]:
        room = self._room(room_id)
        return room.seq, room.epoch

    async def replay(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        return self.replay_now(room_id, since, epoch)

    def replay_now(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        """``replay``, without an event loop."""
        room = self._room(room_id)
        if epoch != room.epoch or since > room.seq or since < 0:
            return None
        if since == room.seq:
            return []
        start = self._after(room, since)
        if start is None:
            return None  # trimmed away: too old to replay
        return list(itertools.islice(room.events, start, None))

    @staticmethod
    def _after(room: _Room, seq: int) -> int | None:
        """Where the events after ``seq`` begin in the room's history (``None``: some were trimmed)."""
        if not room.events:
            return None if seq < room.seq else 0
        first = room.events[0][0]
        return seq + 1 - first if seq + 1 >= first else None

    async def watch(self, room_id: str, seq: int) -> None:
        if room_id not in self._watched:
            self._watched[room_id] = (seq, self._room(room_id).personal_id)

    def unwatch(self, room_id: str) -> None:
        self._watched.pop(room_id, None)

    def start(self, handler: Handler, on_gap: GapHandler | None = None) -> None:
        self._handler = handler
        self._on_gap = on_gap
        self._wake.set()  # the rooms watched before the start may have events already
        self._task = asyncio.create_task(self._read(), name="realtime-reader")

    async def stop(self) -> None:
        self._stopped = True
        await self.flush_personal()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _read(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.read_once():
                self._wake.set()  # more is waiting: read it after the loop has run once
                await asyncio.sleep(0)

    def read_once(self) -> bool:
        """Hand each watched room's new events and personal frames (``batch`` at most of each) to the
        handler; whether more were left for the next read."""
        handler = self._handler
        assert handler is not None
        more = False
        for room_id, (seq, personal) in list(self._watched.items()):
            room = self._rooms.get(room_id)
            if room is None or self._watched.get(room_id) != (seq, personal):
                continue  # nothing published yet, or unwatched by a handler meanwhile
            if room.seq > seq:
                start = self._after(room, seq)
                if start is None:  # the events between were trimmed before this process read them
                    start = 0
                    if self._on_gap is not None:
                        self._on_gap(room_id)
                # A copy: whatever a handler does, the history it is read from does not move under it.
                events = list(itertools.islice(room.events, start, start + self.batch))
                for n, frame in events:
                    handler(room_id, n, frame, None)
                seq = events[-1][0]
                more = more or room.seq > seq
            if room.personal_id > personal:
                start = max(0, personal + 1 - room.personal[0][0])
                frames = list(itertools.islice(room.personal, start, start + self.batch))
                for _, to, frame in frames:
                    handler(room_id, 0, frame, to)
                personal = frames[-1][0]
                more = more or room.personal_id > personal
            if room_id in self._watched:
                self._watched[room_id] = (seq, personal)
        return more
