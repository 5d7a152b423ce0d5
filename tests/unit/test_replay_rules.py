"""The replay's pure rules (``shop.replay_rules``): where a moment of the show falls in the video, the
timeline, what ending a show does to its cards, and when a recording is deleted."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.hls_rules import Segment
from shop.replay_rules import (
    DAY_MS,
    FINISH_GRACE_MS,
    HOUR_MS,
    CardEventKind,
    CardMoment,
    ReplayState,
    closes_after_end,
    delete_at,
    duration_of,
    keep_days_of,
    may_delete_files,
    offset_of,
    price_event,
    replay_phase,
    stays_open,
    timeline,
)

T0 = 1_800_000_000_000  # a wall-clock instant (epoch ms)


def run(*spans: tuple[int, float], discontinuity_at: frozenset[int] = frozenset()) -> list[Segment]:
    """Segments from ``(start offset from T0 in ms, duration s)``."""
    return [
        Segment(seq=n + 1, duration=d, start_ms=T0 + at, discontinuity=n in discontinuity_at)
        for n, (at, d) in enumerate(spans)
    ]


# -- offsets ------------------------------------------------------------------------------------------


def test_contiguous_segments_map_wall_clock_one_to_one() -> None:
    segments = run((0, 2.0), (2000, 2.0), (4000, 1.5))
    assert offset_of(T0, segments) == 0.0
    assert offset_of(T0 + 1234, segments) == pytest.approx(1.234)
    assert offset_of(T0 + 2000, segments) == pytest.approx(2.0)  # the second segment's first frame
    assert offset_of(T0 + 4999, segments) == pytest.approx(4.999)
    assert duration_of(segments) == pytest.approx(5.5)


def test_before_the_recording_is_its_start_and_after_it_its_end() -> None:
    segments = run((0, 2.0), (2000, 2.0))
    assert offset_of(T0 - 60_000, segments) == 0.0
    assert offset_of(T0 - 1, segments) == 0.0
    assert offset_of(T0 + 4000, segments) == pytest.approx(4.0)  # the last segment's end
    assert offset_of(T0 + 3_600_000, segments) == pytest.approx(4.0)
    assert offset_of(T0, []) == 0.0  # no recording: everything at 0


def test_a_gap_takes_no_replay_time_and_its_moments_show_as_the_video_returns() -> None:
    # The video was off from T0+4 s to T0+64 s (the host's phone dropped); the encoder restarted.
    segments = run((0, 2.0), (2000, 2.0), (64_000, 2.0), (66_000, 2.0), discontinuity_at=frozenset({2}))
    assert offset_of(T0 + 4000, segments) == pytest.approx(4.0)  # gap starts: the next segment's start
    assert offset_of(T0 + 30_000, segments) == pytest.approx(4.0)
    assert offset_of(T0 + 63_999, segments) == pytest.approx(4.0)
    assert offset_of(T0 + 64_000, segments) == pytest.approx(4.0)
    assert offset_of(T0 + 65_500, segments) == pytest.approx(5.5)
    assert offset_of(T0 + 67_250, segments) == pytest.approx(7.25)
    assert duration_of(segments) == pytest.approx(8.0)


def test_a_discontinuity_without_a_gap_changes_nothing() -> None:
    plain = run((0, 2.0), (2000, 2.0), (4000, 2.0))
    marked = run((0, 2.0), (2000, 2.0), (4000, 2.0), discontinuity_at=frozenset({1, 2}))
    for at in (0, 1999, 2000, 3500, 5999, 9000):
        assert offset_of(T0 + at, plain) == offset_of(T0 + at, marked)


def test_segments_that_overlap_on_the_wall_clock_give_the_earlier_one() -> None:
    # A restarted encoder stamped its first segment 300 ms before the previous one ended (clock jitter).
    segments = run((0, 2.0), (1700, 2.0))
    assert offset_of(T0 + 1800, segments) == pytest.approx(1.8)  # still inside the first
    assert offset_of(T0 + 2000, segments) == pytest.approx(2.3)  # the second, 300 ms in
    assert offset_of(T0 + 3699, segments) == pytest.approx(3.999)


spans = st.lists(
    st.tuples(st.integers(min_value=-500, max_value=120_000), st.floats(min_value=0.5, max_value=6.0)),
    min_size=1,
    max_size=12,
)


@given(spans, st.lists(st.integers(min_value=-10_000, max_value=1_000_000), min_size=2, max_size=30))
def test_offsets_never_decrease_and_stay_within_the_recording(
    gaps: list[tuple[int, float]], instants: list[int]
) -> None:
    # Segments in order, each starting after the previous one's start (gaps or overlaps alike).
    at, built = 0, []
    for gap, duration in gaps:
        at += abs(gap) + 1
        built.append((at, duration))
    segments = run(*built)
    total = duration_of(segments)
    offsets = [offset_of(T0 + i, segments) for i in sorted(instants)]
    assert all(0.0 <= o <= total + 1e-9 for o in offsets)
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(offsets))


# -- the timeline -------------------------------------------------------------------------------------


def test_the_timeline_orders_moments_and_places_each_in_the_video() -> None:
    segments = run((10_000, 2.0), (12_000, 2.0), (40_000, 2.0))
    moments = [
        CardMoment("crd_b", CardEventKind.OPENED, T0 + 12_500),
        CardMoment("crd_a", CardEventKind.PINNED, T0 + 1000, price=990),  # before the video started
        CardMoment("crd_a", CardEventKind.PRICE_CUT, T0 + 20_000, price=700),  # video off
        CardMoment("crd_a", CardEventKind.SOLD_OUT, T0 + 41_234),
        CardMoment("crd_a", CardEventKind.CLOSED, T0 + 99_000),  # after the recording ended
        CardMoment("crd_b", CardEventKind.PINNED, T0 + 1000, price=500),  # same ms: kept after crd_a's
    ]
    assert timeline(moments, segments) == [
        {"t": 0.0, "at": "2027-01-15T08:00:01.000Z", "card_id": "crd_a", "event": "pinned", "price": 990},
        {"t": 0.0, "at": "2027-01-15T08:00:01.000Z", "card_id": "crd_b", "event": "pinned", "price": 500},
        {"t": 2.5, "at": "2027-01-15T08:00:12.500Z", "card_id": "crd_b", "event": "opened", "price": None},
        {"t": 4.0, "at": "2027-01-15T08:00:20.000Z", "card_id": "crd_a", "event": "price_cut", "price": 700},
        {
            "t": 5.234,
            "at": "2027-01-15T08:00:41.234Z",
            "card_id": "crd_a",
            "event": "sold_out",
            "price": None,
        },
        {"t": 6.0, "at": "2027-01-15T08:01:39.000Z", "card_id": "crd_a", "event": "closed", "price": None},
    ]


def test_offsets_are_rounded_to_the_millisecond() -> None:
    segments = [
        Segment(seq=1, duration=2.002, start_ms=T0),
        Segment(seq=2, duration=1.998, start_ms=T0 + 2002),
    ]
    (entry,) = timeline([CardMoment("c", CardEventKind.OPENED, T0 + 3333)], segments)
    assert entry["t"] == 3.333


def test_price_events() -> None:
    assert price_event(1000, 700) is CardEventKind.PRICE_CUT
    assert price_event(700, 1000) is CardEventKind.PRICE_RAISED
    assert price_event(700, 700) is None


# -- the end of a show ----------------------------------------------------------------------------------


def test_only_open_cards_of_a_shop_with_replay_sales_stay_on_sale() -> None:
    assert stays_open("open", sales_hours=24)
    assert not stays_open("pinned", sales_hours=24)
    assert not stays_open("closed", sales_hours=24)
    assert not stays_open("open", sales_hours=0)


def test_a_kept_sale_ends_n_hours_after_the_show_or_sooner_if_it_would_anyway() -> None:
    ended = T0 + 3_600_000
    assert closes_after_end(None, ended_ms=ended, sales_hours=24) == ended + 24 * HOUR_MS
    assert closes_after_end(ended + 600_000, ended_ms=ended, sales_hours=24) == ended + 600_000
    assert closes_after_end(ended + 30 * HOUR_MS, ended_ms=ended, sales_hours=24) == ended + 24 * HOUR_MS


# -- retention ------------------------------------------------------------------------------------------


def test_keep_days_and_when_a_recording_goes() -> None:
    assert keep_days_of(None, default_days=30) == 30
    assert keep_days_of(0, default_days=30) == 0
    assert keep_days_of(7, default_days=30) == 7
    assert delete_at(None, keep_days=7) is None
    assert delete_at(T0, keep_days=7) == T0 + 7 * DAY_MS
    assert delete_at(T0, keep_days=0) == T0


def test_a_recording_is_deleted_once_its_encoder_finished_or_after_the_grace() -> None:
    assert may_delete_files(ended_ms=T0, now_ms=T0 + 1, finished=True)
    assert not may_delete_files(ended_ms=T0, now_ms=T0 + FINISH_GRACE_MS - 1, finished=False)
    assert may_delete_files(ended_ms=T0, now_ms=T0 + FINISH_GRACE_MS, finished=False)


def test_replay_states() -> None:
    assert ReplayState.of(None) is ReplayState.KEPT and ReplayState.KEPT.column is None
    assert ReplayState.of("hidden").column == "hidden"
    assert ReplayState.DELETING.gone and ReplayState.DELETED.gone
    assert not ReplayState.HIDDEN.gone and not ReplayState.KEPT.gone
    with pytest.raises(ValueError):
        ReplayState.of("archived")
    assert replay_phase(room_ended=False, recording_finished=False) == "recording"
    assert replay_phase(room_ended=True, recording_finished=False) == "ready"
