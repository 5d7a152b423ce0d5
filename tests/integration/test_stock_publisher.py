"""The live stock publisher against real Redis: coalesced to one event per interval, a held-back value sent
the moment the gate opens, and a card whose publish failed kept until it goes out.

The assertions are about order and behaviour, not about how fast a loaded machine runs: where time is the
subject the publisher gets a clock the test moves (the event's ``ts`` is that clock), the gate's lower bound
is exact, and an upper bound is the configured interval plus ``SLACK_S`` of scheduling delay. The ways the
publisher can fail here (a value held back until a change that never comes, or until a retry that is
``RETRY_S`` away) miss those bounds by far."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from base.clock import Clock, SystemClock
from realtime.broker_redis import RedisBroker, room_keys
from realtime.stock import StockPublisher
from shop.inventory.store import Inventory

ROOM, CARD = "rm_stock", "cd_stock"
SALE = "{card:" + CARD + "}:sale"
#: Scheduling delay a loaded 2-core CI machine may add to anything the publisher does.
SLACK_S = 2.0
#: The retry of a failed publish, in the tests whose subject is not the retry: far beyond every bound.
RETRY_S = 60.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.hset(SALE, mapping={"stock_left": 100, "room_id": ROOM})
    yield client
    await client.aclose()


class SteppedClock:
    """The publisher's clock, still until the test moves it."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def now_ms(self) -> int:
        return self.ms


class CountingBroker(RedisBroker):
    """The real broker, counting the publishes that raised."""

    failures = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().publish(*args, **kwargs)
        except Exception:
            self.failures += 1
            raise


@contextlib.asynccontextmanager
async def running(
    redis: Redis, *, clock: Clock | None = None, broker: RedisBroker | None = None, **settings: float
) -> AsyncIterator[StockPublisher]:
    """A started publisher, stopped on the way out."""
    stock = Inventory(redis)
    publisher = StockPublisher(stock, broker or RedisBroker(redis), clock or SystemClock(), **settings)
    publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


async def stock_events(redis: Redis) -> list[tuple[int, int]]:
    """The room's stock events so far: (stock left, publisher's time in ms)."""
    entries = await redis.xrange(room_keys(ROOM)[1])
    frames = [json.loads(fields[b"f"]) for _, fields in entries]
    return [(f["stock_left"], f["ts"]) for f in frames if f["type"] == "stock"]


async def wait_for(
    redis: Redis, predicate: Callable[[list[tuple[int, int]]], bool], timeout: float = SLACK_S
) -> list[tuple[int, int]]:
    async with asyncio.timeout(timeout):
        while not predicate(events := await stock_events(redis)):
            await asyncio.sleep(0.005)
    return events


async def until(check: Callable[[], bool], timeout: float = SLACK_S) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_a_held_back_value_goes_out_when_the_gate_opens(redis: Redis) -> None:
    interval = 0.3
    clock = SteppedClock()
    t0 = clock.ms
    async with running(redis, clock=clock, interval=interval, tick=0.01, retry=RETRY_S) as publisher:
        publisher.changed(CARD)
        assert await wait_for(redis, lambda e: len(e) == 1) == [(100, t0)]
        for left in (99, 98, 97):  # three sales while the gate is closed (the clock has not moved)
            await redis.hset(SALE, "stock_left", left)
            publisher.changed(CARD)
        clock.ms += round(interval * 1000) - 1
        await asyncio.sleep(interval)  # the publisher looks again, and the gate is still closed
        assert await stock_events(redis) == [(100, t0)]
        assert CARD in publisher.marked
        clock.ms += 1  # the gate opens: the latest value goes out with no further change
        events = await wait_for(redis, lambda e: len(e) == 2, timeout=interval + SLACK_S)
        assert events == [(100, t0), (97, t0 + round(interval * 1000))]  # one event for the three
        await asyncio.sleep(2 * interval)
        assert await stock_events(redis) == events, "published again with nothing changed"
        assert not publisher.marked


async def test_a_burst_gives_at_most_one_event_per_interval_and_ends_on_the_truth(redis: Redis) -> None:
    interval_ms = 100
    async with running(redis, interval=interval_ms / 1000, retry=RETRY_S) as publisher:
        first_sale = time.time() * 1000
        for left in range(99, -1, -1):  # 100 sales over about a second (longer on a loaded machine)
            await redis.hset(SALE, "stock_left", left)
            publisher.changed(CARD)
            await asyncio.sleep(0.01)
        last_sale = time.time() * 1000
        # The final value goes out on its own, after at most an interval (and a tick) plus slack.
        events = await wait_for(redis, lambda e: bool(e) and e[-1][0] == 0, timeout=SLACK_S + 1)
        assert events[-1][1] - last_sale <= interval_ms + SLACK_S * 1000
        times = [t for _, t in events]
        assert all(b - a >= interval_ms for a, b in itertools.pairwise(times)), times  # never sooner
        # About 10 a second, not 100: events at least an interval apart while the sales went on, and
        # the final value after them.
        assert 3 <= len(events) <= (last_sale - first_sale) / interval_ms + 2, events
        values = [v for v, _ in events]
        assert values == sorted(values, reverse=True) and len(set(values)) == len(values)


async def test_a_card_whose_publish_failed_goes_out_once_redis_takes_it(redis: Redis) -> None:
    gate = room_keys(ROOM)[3]
    await redis.set(gate, "not a hash")  # the publish script fails on it (WRONGTYPE): a real Redis error
    broker = CountingBroker(redis)
    retry = 0.2
    async with running(redis, broker=broker, interval=0.1, retry=retry) as publisher:
        publisher.changed(CARD)
        await until(lambda: broker.failures >= 1)
        assert await stock_events(redis) == []
        assert CARD in publisher.marked  # kept, to be tried again
        await redis.delete(gate)
        events = await wait_for(redis, lambda e: len(e) == 1, timeout=retry + SLACK_S)
        assert events[0][0] == 100
        await until(lambda: not publisher.marked)


async def test_an_unchanged_value_and_a_card_without_a_sale_publish_nothing(redis: Redis) -> None:
    async with running(redis, interval=0.05) as publisher:
        publisher.changed(CARD)
        await wait_for(redis, lambda e: len(e) == 1)
        publisher.changed(CARD)  # the same stock as last published
        publisher.changed("cd_no_sale")
        await until(lambda: not publisher.marked)
        # A real change after them: the publisher handles changes in order, so once it is out, whatever
        # it did with the two above is in the stream too.
        await redis.hset(SALE, "stock_left", 99)
        publisher.changed(CARD)
        events = await wait_for(redis, lambda e: e[-1][0] == 99)
        assert [v for v, _ in events] == [100, 99]
        assert not publisher.marked
