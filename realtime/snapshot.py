"""The snapshot a connection gets when it cannot be replayed the events it missed: the room, its cards
and its viewer count at one position ``(seq, epoch)``, as one frame.

Built once for every connection that asks at the same position within ``max_age``: a thousand viewers
joining at once cost one build, not a thousand. Reusing it is exact: any change after ``seq`` reaches them
as an event after ``seq``.
"""

from __future__ import annotations

import asyncio
import time

from realtime.broker import Broker
from realtime.frames import dumps, text_frame
from realtime.presence import Presence
from realtime.source import RoomSource
from realtime.stock import GATE_PREFIX


class Snapshots:
    def __init__(
        self, broker: Broker, rooms: RoomSource, presence: Presence, *, max_age: float = 1.0
    ) -> None:
        self.broker = broker
        self.rooms = rooms
        self.presence = presence
        self.max_age = max_age
        #: per room, the last snapshot asked for: its position, when it was begun, and the frame
        self._cache: dict[str, tuple[tuple[str, int, str], float, asyncio.Future[bytes]]] = {}

    async def frame(self, room_id: str, seq: int, epoch: str) -> bytes:
        """The snapshot frame at ``seq``: the cached one when it is of the same position and young enough
        (being built counts: its waiters share the build), else a new one."""
        key = (room_id, seq, epoch)
        now = time.monotonic()
        cached = self._cache.get(room_id)
        if cached is not None and cached[0] == key and now - cached[1] <= self.max_age:
            return await asyncio.shield(cached[2])
        built: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._cache[room_id] = (key, now, built)
        try:
            built.set_result(await self.build(room_id, seq, epoch))
        except BaseException as exc:
            if self._cache.get(room_id, (None,))[0] == key:
                del self._cache[room_id]
            built.set_exception(exc)
            built.exception()  # retrieved: waiters get it too, an unawaited one is no warning
            raise
        return built.result()

    def forget(self, room_id: str) -> None:
        """No connection to the room is left here."""
        self._cache.pop(room_id, None)

    async def build(self, room_id: str, seq: int, epoch: str) -> bytes:
        # The stock viewers were last told (a newer value is on its way as a stock event after ``seq``).
        gates = await self.broker.gate_values(room_id)
        published = {
            name[len(GATE_PREFIX) :]: int(v) for name, v in gates.items() if name.startswith(GATE_PREFIX)
        }
        room, cards = await self.rooms.snapshot_parts(room_id, published)
        viewers = (await self.presence.numbers(room_id))["viewers_now"]
        body = {
            "type": "snapshot",
            "seq": seq,
            "epoch": epoch,
            "room": room,
            "cards": cards,
            "viewers": viewers,
        }
        return text_frame(dumps(body).encode())
