"""Reading a room's HLS files to serve them, fast enough for a thousand players in one process
(``docs/benchmarks.md``, issue 14): each file is read whole in one thread hop (Starlette's ``FileResponse``
takes one per 64 KiB), and what many players ask for in the same seconds is answered from memory.

- Segments never change once listed: the newest ones are kept in memory, least recently used out first,
  up to ``cache_bytes`` (``LIVECART_HLS_CACHE_MB``).
- A playlist changes every segment: one read serves every player for ``fresh_seconds`` (half a second; the
  players and any cache in front are told ``max-age=1``).
- A room's state (whether its recording exists, ended, is hidden) is looked at once per ``fresh_seconds``:
  hiding or deleting a replay reaches the players within that; a deleted room's segments leave memory.

One per app (every worker has its own); files are only ever read, never written, here.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from live.hls_store import ENDED, HIDDEN, HlsStore


@dataclass(frozen=True, slots=True)
class RoomState:
    exists: bool
    ended: bool
    hidden: bool


class HlsFiles:
    def __init__(self, store: HlsStore, *, cache_bytes: int, fresh_seconds: float = 0.5) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self.fresh_seconds = fresh_seconds
        self._segments: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._held = 0
        self._playlists: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._rooms: dict[str, tuple[float, RoomState]] = {}

    async def room(self, room_id: str) -> RoomState:
        now = time.monotonic()
        seen = self._rooms.get(room_id)
        if seen is not None and now - seen[0] < self.fresh_seconds:
            return seen[1]
        state = await asyncio.to_thread(_room_state, self.store.room_dir(room_id))
        if not state.exists:
            self._forget(room_id)
        self._rooms[room_id] = (now, state)
        if len(self._rooms) > 10_000:  # rooms seen long ago
            self._rooms = {k: v for k, v in self._rooms.items() if now - v[0] < self.fresh_seconds}
        return state

    async def playlist(self, room_id: str, name: str) -> bytes:
        """The playlist as read at most ``fresh_seconds`` ago; ``FileNotFoundError`` before it exists."""
        now = time.monotonic()
        seen = self._playlists.get((room_id, name))
        if seen is not None and now - seen[0] < self.fresh_seconds:
            return seen[1]
        text = await asyncio.to_thread((self.store.room_dir(room_id) / name).read_bytes)
        self._playlists[(room_id, name)] = (now, text)
        return text

    async def segment(self, room_id: str, name: str) -> bytes:
        """A segment, from memory when it is there; ``FileNotFoundError`` when it does not exist."""
        key = (room_id, name)
        held = self._segments.get(key)
        if held is not None:
            self._segments.move_to_end(key)
            return held
        data = await asyncio.to_thread((self.store.room_dir(room_id) / name).read_bytes)
        if len(data) <= self.cache_bytes // 4 and key not in self._segments:
            self._segments[key] = data
            self._held += len(data)
            while self._held > self.cache_bytes:
                _, dropped = self._segments.popitem(last=False)
                self._held -= len(dropped)
        return data

    def _forget(self, room_id: str) -> None:
        for key in [k for k in self._segments if k[0] == room_id]:
            self._held -= len(self._segments.pop(key))
        for key in [k for k in self._playlists if k[0] == room_id]:
            del self._playlists[key]

    @property
    def held_bytes(self) -> int:
        return self._held


def _room_state(folder: Path) -> RoomState:
    return RoomState(
        exists=folder.is_dir(), ended=(folder / ENDED).exists(), hidden=(folder / HIDDEN).exists()
    )
