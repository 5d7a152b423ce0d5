"""Who watches a room: live numbers across processes in Redis, and the record of them in SQL.

Every process reports its own viewers of each room (``presence.lua``) every ``interval``; a viewer or a
process not heard of for 2.5 intervals no longer counts, so a socket that died without a close drops out
within that. What SPEC invariant 9 needs to outlive Redis goes to SQL (``realtime.models``): each viewer the
first time this process sees them, and the room's count whenever it changed.
"""

from __future__ import annotations

import os
from importlib import resources

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.db import insert_ignoring_conflicts
from realtime.keys import presence_keys
from realtime.models import RoomViewer, ViewerSample


class Presence:
    def __init__(
        self,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        interval: float = 1.0,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.clock = clock
        self.interval = interval
        self._script = redis.register_script(
            resources.files("realtime").joinpath("lua/presence.lua").read_text()
        )
        self._process = f"{os.getpid()}-{id(self):x}"
        self._recorded: dict[str, set[str]] = {}  # room id -> viewers already in ``room_viewers``
        self._last_sample: dict[str, int] = {}  # room id -> the count last written to ``room_viewer_samples``

    @property
    def fresh_ms(self) -> int:
        """How long a report counts."""
        return int(self.interval * 2500)

    async def report(self, room_id: str, viewers: set[str], sockets: int, *, now_ms: int) -> int:
        """This process has ``sockets`` connections to the room, of ``viewers``: the room's viewers now,
        across processes (recorded in SQL as well)."""
        now = now_ms
        viewers_now, connections_now = (
            int(n)
            for n in await self._script(
                keys=presence_keys(room_id), args=[now, self.fresh_ms, self._process, sockets, *viewers]
            )
        )
        await self._record(room_id, viewers, viewers_now, connections_now, now)
        return viewers_now

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

    def forget(self, room_id: str) -> None:
        """No connection to the room is left here: its viewers are recorded again if they come back."""
        self._recorded.pop(room_id, None)

    async def numbers(self, room_id: str) -> dict[str, int]:
        """The room's live numbers, across processes (unique viewers and the peak are in SQL)."""
        k = presence_keys(room_id)
        now = self.clock.now_ms()
        fresh = self.fresh_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(k.viewers, now - fresh, "+inf")
            pipe.hgetall(k.conns)
            viewers, conns = await pipe.execute()
        sockets = 0
        for value in conns.values():
            n, _, at = value.decode().partition(":")
            if int(at) > now - fresh:
                sockets += int(n)
        return {"viewers_now": int(viewers), "connections_now": sockets}
