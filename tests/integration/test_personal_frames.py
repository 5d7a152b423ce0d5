"""Personal frames (a buyer's order) against real Redis: queued without waiting, sent in one call per room,
in order, all of them out by the time the broker stops, and none queued after it (Redis closes next)."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from realtime.broker_redis import RedisBroker, room_keys


async def personal(redis: Redis, room_id: str) -> list[tuple[str, int]]:
    entries = await redis.xrange(room_keys(room_id)[4])
    return [(fields[b"to"].decode(), json.loads(fields[b"f"])["order"]["n"]) for _, fields in entries]


async def test_frames_are_queued_then_sent_in_order_per_room(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    broker = RedisBroker(redis, personal_delay=0.01)
    try:
        for n in range(30):
            broker.send_personal("rm_a" if n % 3 else "rm_b", f"vw_{n % 2}", "order", {"order": {"n": n}})
        assert await redis.exists(room_keys("rm_a")[4], room_keys("rm_b")[4]) == 0  # nobody waited for Redis
        await broker.flush_personal()
        assert await personal(redis, "rm_a") == [(f"vw_{n % 2}", n) for n in range(30) if n % 3]
        assert await personal(redis, "rm_b") == [(f"vw_{n % 2}", n) for n in range(30) if not n % 3]
        broker.send_personal("rm_b", "vw_9", "order", {"order": {"n": 99}})
        await broker.stop()  # stopping sends what is queued
        assert (await personal(redis, "rm_b"))[-1] == ("vw_9", 99)
        broker.send_personal("rm_b", "vw_9", "order", {"order": {"n": 100}})  # after the stop: dropped
        await asyncio.sleep(0.05)
        assert (await personal(redis, "rm_b"))[-1] == ("vw_9", 99)
    finally:
        await redis.flushdb()
        await redis.aclose()


async def test_a_refused_batch_is_dropped_and_the_next_goes_out(redis_url: str) -> None:
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
