"""Room events across processes, in Redis: one stream per room, ordered by a per-room ``seq``.

Every process publishes with ``publish.lua`` (next seq and append, in one script); every process with
viewers of a room reads its stream and fans the frames out to its own sockets. The stream, trimmed to
about ``history`` entries, is the replay buffer of reconnecting viewers. Personal frames (a buyer's order)
go to a second stream per room and are not part of the room's sequence. A retracted (deleted) chat line
stays in the stream; its seq goes in a sorted set beside it (``retract.lua``) and ``replay`` leaves it out.

All keys of a room carry its hash tag (``{room:ID}``); the reader's ``XREAD`` over several rooms is the only
multi-slot command (on Redis Cluster it would be issued per slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from realtime.broker import GapHandler, Handler, Later, Published
from realtime.frames import dumps
from realtime.keys import room_keys, room_of
from realtime.personal import PersonalQueue

__all__ = ["Later", "RedisBroker", "room_keys", "text_of"]

log = logging.getLogger("livecart.realtime.broker")


def text_of(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisBroker:
    """The ``Broker`` of any number of processes sharing one Redis."""

    def __init__(
        self, redis: Redis, *, history: int = 1000, block_ms: int = 200, personal_delay: float = 0.005
    ) -> None:
        self.redis = redis
        self.history = history
        self.block_ms = block_ms
        self._publish = redis.register_script(
            resources.files("realtime").joinpath("lua/publish.lua").read_text()
        )
        self._personal_script = redis.register_script(
            resources.files("realtime").joinpath("lua/personal.lua").read_text()
        )
        self._retract = redis.register_script(
            resources.files("realtime").joinpath("lua/retract.lua").read_text()
        )
        #: rooms read by this process: room id -> (last seq read, last personal id read)
        self._watched: dict[str, tuple[int, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._handler: Handler | None = None
        self._on_gap: GapHandler | None = None
        self._personal = PersonalQueue(self._store_personal, delay=personal_delay)

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
        """Append an event; its seq, or why the gate held it back: ``Later`` (too soon after the last one:
        publish it again when the gate opens) or ``"same"`` (that value was the last one)."""
        keys = room_keys(room_id)[:4]
        args: list[str | int] = [
            kind, dumps(body), self.history, now_ms, gate, min_interval_ms, value, secrets.token_hex(8)
        ]  # fmt: skip
        outcome, seq, _ = (text_of(v) for v in await self._publish(keys=keys, args=args))
        if outcome == "later":
            return Later(int(seq))
        if outcome == "same":
            return "same"
        return int(seq)

    async def gate_values(self, room_id: str) -> dict[str, str]:
        """The value each of the room's gates last let through."""
        gate = await self.redis.hgetall(room_keys(room_id).gate)
        prefix = "v:"
        return {
            key[len(prefix) :]: text_of(v) for k, v in gate.items() if (key := text_of(k)).startswith(prefix)
        }

    async def retract(self, room_id: str, seq: int) -> bool:
        """Mark chat line ``seq`` retracted (``retract.lua``: one script on the room's keys); ``False`` when
        the stream holds no such event, it is not a chat line, or it was retracted already."""
        if seq < 1:
            return False
        k = room_keys(room_id)
        return bool(await self._retract(keys=[k.events, k.retracted], args=[seq]))

    def send_personal(self, room_id: str, viewer_id: str, kind: str, body: dict[str, Any]) -> None:
        """Queue a frame for one viewer's sockets; the frames of the next few ms go in one script call per
        room (``realtime.personal``). A batch Redis refuses is logged and dropped."""
        self._personal.put(room_id, viewer_id, dumps({"type": kind, **body}))

    async def flush_personal(self) -> None:
        """Wait until every personal frame queued so far has gone to Redis (or failed)."""
        await self._personal.flush()

    async def _store_personal(self, room_id: str, frames: list[tuple[str, str]]) -> None:
        args = [part for frame in frames for part in frame]
        try:  # one call per room (a room's keys share a slot)
            await self._personal_script(keys=[room_keys(room_id).personal], args=[self.history, *args])
        except Exception as exc:
            log.warning("%d personal frames not sent: %s", len(frames), exc)

    # -- reading ---------------------------------------------------------------------------------------

    async def position(self, room_id: str) -> tuple[int, str]:
        """The room's last seq and its epoch (one is made if the room has none yet)."""
        k = room_keys(room_id)
        await self.redis.set(k.epoch, secrets.token_hex(8), nx=True)
        seq, epoch = await self.redis.mget(k.seq, k.epoch)
        return int(seq or 0), text_of(epoch)

    async def replay(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        """The events after ``since`` if the stream still holds all of them for this epoch, else ``None``;
        retracted chat lines are left out."""
        seq, current = await self.position(room_id)
        if epoch != current or since > seq or since < 0:
            return None
        if since == seq:
            return []
        k = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:  # one moment: the stream and the set agree
            pipe.xrange(k.events, min=f"{since + 1}-0", max="+")
            pipe.zrangebyscore(k.retracted, since + 1, "+inf")
            entries, retracted = await pipe.execute()
        events: list[tuple[int, bytes]] = [(int(text_of(i).split("-")[0]), v[b"f"]) for i, v in entries]
        if not events or events[0][0] != since + 1:
            return None  # trimmed away: too old to replay
        if not retracted:
            return events
        gone = {int(text_of(s)) for s in retracted}
        return [event for event in events if event[0] not in gone]

    async def watch(self, room_id: str, seq: int) -> None:
        """Read the room's events after ``seq``, and its personal frames from now on (idempotent)."""
        if room_id in self._watched:
            return
        last = await self.redis.xrevrange(room_keys(room_id).personal, "+", "-", count=1)
        self._watched.setdefault(room_id, (seq, text_of(last[0][0]) if last else "0-0"))

    def unwatch(self, room_id: str) -> None:
        self._watched.pop(room_id, None)

    def start(self, handler: Handler, on_gap: GapHandler | None = None) -> None:
        self._handler = handler
        self._on_gap = on_gap
        self._task = asyncio.create_task(self._read(), name="realtime-reader")

    async def stop(self) -> None:
        """Send the personal frames queued so far and stop reading; frames queued from now on are dropped."""
        await self._personal.close()
        if self._task is not None:
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.2)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _read(self) -> None:
        assert self._handler is not None
        while True:
            if not self._watched:
                await asyncio.sleep(self.block_ms / 1000)
                continue
            streams: dict[str, str] = {}
            rooms = list(self._watched.items())
            for room_id, (seq, personal) in rooms:
                k = room_keys(room_id)
                streams[k.events] = f"{seq}-0"
                streams[k.personal] = personal
            try:
                got: Any = await self.redis.xread(streams, block=self.block_ms, count=1000)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading room events failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for key, entries in got or []:
                key = text_of(key)
                room_id = room_of(key)
                if room_id not in self._watched:
                    continue
                seq, personal = self._watched[room_id]
                for entry_id, fields in entries:
                    eid = text_of(entry_id)
                    if key.endswith(":events"):
                        next_seq = int(eid.split("-")[0])
                        if next_seq != seq + 1 and self._on_gap is not None:
                            self._on_gap(room_id)  # the events between were trimmed before we read them
                        seq = next_seq
                        self._handler(room_id, seq, fields[b"f"], None)
                    else:
                        personal = eid
                        self._handler(room_id, 0, fields[b"f"], text_of(fields[b"to"]))
                if room_id in self._watched:  # a handler may have unwatched it (its last viewer left)
                    self._watched[room_id] = (seq, personal)
