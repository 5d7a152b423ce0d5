"""The pure fan-out core: who gets which frame, with no event loop and no socket."""

from __future__ import annotations

import pytest

from realtime.hub import Hub, State, write_all


class Sink:
    """Records what the adapter would have written to one socket."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.frames: list[bytes] = []
        self.fail_after = fail_after

    def __call__(self, frame: bytes) -> None:
        if self.fail_after is not None and len(self.frames) >= self.fail_after:
            raise RuntimeError("the handler is closed")
        self.frames.append(frame)


def deliver(hub: Hub, room: str, seq: int) -> list[int]:
    frame = f"e{seq}".encode()
    return write_all(hub.event(room, seq, frame).writers, frame)


def test_syncing_connection_holds_events_and_gets_exactly_those_after_its_snapshot() -> None:
    hub = Hub()
    sink = Sink()
    conn = hub.join("r", "v1", sink)
    for seq in (4, 5, 6):
        deliver(hub, "r", seq)
    assert sink.frames == []  # nothing before the snapshot
    # The snapshot was taken at 5: event 5 is in it, 6 is not.
    assert hub.synced(conn, 5) == [b"e6"]
    assert conn.state is State.LIVE
    deliver(hub, "r", 7)
    assert sink.frames == [b"e7"]
    assert hub.synced(conn, 7) == []  # a second call changes nothing


def test_a_snapshot_ahead_of_this_process_waits_for_the_stream_to_pass_it() -> None:
    """The snapshot's position comes from Redis, and this process's reader can still be handing out
    events up to it: those are in the snapshot and must not follow it (a viewer saw 3, then 2)."""
    hub = Hub(max_held=2)
    sink = Sink()
    conn = hub.join("r", "v1", sink)
    deliver(hub, "r", 1)
    assert hub.synced(conn, 3) == []  # e1 is older than the snapshot; e2 and e3 are still on their way
    assert conn.state is State.SYNCING
    for seq in (2, 3):
        assert hub.event("r", seq, f"e{seq}".encode()).too_slow == ()  # dropped, not held
        assert sink.frames == []
    deliver(hub, "r", 4)
    deliver(hub, "r", 5)
    assert sink.frames == [b"e4", b"e5"]
    assert conn.state is State.LIVE


def test_held_frames_come_back_in_seq_order() -> None:
    hub = Hub()
    conn = hub.join("r", "v1")
    for seq in (9, 7, 8):
        hub.event("r", seq, f"e{seq}".encode())
    assert hub.synced(conn, 6) == [b"e7", b"e8", b"e9"]


def test_live_connections_each_get_every_event_once_and_other_rooms_nothing() -> None:
    hub = Hub()
    sinks = [Sink() for _ in range(3)]
    for i, sink in enumerate(sinks):
        hub.synced(hub.join("r", f"v{i}", sink), 0)
    elsewhere = Sink()
    hub.synced(hub.join("other", "v9", elsewhere), 0)
    for seq in range(1, 4):
        assert deliver(hub, "r", seq) == []
    assert all(s.frames == [b"e1", b"e2", b"e3"] for s in sinks)
    assert elsewhere.frames == []


def test_a_connection_that_left_gets_nothing_more() -> None:
    hub = Hub()
    stay, go = Sink(), Sink()
    hub.synced(hub.join("r", "a", stay), 0)
    leaving = hub.join("r", "b", go)
    hub.synced(leaving, 0)
    deliver(hub, "r", 1)
    hub.leave(leaving)
    hub.leave(leaving)  # idempotent
    deliver(hub, "r", 2)
    assert (stay.frames, go.frames) == ([b"e1", b"e2"], [b"e1"])
    assert hub.count() == 1 and hub.viewers("r") == {"a"}
    hub.leave(hub.connections("r")[0])
    assert hub.rooms() == [] and hub.count() == 0


def test_a_failing_writer_is_reported_and_the_others_still_get_the_frame_once() -> None:
    hub = Hub()
    sinks = [Sink(), Sink(fail_after=0), Sink(), Sink(fail_after=0), Sink()]
    conns = [hub.join("r", f"v{i}", s) for i, s in enumerate(sinks)]
    for conn in conns:
        hub.synced(conn, 0)
    delivery = hub.event("r", 1, b"e1")
    failed = write_all(delivery.writers, b"e1")
    assert [delivery.to[i] for i in failed] == [conns[1], conns[3]]
    assert [s.frames for s in sinks] == [[b"e1"], [], [b"e1"], [], [b"e1"]]


def test_a_syncing_connection_that_would_hold_too_much_is_too_slow() -> None:
    hub = Hub(max_held=2)
    slow = hub.join("r", "v1")
    assert hub.event("r", 1, b"e1").too_slow == ()
    assert hub.event("r", 2, b"e2").too_slow == ()
    assert hub.event("r", 3, b"e3").too_slow == (slow,)


@pytest.mark.parametrize("state", ["syncing", "live"])
def test_personal_frames_go_to_every_connection_of_that_viewer_only(state: str) -> None:
    hub = Hub()
    mine = [hub.join("r", "bob", Sink()), hub.join("r", "bob", Sink())]
    other = hub.join("r", "ann", Sink())
    host = hub.join("r", None, Sink())
    if state == "live":
        for conn in [*mine, other, host]:
            hub.synced(conn, 0)
    delivery = hub.personal("r", "bob", b"order")
    assert delivery.to == tuple(mine)
    assert write_all(delivery.writers, b"order") == []
    assert hub.viewers("r") == {"bob", "ann"}  # the host is not a viewer


def test_one_viewer_with_two_connections_is_one_viewer() -> None:
    hub = Hub()
    hub.join("r", "bob")
    hub.join("r", "bob")
    assert hub.viewers("r") == {"bob"} and len(hub.connections("r")) == 2
