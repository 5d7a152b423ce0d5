"""Personal frames (a buyer's ``order``) on their way to a broker: queued, never awaited by the caller, and
handed to the broker in batches, per room, the frames of every ``delay`` together. Both brokers use it; each
says how a batch is stored (``Send``).

Why a queue: a buy's 201 does not wait for its frame, and under load one Redis call for many frames costs a
fraction of a call each (redis-py spends about 130 us of CPU on any one command). A batch the broker fails
to store is its to log: a personal frame is a notice, the state is in SQL and the HTTP answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("livecart.realtime.broker")

#: (room id, [(viewer id, frame JSON), ...] in the order they were queued): store one room's batch
Send = Callable[[str, list[tuple[str, str]]], Awaitable[None]]


class PersonalQueue:
    def __init__(self, send: Send, *, delay: float = 0.005) -> None:
        self.send = send
        self.delay = delay
        self._queued: list[tuple[str, str, str]] = []  # (room, viewer, frame) not sent yet
        self._sending: asyncio.Task[None] | None = None
        self._closed = False

    def put(self, room_id: str, viewer_id: str, frame: str) -> None:
        """Queue a frame for one viewer's sockets (no I/O here). Dropped once the queue is closed."""
        if self._closed:  # shutting down: the store is about to be closed under the frame
            log.debug("personal frame for %s dropped: the broker has stopped", viewer_id)
            return
        self._queued.append((room_id, viewer_id, frame))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def flush(self) -> None:
        """Wait until every frame queued so far has been handed to the broker (or failed)."""
        while self._sending is not None:
            await asyncio.shield(self._sending)

    async def close(self) -> None:
        """Send what is queued; from now on frames are dropped."""
        self._closed = True
        await self.flush()

    async def _send(self) -> None:
        try:
            while self._queued:
                await asyncio.sleep(self.delay)  # the frames of the next few ms join this batch
                batch, self._queued = self._queued, []
                by_room: dict[str, list[tuple[str, str]]] = {}
                for room_id, to, frame in batch:
                    by_room.setdefault(room_id, []).append((to, frame))
                for room_id, frames in by_room.items():
                    await self.send(room_id, frames)
        finally:
            self._sending = None
