"""Room events in this process's memory: the ``Broker`` of one process (``LIVECART_REALTIME_BROKER=memory``).

The same contract as ``broker_redis`` without a Redis round trip on the way from publish to viewers. Two
parts, as in the hub:

- ``RoomLog``, sans-I/O: per room a ``seq``, an ``epoch`` (made when the room is first seen, so a restart
  begins a new one), the last ``history`` events for replay, the gate of ``publish.lua`` (one event per
  interval per gate, a value dropped when it is the last one let through), the room's personal frames, the
  seqs of the chat lines retracted from the history (``replay`` leaves them out; trimmed with it), and how
  far the reader has read each watched room. ``read`` hands what is new to a handler, and tells of a gap
  when the history was trimmed past the reader.
- ``MemoryBroker``, the adapter: an event is handed over as it is published (there is no reader to fall
  behind, so no burst of publishes, however large, loses events for this process's viewers), and personal
  frames are queued for ``personal_delay`` as the Redis broker queues them (the caller never waits).

Single process only: another process sees none of it (``livecart serve`` refuses it with ``--workers``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import GapHandler, Handler, Later, Published
from realtime.frames import dumps
from realtime.personal import PersonalQueue

log = logging.getLogger("livecart.realtime.broker")


#: how a chat line's frame begins (``event_frame`` writes the type first)
_CHAT_HEAD = b'{"type":"chat",'


def event_frame(kind: str, seq: int, body: dict[str, Any]) -> bytes:
    """The frame ``publish.lua`` builds: ``type`` and ``seq`` first, then the body's fields."""
    fields = dumps(body)
    head = '{"type":"' + kind + '","seq":' + str(seq)
    return (head + "}" if fields == "{}" else head + "," + fields[1:]).encode()


@dataclass(slots=True)
class _Room:
    history: int
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    #: (seq, frame JSON), the last ``history``: contiguous, trimmed from the left
    events: deque[tuple[int, bytes]] = field(init=False)
    #: (id, viewer id, frame JSON), the last ``history``; ids count from 1
    personal: deque[tuple[int, str, bytes]] = field(init=False)
    personal_id: int = 0
    #: gate name -> when it last let an event through (ms); and the value it let through then
    gate_times: dict[str, int] = field(default_factory=dict)
    gate_values: dict[str, str] = field(default_factory=dict)
    #: the seqs of the retracted chat lines still in ``events``
    retracted: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.history)
        self.personal = deque(maxlen=self.history)

    def events_after(self, seq: int) -> int | None:
        """Where the events after ``seq`` begin in ``events``; ``None`` when some of them were trimmed."""
        if not self.events:
            return 0 if seq >= self.seq else None
        first = self.events[0][0]
        return seq + 1 - first if seq + 1 >= first else None


