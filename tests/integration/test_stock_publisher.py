"""The live stock publisher against real Redis: coalesced to one event per interval, a held-back value sent
the moment the gate opens, and a card whose publish failed kept until it goes out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from livecart.clock import SystemClock
from realtime.broker_redis import RedisBroker, room_keys
from realtime.stock import StockPublisher

ROOM, CARD = "rm_stock", "cd_stock"
SALE = "{card:" + CARD + "}:sale"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.hset(SALE, mapping={"stock_left": 100, "room_id": ROOM})
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def running(redis: Redis, **settings: float) -> AsyncIterator[StockPublisher]:
    """A started publisher, stopped on the way out."""
    publisher = StockPublisher(redis, RedisBroker(redis), SystemClock(), **settings)
    publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


async def stock_events(redis: Redis) -> list[tuple[int, int]]:
    """The room's stock events so far: (stock left, server time in ms)."""
    entries = await redis.xrange(room_keys(ROOM)[1])
    frames = [json.loads(fields[b"f"]) for _, fields in entries]
    return [(f["stock_left"], f["ts"]) for f in frames if f["type"] == "stock"]


async def wait_for(redis: Redis, predicate: object, timeout: float = 3.0) -> list[tuple[int, int]]:
    async with asyncio.timeout(timeout):
        while not predicate(events := await stock_events(redis)):  # type: ignore[operator]
            await asyncio.sleep(0.005)
    return events


async def test_a_held_back_value_goes_out_when_the_gate_opens(redis: Redis) -> None:
    async with running(redis, interval=0.3, tick=0.01) as publisher:
        publisher.changed(CARD)
        first = await wait_for(redis, lambda e: len(e) == 1)
        for left in (99, 98, 97):  # three sales just after: the gate is closed for 300 ms
            await redis.hset(SALE, "stock_left", left)
            publisher.changed(CARD)
            await asyncio.sleep(0.02)
        events = await wait_for(redis, lambda e: len(e) == 2)
        seen_at = time.time() * 1000
        await asyncio.sleep(0.5)
        assert await stock_events(redis) == events  # one event for the three: no more
        (_, t0), (left, t1) = first[0], events[1]
        assert left == 97
        assert t1 - t0 >= 300  # never sooner than the interval
        assert seen_at - t0 <= 300 + 100, "the held-back value waited past the gate's opening"


async def test_a_burst_gives_at_most_one_event_per_interval_and_ends_on_the_truth(redis: Redis) -> None:
    async with running(redis, interval=0.1) as publisher:
        first_sale = time.time() * 1000
        for left in range(99, -1, -1):  # 100 sales over about a second
            await redis.hset(SALE, "stock_left", left)
            publisher.changed(CARD)
            await asyncio.sleep(0.01)
        last_sale = time.time() * 1000
        events = await wait_for(redis, lambda e: e and e[-1][0] == 0)
        assert events[-1][1] - last_sale <= 100 + 80  # the final value within the interval (and a tick)
        times = [t for _, t in events]
        assert all(b - a >= 100 for a, b in itertools.pairwise(times)), times
        assert 3 <= len(events) <= (last_sale - first_sale) / 100 + 2, events  # about 10 a second, not 100
        values = [v for v, _ in events]
        assert values == sorted(values, reverse=True) and len(set(values)) == len(values)


async def test_a_card_whose_publish_failed_goes_out_once_redis_takes_it(redis: Redis) -> None:
    gate = room_keys(ROOM)[3]
    await redis.set(gate, "not a hash")  # the publish script fails on it (WRONGTYPE): a real Redis error
    async with running(redis, interval=0.1, retry=0.2) as publisher:
        publisher.changed(CARD)
        await asyncio.sleep(0.3)
        assert await stock_events(redis) == []
        await redis.delete(gate)
        events = await wait_for(redis, lambda e: len(e) == 1, timeout=1.0)
        assert events[0][0] == 100


async def test_an_unchanged_value_and_a_card_without_a_sale_publish_nothing(redis: Redis) -> None:
    async with running(redis, interval=0.05) as publisher:
        publisher.changed(CARD)
        await wait_for(redis, lambda e: len(e) == 1)
        await asyncio.sleep(0.1)
        publisher.changed(CARD)  # the same stock as last published
        publisher.changed("cd_no_sale")
        await asyncio.sleep(0.3)
        assert len(await stock_events(redis)) == 1
        assert not publisher.marked
