"""The memory broker: its sans-I/O log tested synchronously (positions, the gate, history and replay, what a
reader is handed), then the asyncio adapter (events handed over as published, queued personal frames,
stop), and the CLI's refusal of it with several workers. The same contract against the running app is in
``tests/integration/test_realtime.py``, whose tests run over both brokers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from livecart.cli import main
from realtime.broker import Later
from realtime.broker_memory import MemoryBroker, RoomLog, event_frame

Read = list[tuple[str, int, Any, str | None]]


def reader(log: RoomLog, gaps: list[str] | None = None) -> tuple[Read, Any]:
    """What the log hands a reader, decoded, and a function that reads what is new."""
    got: Read = []

    def read() -> None:
        log.read(
            lambda room, seq, frame, to: got.append((room, seq, json.loads(frame), to)),
            gaps.append if gaps is not None else None,
        )

    return got, read


def test_events_are_numbered_per_room_and_framed_as_publish_lua_frames_them() -> None:
    log = RoomLog()
    assert log.publish("rm_a", "chat", {"from": "Ann", "text": "hé"}, now_ms=0) == 1
    assert log.publish("rm_a", "room", {}, now_ms=0) == 2
    assert log.publish("rm_b", "chat", {"text": "x"}, now_ms=0) == 1
    expected = '{"type":"chat","seq":1,"from":"Ann","text":"hé"}'
    assert event_frame("chat", 1, {"from": "Ann", "text": "hé"}) == expected.encode()
    assert event_frame("room", 2, {}) == b'{"type":"room","seq":2}'
    epoch = log.position("rm_a")[1]
    assert log.position("rm_a") == (2, epoch) and log.position("rm_b")[1] != epoch
    assert log.position("rm_new")[0] == 0  # a room is given an epoch when first asked


def test_the_gate_lets_one_event_through_per_interval_and_drops_the_last_value() -> None:
    log = RoomLog()
    stock = {"gate": "stock:cd_1", "min_interval_ms": 100}
    assert log.publish("rm", "stock", {"left": 5}, now_ms=1000, value="5", **stock) == 1
    assert log.publish("rm", "stock", {"left": 4}, now_ms=1030, value="4", **stock) == Later(70)
    assert log.publish("rm", "stock", {"left": 5}, now_ms=1030, value="5", **stock) == "same"
    assert log.publish("rm", "stock", {"left": 5}, now_ms=5000, value="5", **stock) == "same"  # even later
    assert log.publish("rm", "stock", {"left": 4}, now_ms=1100, value="4", **stock) == 2
    # Another gate is not held back by this one; an event without a gate never is.
    assert log.publish("rm", "viewers", {"count": 1}, now_ms=1100, gate="viewers", value="1") == 3
    assert log.publish("rm", "chat", {"text": "hi"}, now_ms=1100) == 4
    assert log.gate_values("rm") == {"stock:cd_1": "4", "viewers": "1"}
    assert log.gate_values("rm_none") == {}
    # A gate without a value only limits the rate.
    assert log.publish("rm", "tick", {}, now_ms=1000, gate="tick", min_interval_ms=10) == 5
    assert log.publish("rm", "tick", {}, now_ms=1005, gate="tick", min_interval_ms=10) == Later(5)
    assert log.publish("rm", "tick", {}, now_ms=1010, gate="tick", min_interval_ms=10) == 6


def test_replay_returns_the_missed_events_or_none_when_it_cannot() -> None:
    log = RoomLog(history=10)
    for i in range(25):
        log.publish("rm", "chat", {"n": i}, now_ms=0)
    seq, epoch = log.position("rm")
    replayed = log.replay("rm", 20, epoch)
    assert replayed is not None and [s for s, _ in replayed] == [21, 22, 23, 24, 25]
    assert json.loads(replayed[0][1]) == {"type": "chat", "seq": 21, "n": 20}
    assert log.replay("rm", seq, epoch) == []
    assert log.replay("rm", 15, epoch) is not None  # the oldest kept: 16..25
    assert log.replay("rm", 14, epoch) is None  # 15 was trimmed
    assert log.replay("rm", 20, "another epoch") is None
    assert log.replay("rm", seq + 1, epoch) is None
    assert log.replay("rm", -1, epoch) is None


def chat_seqs(replayed: list[tuple[int, bytes]] | None) -> list[tuple[int, str]]:
    """(seq, type) of each replayed event."""
    assert replayed is not None
    return [(seq, json.loads(frame)["type"]) for seq, frame in replayed]


def test_a_retracted_chat_line_is_left_out_of_replay_and_the_rest_stays_in_order() -> None:
    log = RoomLog()
    log.publish("rm", "chat", {"text": "a"}, now_ms=0)  # 1
    log.publish("rm", "chat", {"text": "rude"}, now_ms=0)  # 2
    log.publish("rm", "stock", {"left": 3}, now_ms=0)  # 3
    log.publish("rm", "chat", {"text": "b"}, now_ms=0)  # 4
    log.publish("rm_other", "chat", {"text": "rude"}, now_ms=0)  # 1 of another room
    epoch = log.position("rm")[1]
    assert log.retract("rm", 2) is True
    assert chat_seqs(log.replay("rm", 0, epoch)) == [(1, "chat"), (3, "stock"), (4, "chat")]
    assert chat_seqs(log.replay("rm", 1, epoch)) == [(3, "stock"), (4, "chat")]
    assert chat_seqs(log.replay("rm", 2, epoch)) == [(3, "stock"), (4, "chat")]
    assert log.replay("rm", 0, "another epoch") is None  # None still means what it meant
    assert chat_seqs(log.replay("rm_other", 0, log.position("rm_other")[1])) == [(1, "chat")]
    # Retracting the last event leaves an empty replay after the one before it, never None.
    assert log.retract("rm", 4) is True
    assert log.replay("rm", 3, epoch) == []
    assert log.position("rm") == (4, epoch)  # the sequence does not move


def test_only_a_chat_line_still_in_the_history_can_be_retracted_and_only_once() -> None:
    log = RoomLog(history=5)
    log.publish("rm", "stock", {"left": 3}, now_ms=0)  # 1
    for i in range(6):
        log.publish("rm", "chat", {"n": i}, now_ms=0)  # 2..7; history keeps 3..7
    epoch = log.position("rm")[1]
    before = log.replay("rm", 2, epoch)
    assert log.retract("rm", 1) is False  # not chat (and trimmed)
    assert log.retract("rm", 2) is False  # chat, but trimmed
    assert log.retract("rm", 8) is False  # not published yet
    assert log.retract("rm", 0) is False and log.retract("rm", -3) is False
    assert log.retract("rm_none", 1) is False
    assert log.replay("rm", 2, epoch) == before  # nothing changed
    assert log.retract("rm", 5) is True
    assert log.retract("rm", 5) is False  # twice
    log.publish("rm", "viewers", {"count": 2}, now_ms=0)  # 8
    assert log.retract("rm", 8) is False  # not chat
    assert [s for s, _ in log.replay("rm", 3, epoch) or []] == [4, 6, 7, 8]


def test_the_retracted_marks_are_trimmed_with_the_history() -> None:
    log = RoomLog(history=10)
    for round_ in range(50):
        for i in range(4):
            seq = log.publish("rm", "chat", {"n": i}, now_ms=0)
            assert isinstance(seq, int)
            if i % 2 == 0:
                assert log.retract("rm", seq) is True
        room = log._rooms["rm"]
        kept = {s for s, _ in room.events}
        assert room.retracted <= kept and len(room.retracted) <= 5, round_
    seq, epoch = log.position("rm")
    replayed = log.replay("rm", seq - 10, epoch)
    assert replayed is not None and [s for s, _ in replayed] == [
        s for s in range(seq - 9, seq + 1) if s % 2 == 0
    ]


def test_a_reader_gets_the_events_after_its_position_in_order_and_personal_frames_from_its_watch() -> None:
    log = RoomLog()
    log.publish("rm", "chat", {"n": 0}, now_ms=0)
    log.add_personal("rm", "vw_1", '{"type":"order","n":0}')  # before the watch: not for this reader
    got, read = reader(log)
    log.watch("rm", log.position("rm")[0])
    read()
    assert got == []
    log.publish("rm", "chat", {"n": 1}, now_ms=0)
    log.add_personal("rm", "vw_1", '{"type":"order","n":1}')
    log.publish("rm", "chat", {"n": 2}, now_ms=0)
    log.publish("rm_other", "chat", {"n": 9}, now_ms=0)  # not watched
    read()
    assert got == [
        ("rm", 2, {"type": "chat", "seq": 2, "n": 1}, None),
        ("rm", 3, {"type": "chat", "seq": 3, "n": 2}, None),
        ("rm", 0, {"type": "order", "n": 1}, "vw_1"),
    ]
    log.watch("rm", 0)  # already watched: the position stays
    read()
    assert len(got) == 3
    log.unwatch("rm")
    log.publish("rm", "chat", {"n": 3}, now_ms=0)
    read()
    assert len(got) == 3


def test_a_reader_that_fell_behind_the_history_is_told_then_reads_what_is_left() -> None:
    log = RoomLog(history=10)
    gaps: list[str] = []
    got, read = reader(log, gaps)
    log.watch("rm", 0)
    for i in range(25):
        log.publish("rm", "chat", {"n": i}, now_ms=0)
    read()
    assert gaps == ["rm"] and [seq for _, seq, _, _ in got] == list(range(16, 26))
    log.publish("rm", "chat", {"n": 25}, now_ms=0)
    read()
    assert got[-1][1] == 26 and gaps == ["rm"]  # read in time: no gap


def test_a_handler_may_unwatch_rooms_and_nothing_is_handed_over_twice() -> None:
    log = RoomLog()
    for room in ("rm_a", "rm_b"):
        log.watch(room, 0)
        log.publish(room, "chat", {}, now_ms=0)
    seen: list[str] = []

    def handler(room: str, seq: int, frame: bytes, to: str | None) -> None:
        seen.append(room)
        log.unwatch("rm_b" if room == "rm_a" else "rm_a")  # its last viewer was closed by this event
        log.read(handler)  # even a read from within a read hands nothing over again

    log.read(handler)
    assert len(seen) == 1 and log.watched.keys() == {seen[0]}


async def test_events_are_handed_over_as_published_between_start_and_stop() -> None:
    broker = MemoryBroker(history=10)
    got: list[tuple[str, int]] = []
    gaps: list[str] = []
    await broker.watch("rm", 0)
    for i in range(12):  # before the start: kept, two of them trimmed
        await broker.publish("rm", "chat", {"n": i}, now_ms=0)
    assert got == []
    broker.start(lambda room, seq, frame, to: got.append((room, seq)), gaps.append)
    assert gaps == ["rm"] and got == [("rm", seq) for seq in range(3, 13)]
    assert await broker.publish("rm", "chat", {}, now_ms=0) == 13
    assert got[-1] == ("rm", 13)
    await broker.stop()
    await broker.publish("rm", "chat", {}, now_ms=0)
    assert got[-1] == ("rm", 13) and gaps == ["rm"]


async def test_a_failing_handler_fails_neither_the_publisher_nor_the_next_event() -> None:
    broker = MemoryBroker()
    got: list[int] = []

    def handler(room: str, seq: int, frame: bytes, to: str | None) -> None:
        got.append(seq)
        if seq == 1:
            raise RuntimeError("a bug in the hub")

    broker.start(handler)
    await broker.watch("rm", 0)
    assert await broker.publish("rm", "chat", {}, now_ms=0) == 1
    assert await broker.publish("rm", "chat", {}, now_ms=0) == 2
    assert got == [1, 2]
    await broker.stop()


async def test_the_broker_retracts_and_its_live_handler_already_had_the_line() -> None:
    broker = MemoryBroker()
    got: list[int] = []
    broker.start(lambda room, seq, frame, to: got.append(seq))
    await broker.watch("rm", 0)
    assert await broker.publish("rm", "chat", {"text": "rude"}, now_ms=0) == 1
    assert await broker.publish("rm", "chat", {"text": "fine"}, now_ms=0) == 2
    assert await broker.retract("rm", 1) is True
    assert await broker.retract("rm", 1) is False
    assert got == [1, 2]  # the live path is unchanged: the caller tells connected viewers itself
    _, epoch = await broker.position("rm")
    assert [s for s, _ in await broker.replay("rm", 0, epoch) or []] == [2]
    await broker.stop()


async def test_personal_frames_are_queued_sent_together_and_dropped_after_the_stop() -> None:
    broker = MemoryBroker(personal_delay=0.01)
    got: list[tuple[str, int]] = []
    broker.start(lambda room, seq, frame, to: got.append((str(to), json.loads(frame)["order"]["n"])))
    await broker.watch("rm", 0)
    for n in range(3):
        broker.send_personal("rm", f"vw_{n}", "order", {"order": {"n": n}})
    assert got == []  # nobody waited for them
    await broker.flush_personal()
    assert got == [("vw_0", 0), ("vw_1", 1), ("vw_2", 2)]
    broker.send_personal("rm", "vw_9", "order", {"order": {"n": 99}})
    await broker.stop()  # stopping sends what is queued
    assert got[-1] == ("vw_9", 99)
    broker.send_personal("rm", "vw_9", "order", {"order": {"n": 100}})  # after the stop: dropped
    await asyncio.sleep(0.05)
    assert got[-1] == ("vw_9", 99) and len(got) == 4


def test_serve_refuses_the_memory_broker_with_several_workers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIVECART_REALTIME_BROKER", "memory")
    monkeypatch.setattr("livecart.cli.Supervisor", None)  # refused before any worker would start
    assert main(["serve", "--workers", "2"]) == 2
    assert "LIVECART_REALTIME_BROKER=memory" in capsys.readouterr().err