class RoomLog:
    """The rooms' events, gates and personal frames, and how far the reader has read (sans-I/O)."""

    def __init__(self, *, history: int = 1000) -> None:
        self.history = max(1, history)
        self._rooms: dict[str, _Room] = {}
        #: rooms being read: room id -> (last seq read, last personal frame id read)
        self.watched: dict[str, tuple[int, int]] = {}

    def _room(self, room_id: str) -> _Room:
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(self.history)
        return room

    def publish(
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
        """``Broker.publish``."""
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
        if room.retracted and len(room.events) == self.history:  # the oldest event goes: so does its mark
            room.retracted.discard(room.events[0][0])
        room.events.append((room.seq, event_frame(kind, room.seq, body)))
        return room.seq

    def retract(self, room_id: str, seq: int) -> bool:
        """``Broker.retract``."""
        room = self._rooms.get(room_id)
        if room is None or not room.events or seq in room.retracted:
            return False
        at = seq - room.events[0][0]
        if not 0 <= at < len(room.events) or not room.events[at][1].startswith(_CHAT_HEAD):
            return False
        room.retracted.add(seq)
        return True

    def gate_values(self, room_id: str) -> dict[str, str]:
        """``Broker.gate_values``."""
        room = self._rooms.get(room_id)
        return dict(room.gate_values) if room is not None else {}

    def add_personal(self, room_id: str, viewer_id: str, frame: str) -> None:
        """A personal frame (its JSON text) for one viewer's sockets in the room."""
        room = self._room(room_id)
        room.personal_id += 1
        room.personal.append((room.personal_id, viewer_id, frame.encode()))

    def personal_frames(self, room_id: str) -> list[tuple[str, bytes]]:
        """The room's personal frames still kept, oldest first: (viewer id, frame JSON)."""
        room = self._rooms.get(room_id)
        return [(to, frame) for _, to, frame in room.personal] if room is not None else []

    def position(self, room_id: str) -> tuple[int, str]:
        """``Broker.position``."""
        room = self._room(room_id)
        return room.seq, room.epoch

    def replay(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        """``Broker.replay``."""
        room = self._room(room_id)
        if epoch != room.epoch or since > room.seq or since < 0:
            return None
        start = room.events_after(since)
        if start is None:
            return None  # trimmed away: too old to replay
        events = itertools.islice(room.events, start, None)
        if not room.retracted:
            return list(events)
        return [event for event in events if event[0] not in room.retracted]

    def watch(self, room_id: str, seq: int) -> None:
        """``Broker.watch``."""
        if room_id not in self.watched:
            self.watched[room_id] = (seq, self._room(room_id).personal_id)

    def unwatch(self, room_id: str) -> None:
        self.watched.pop(room_id, None)

    def read(self, handler: Handler, on_gap: GapHandler | None = None, *, room_id: str | None = None) -> None:
        """Hand the new events and personal frames of the watched rooms (or of ``room_id`` alone) to
        ``handler``, in order. A room whose events after the reader's position were trimmed is first
        reported to ``on_gap``; the reader goes on with what is left. The position moves on before the
        handler is called: whatever it does, nothing is handed over twice."""
        for rid in list(self.watched) if room_id is None else [room_id]:
            room = self._rooms.get(rid)
            position = self.watched.get(rid)
            if room is None or position is None:
                continue
            seq, personal = position
            if room.seq == seq and room.personal_id == personal:
                continue
            gap = False
            events: list[tuple[int, bytes]] = []
            if room.seq > seq:
                start = room.events_after(seq)
                if start is None:  # the events between were trimmed before this process read them
                    gap, start = True, 0
                events = list(itertools.islice(room.events, start, None))
            frames: list[tuple[int, str, bytes]] = []
            if room.personal_id > personal:
                start = max(0, personal + 1 - room.personal[0][0])
                frames = list(itertools.islice(room.personal, start, None))
            self.watched[rid] = (room.seq, room.personal_id)
            if gap and on_gap is not None:
                on_gap(rid)
            for n, frame in events:
                handler(rid, n, frame, None)
            for _, to, frame in frames:
                handler(rid, 0, frame, to)


class MemoryBroker:
    """The ``Broker`` of one process."""

    def __init__(self, *, history: int = 1000, personal_delay: float = 0.005) -> None:
        self.log = RoomLog(history=history)
        self._handler: Handler | None = None
        self._on_gap: GapHandler | None = None
        self._personal = PersonalQueue(self._store_personal, delay=personal_delay)

    @property
    def _watched(self) -> dict[str, tuple[int, int]]:
        """The rooms being read (as ``RedisBroker._watched``)."""
        return self.log.watched

    def _hand_over(self, room_id: str) -> None:
        if self._handler is None or room_id not in self.log.watched:
            return
        try:
            self.log.read(self._handler, self._on_gap, room_id=room_id)
        except Exception:  # a failing handler must not fail the publisher (the events are in the history)
            log.exception("room %s: handing its events over failed", room_id)

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
        outcome = self.log.publish(
            room_id, kind, body, now_ms=now_ms, gate=gate, min_interval_ms=min_interval_ms, value=value
        )
        if isinstance(outcome, int):
            self._hand_over(room_id)
            # A suspension point, as a publish to Redis is: a task publishing thousands of events in a row
            # lets the sockets it fills drain between them.
            await asyncio.sleep(0)
        return outcome

    async def gate_values(self, room_id: str) -> dict[str, str]:
        return self.log.gate_values(room_id)

    async def retract(self, room_id: str, seq: int) -> bool:
        return self.log.retract(room_id, seq)

    def send_personal(self, room_id: str, viewer_id: str, kind: str, body: dict[str, Any]) -> None:
        self._personal.put(room_id, viewer_id, dumps({"type": kind, **body}))

    async def flush_personal(self) -> None:
        await self._personal.flush()

    async def _store_personal(self, room_id: str, frames: list[tuple[str, str]]) -> None:
        for to, frame in frames:
            self.log.add_personal(room_id, to, frame)
        self._hand_over(room_id)

    # -- reading ---------------------------------------------------------------------------------------

    async def position(self, room_id: str) -> tuple[int, str]:
        return self.log.position(room_id)

    async def replay(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        return self.log.replay(room_id, since, epoch)

    async def watch(self, room_id: str, seq: int) -> None:
        self.log.watch(room_id, seq)

    def unwatch(self, room_id: str) -> None:
        self.log.unwatch(room_id)

    def start(self, handler: Handler, on_gap: GapHandler | None = None) -> None:
        """Hand events over from now on: first what the rooms watched before the start have already had,
        then each event as it is published."""
        self._handler, self._on_gap = handler, on_gap
        self.log.read(handler, on_gap)

    async def stop(self) -> None:
        await self._personal.close()
        self._handler = self._on_gap = None
