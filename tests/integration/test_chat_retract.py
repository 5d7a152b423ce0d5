"""Retracting a chat line from a room's history on the Redis broker (issue 15, moderation): ``retract.lua``
against the real Redis. The memory broker's same contract is in ``tests/unit/test_broker_memory.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from realtime.broker_redis import RedisBroker
from realtime.keys import room_keys

ROOM = "rm_retract"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def kinds(replayed: list[tuple[int, bytes]] | None) -> list[tuple[int, str]]:
    """(seq, type) of each replayed event, checking that each frame's own seq is the one it is listed at."""
    assert replayed is not None
    out = []
    for seq, frame in replayed:
        event = json.loads(frame)
        assert event["seq"] == seq
        out.append((seq, event["type"]))
    return out


async def publish(broker: RedisBroker, kind: str, body: dict[str, Any] | None = None) -> int:
    seq = await broker.publish(ROOM, kind, body or {}, now_ms=0)
    assert isinstance(seq, int)
    return seq


async def test_a_retracted_chat_line_is_not_replayed_and_the_rest_stays_in_order(redis: Redis) -> None:
    broker = RedisBroker(redis, history=100)
    await publish(broker, "chat", {"text": "hello"})  # 1
    await publish(broker, "chat", {"text": "rude"})  # 2
    await publish(broker, "stock", {"stock_left": 3})  # 3
    await publish(broker, "chat", {"text": "fine"})  # 4
    seq, epoch = await broker.position(ROOM)
    assert await broker.retract(ROOM, 2) is True
    assert kinds(await broker.replay(ROOM, 0, epoch)) == [(1, "chat"), (3, "stock"), (4, "chat")]
    assert kinds(await broker.replay(ROOM, 1, epoch)) == [(3, "stock"), (4, "chat")]
    assert kinds(await broker.replay(ROOM, 2, epoch)) == [(3, "stock"), (4, "chat")]
    assert json.loads((await broker.replay(ROOM, 3, epoch) or [])[0][1])["text"] == "fine"
    # None still means exactly what it meant; the sequence does not move; the stream keeps the entry.
    assert await broker.replay(ROOM, 0, "another epoch") is None
    assert await broker.replay(ROOM, seq + 1, epoch) is None
    assert await broker.position(ROOM) == (4, epoch)
    assert await redis.xlen(room_keys(ROOM).events) == 4
    assert await redis.zrange(room_keys(ROOM).retracted, 0, -1, withscores=True) == [(b"2", 2.0)]
    # The last line retracted: what follows the one before it is nothing, not None.
    assert await broker.retract(ROOM, 4) is True
    assert await broker.replay(ROOM, 3, epoch) == []
    # Another room's line of the same seq is untouched.
    other = await broker.publish("rm_other", "chat", {"text": "rude"}, now_ms=0)
    assert other == 1
    assert kinds(await broker.replay("rm_other", 0, (await broker.position("rm_other"))[1])) == [(1, "chat")]


async def test_only_a_chat_line_still_in_the_history_can_be_retracted_and_only_once(redis: Redis) -> None:
    broker = RedisBroker(redis, history=5)
    await publish(broker, "stock", {"stock_left": 3})  # 1
    for i in range(300):  # MAXLEN ~ trims whole nodes: enough to trim the first ones for sure
        await publish(broker, "chat", {"n": i})
    seq, epoch = await broker.position(ROOM)
    first = int((await redis.xrange(room_keys(ROOM).events, count=1))[0][0].split(b"-")[0])
    assert first > 2
    await publish(broker, "viewers", {"count": 2})  # seq + 1
    before = await broker.replay(ROOM, first - 1, epoch)
    assert before is not None
    assert await broker.retract(ROOM, 1) is False  # not chat, and trimmed
    assert await broker.retract(ROOM, first - 1) is False  # chat, but trimmed
    assert await broker.retract(ROOM, seq + 1) is False  # not chat
    assert await broker.retract(ROOM, seq + 2) is False  # not published yet
    assert await broker.retract(ROOM, 0) is False and await broker.retract(ROOM, -1) is False
    assert await broker.retract("rm_none", 1) is False
    assert await broker.replay(ROOM, first - 1, epoch) == before  # nothing changed
    assert await redis.exists(room_keys(ROOM).retracted) == 0
    assert await broker.retract(ROOM, seq) is True
    assert await broker.retract(ROOM, seq) is False  # twice
    after = await broker.replay(ROOM, first - 1, epoch)
    assert after is not None and after == [e for e in before if e[0] != seq]


async def test_concurrent_retracts_of_one_line_succeed_once(redis: Redis, redis_url: str) -> None:
    brokers = [RedisBroker(Redis.from_url(redis_url)) for _ in range(4)]  # as four processes would
    try:
        for i in range(20):
            await publish(brokers[0], "chat", {"n": i})
        for target in range(1, 21):
            outcomes = await asyncio.gather(*(b.retract(ROOM, target) for b in brokers for _ in range(5)))
            assert outcomes.count(True) == 1, (target, outcomes)
        _, epoch = await brokers[0].position(ROOM)
        assert await brokers[0].replay(ROOM, 0, epoch) == []
        assert await redis.zcard(room_keys(ROOM).retracted) == 20
    finally:
        for b in brokers:
            await b.redis.aclose()


async def test_the_retracted_set_stays_within_the_history(redis: Redis) -> None:
    history = 50
    broker = RedisBroker(redis, history=history)
    k = room_keys(ROOM)
    for i in range(1500):
        seq = await publish(broker, "chat", {"n": i})
        if i % 3 == 0:
            assert await broker.retract(ROOM, seq) is True
        if i % 100 == 99:
            first = int((await redis.xrange(k.events, count=1))[0][0].split(b"-")[0])
            marks = [int(m) for m in await redis.zrange(k.retracted, 0, -1)]
            assert marks and min(marks) >= first, (i, first, marks[:3])
            assert len(marks) <= await redis.xlen(k.events) // 3 + 1
    # What a reconnecting viewer gets is every kept line but the retracted ones, in order.
    seq, epoch = await broker.position(ROOM)
    since = seq - history
    replayed = await broker.replay(ROOM, since, epoch)
    assert replayed is not None
    assert [s for s, _ in replayed] == [s for s in range(since + 1, seq + 1) if (s - 1) % 3 != 0]


async def test_marks_of_a_room_redis_lost_go_at_the_next_retract(redis: Redis) -> None:
    broker = RedisBroker(redis, history=100)
    k = room_keys(ROOM)
    for i in range(10):
        await publish(broker, "chat", {"n": i})
    assert await broker.retract(ROOM, 9) is True
    await redis.delete(k.seq, k.events, k.epoch)  # the room lost, its marks not (a partial loss)
    for i in range(3):
        await publish(broker, "chat", {"n": i})  # numbered from 1 again, in a new epoch
    assert await broker.retract(ROOM, 9) is False  # no such line now
    assert await broker.retract(ROOM, 2) is True
    assert [int(m) for m in await redis.zrange(k.retracted, 0, -1)] == [2]
