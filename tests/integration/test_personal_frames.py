"""Personal frames (a buyer's order), over every broker: queued without waiting, sent together, in order
per room, all of them out by the time the broker stops, and none queued after it (with Redis, the
connection closes next). One test body runs over both brokers (``backend``); a refused batch is a Redis
matter and is tested on the Redis broker alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from realtime.broker import Broker
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import RedisBroker, room_keys


async def personal(redis: Redis, room_id: str) -> list[tuple[str, int]]:
    entries = await redis.xrange(room_keys(room_id)[4])
    return [(fields[b"to"].decode(), json.loads(fields[b"f"])["order"]["n"]) for _, fields in entries]


class Backend:
    """One kind of broker, and what it has sent so far."""

    def __init__(self, kind: str, redis: Redis) -> None:
        self.kind = kind
        self.redis = redis
        self._memory: MemoryBroker | None = None

    def broker(self, *, personal_delay: float) -> Broker:
        if self.kind == "redis":
            return RedisBroker(self.redis, personal_delay=personal_delay)
        self._memory = MemoryBroker(personal_delay=personal_delay)
        return self._memory

    async def sent(self, room_id: str) -> list[tuple[str, int]]:
        """The personal frames sent to the room, oldest first: (viewer, the order's ``n``)."""
        if self._memory is None:
            return await personal(self.redis, room_id)
        frames = self._memory.log.personal_frames(room_id)
        return [(to, json.loads(frame)["order"]["n"]) for to, frame in frames]


@pytest.fixture(params=["redis", "memory"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Backend]:
    redis = Redis.from_url(redis_url)
    try:
        yield Backend(str(request.param), redis)
    finally:
        await redis.flushdb()
        await redis.aclose()


async def test_frames_are_queued_then_sent_in_order_per_room(backend: Backend) -> None:
    broker = backend.broker(personal_delay=0.01)
    for n in range(30):
        broker.send_personal("rm_a" if n % 3 else "rm_b", f"vw_{n % 2}", "order", {"order": {"n": n}})
    assert await backend.sent("rm_a") == await backend.sent("rm_b") == []  # nobody waited for them
    await broker.flush_personal()
    assert await backend.sent("rm_a") == [(f"vw_{n % 2}", n) for n in range(30) if n % 3]
    assert await backend.sent("rm_b") == [(f"vw_{n % 2}", n) for n in range(30) if not n % 3]
    broker.send_personal("rm_b", "vw_9", "order", {"order": {"n": 99}})
    await broker.stop()  # stopping sends what is queued
    assert (await backend.sent("rm_b"))[-1] == ("vw_9", 99)
    broker.send_personal("rm_b", "vw_9", "order", {"order": {"n": 100}})  # after the stop: dropped
    await asyncio.sleep(0.05)
    assert (await backend.sent("rm_b"))[-1] == ("vw_9", 99)


async def test_a_refused_batch_is_dropped_and_the_next_goes_out(redis_url: str) -> None:
    """Redis broker only: Redis refusing a call (here WRONGTYPE) is what it is about."""
    redis = Redis.from_url(redis_url)
    broker = RedisBroker(redis, personal_delay=0.0)
    try:
        await redis.set(room_keys("rm_a")[4], "not a stream")  # XADD fails on it (WRONGTYPE)
        broker.send_personal("rm_a", "vw_1", "order", {"order": {"n": 1}})
        broker.send_personal("rm_b", "vw_1", "order", {"order": {"n": 2}})  # another room: not held up
        await broker.flush_personal()
        assert await personal(redis, "rm_b") == [("vw_1", 2)]
        await redis.delete(room_keys("rm_a")[4])
        broker.send_personal("rm_a", "vw_1", "order", {"order": {"n": 3}})
        await broker.flush_personal()
        assert await personal(redis, "rm_a") == [("vw_1", 3)]
    finally:
        await broker.stop()
        await redis.flushdb()
        await redis.aclose()
