"""At most ``max_per_viewer`` open sockets per viewer, across every process of a deployment (SPEC §13): a
viewer who opens one more has their oldest closed with 4509 (``TOO_MANY_SOCKETS``, final), wherever it is.

The count lives in Redis (``realtime.keys.socket_keys``, hash-tagged with the room, so each script touches
one slot): per viewer, a zset of their open sockets, member ``<opened>:<process>:<connection>``, score the
time until which the entry counts. ``<opened>`` is Redis's clock, so "oldest" means the same on every
process and machine.

- ``admit`` (``lua/socket_admit.lua``): adds the socket and, atomically, evicts the viewer's oldest past the
  cap into the room's evicted set. The evicted sockets of this process are returned (closed at once).
- ``refresh`` (``lua/socket_refresh.lua``), every tick (the presence interval): this process's entries count
  for another ``stale_after``, and the ones another process evicted are returned (closed then). A socket
  evicted by another process is so closed within one tick.
- ``leave``: a socket that closed stops counting.

A process killed without closing its sockets stops refreshing them: after ``stale_after`` they no longer
count (or are evicted first, being the oldest). Hosts are not counted (one per room, signed in to a session
that can be revoked); the server-wide connection cap bounds every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.exceptions import RedisError

from base.ids import random_code
from realtime.hub import Connection, State
from realtime.keys import socket_keys

log = logging.getLogger("livecart.realtime")


@dataclass(frozen=True, slots=True)
class _Counted:
    room_id: str
    viewer_id: str
    member: str


class SocketCap:
    def __init__(self, redis: Redis, *, max_per_viewer: int, stale_after: float = 5.0) -> None:
        self.redis = redis
        self.max_per_viewer = max_per_viewer
        self.stale_ms = int(stale_after * 1000)
        lua = resources.files("realtime").joinpath("lua")
        self._admit = redis.register_script(lua.joinpath("socket_admit.lua").read_text())
        self._refresh = redis.register_script(lua.joinpath("socket_refresh.lua").read_text())
        #: names this process in members (unique across machines; no ``:`` in it)
        self.process = random_code(12)
        self._counted: dict[int, _Counted] = {}  # connection id -> its entry
        self._leaving: set[asyncio.Task[None]] = set()

    def _local(self, members: list[str]) -> list[int]:
        """The connection ids of this process among ``members``."""
        ids = []
        for member in members:
            _, process, conn_id = member.split(":")
            if process == self.process:
                ids.append(int(conn_id))
        return ids

    async def admit(self, conn: Connection) -> list[int]:
        """Count a viewer's new socket; the ids of this process's connections it evicts (close them with
        4509). Raises what Redis raises."""
        assert conn.viewer_id is not None
        keys = socket_keys(conn.room_id, conn.viewer_id)
        found = await self._admit(
            keys=keys, args=[f"{self.process}:{conn.id}", self.max_per_viewer, self.stale_ms]
        )
        member, *evicted = (m.decode() if isinstance(m, bytes) else str(m) for m in found)
        counted = _Counted(conn.room_id, conn.viewer_id, member)
        if conn.state is State.CLOSED:  # it went away while it was being counted
            self._forget(counted)
        else:
            self._counted[conn.id] = counted
        gone = self._local(evicted)
        for conn_id in gone:
            self._counted.pop(conn_id, None)
        return gone

    def leave(self, conn: Connection) -> None:
        """The connection closed (idempotent; no waiting): it stops counting."""
        counted = self._counted.pop(conn.id, None)
        if counted is not None:
            self._forget(counted)

    def _forget(self, counted: _Counted) -> None:
        task = asyncio.ensure_future(self._remove(counted))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _remove(self, counted: _Counted) -> None:
        with contextlib.suppress(RedisError, OSError):  # it ages out on its own
            await self.redis.zrem(socket_keys(counted.room_id, counted.viewer_id).sockets, counted.member)

    async def refresh(self) -> list[int]:
        """This process's tick: its sockets keep counting; the ids of those another process evicted
        (close them with 4509). One script call per room."""
        rooms: dict[str, dict[str, list[str]]] = {}
        for counted in self._counted.values():
            rooms.setdefault(counted.room_id, {}).setdefault(counted.viewer_id, []).append(counted.member)
        gone: list[int] = []
        for room_id, viewers in rooms.items():
            keys = [socket_keys(room_id, "").evicted]
            args: list[str | int] = [self.stale_ms]
            for viewer_id, members in viewers.items():
                keys.append(socket_keys(room_id, viewer_id).sockets)
                args += [len(members), *members]
            evicted = await self._refresh(keys=keys, args=args)
            gone += self._local([m.decode() if isinstance(m, bytes) else str(m) for m in evicted])
        for conn_id in gone:
            self._counted.pop(conn_id, None)
        return gone

    async def close(self) -> None:
        """Wait for the removals under way (shutdown)."""
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)
