"""The pure rules of the HLS edge (``live/hls_rules.py``): grants, playlists, the segment cut, the picture
size and the media clock."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.errors import HlsForbidden
from live.hls_rules import (
    MediaClock,
    Segment,
    check_grant,
    grant_expiry,
    hls_path,
    is_served_name,
    picture_size,
    playlist,
    segment_name,
    should_cut,
    sign_grant,
)

KEY, OLD_KEY = "the-current-key", "the-previous-key"
NOW_MS = 1_765_000_000_123


# -- grants --------------------------------------------------------------------------------------------


def test_a_grant_expires_at_least_ttl_from_now_rounded_up_to_its_bucket() -> None:
    expires = grant_expiry(NOW_MS, ttl_seconds=3600, bucket_seconds=600)
    assert expires % 600 == 0
    assert NOW_MS // 1000 + 3600 <= expires < NOW_MS // 1000 + 3600 + 600
    # Everyone in the same ten minutes gets the same expiry, so the same URL.
    assert grant_expiry(NOW_MS + 60_000, ttl_seconds=3600, bucket_seconds=600) == expires


def test_a_genuine_grant_passes_under_the_current_or_a_previous_key() -> None:
    expires = NOW_MS // 1000 + 60
    assert check_grant([KEY], "rm_a", sign_grant(KEY, "rm_a", expires), now_ms=NOW_MS) == expires
    assert check_grant([KEY, OLD_KEY], "rm_a", sign_grant(OLD_KEY, "rm_a", expires), now_ms=NOW_MS) == expires


@pytest.mark.parametrize(
    "grant",
    [
        "",
        "nonsense",
        "123",
        "123.",
        ".abc",
        "-5.abc",
        "1e9.abc",
        "9999999999999.abc",
        "12 3.abc",
    ],
)
def test_a_malformed_grant_is_refused(grant: str) -> None:
    with pytest.raises(HlsForbidden) as refused:
        check_grant([KEY], "rm_a", grant, now_ms=NOW_MS)
    assert refused.value.code == "forbidden"


def test_a_forged_moved_or_foreign_grant_is_refused() -> None:
    expires = NOW_MS // 1000 + 3600
    genuine = sign_grant(KEY, "rm_a", expires)
    signature = genuine.split(".")[1]
    for bad in [
        f"{expires + 600}.{signature}",  # a longer life under the same signature
        f"{expires}.{signature[:-1]}",
        f"{expires}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        sign_grant("another-deployment", "rm_a", expires),
    ]:
        with pytest.raises(HlsForbidden):
            check_grant([KEY], "rm_a", bad, now_ms=NOW_MS)
    with pytest.raises(HlsForbidden):
        check_grant([KEY], "rm_b", genuine, now_ms=NOW_MS)  # another room's


def test_an_expired_grant_says_so() -> None:
    expires = NOW_MS // 1000
    with pytest.raises(HlsForbidden) as refused:
        check_grant([KEY], "rm_a", sign_grant(KEY, "rm_a", expires), now_ms=expires * 1000)
    assert refused.value.code == "hls_expired"
    assert check_grant([KEY], "rm_a", sign_grant(KEY, "rm_a", expires), now_ms=expires * 1000 - 1) == expires


def test_paths_and_names() -> None:
    assert hls_path("rm_a", "1.x", "live.m3u8") == "/api/rooms/rm_a/hls/1.x/live.m3u8"
    assert segment_name(42) == "seg-000042.ts"
    for name in ("live.m3u8", "full.m3u8", "seg-000001.ts", "seg-999999.ts"):
        assert is_served_name(name)
    for name in (
        "segments.jsonl",
        "ended",
        "hidden",
        ".live.m3u8.tmp",
        ".seg-000001.ts.part",
        "seg-1.ts",
        "seg-0000001.ts",
        "seg-00000a.ts",
        "seg-000001.ts.part",
        "../live.m3u8",
        "LIVE.M3U8",
    ):
        assert not is_served_name(name), name


# -- playlists -----------------------------------------------------------------------------------------


def segments(count: int, *, breaks: tuple[int, ...] = ()) -> list[Segment]:
    return [
        Segment(seq=n, duration=2.0, start_ms=NOW_MS + (n - 1) * 2000, discontinuity=n in breaks)
        for n in range(1, count + 1)
    ]


def test_the_live_playlist_is_a_window_and_the_full_one_has_everything() -> None:
    all_ = segments(10)
    live = playlist(all_, target_seconds=2.0, ended=False, window=6)
    lines = live.splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2"]
    assert "#EXT-X-MEDIA-SEQUENCE:5" in lines
    assert [line for line in lines if line.startswith("seg-")] == [s.name for s in all_[4:]]
    assert "#EXT-X-ENDLIST" not in live and "#EXT-X-PLAYLIST-TYPE" not in live
    # The first listed segment carries its wall-clock start.
    assert lines[lines.index("#EXTINF:2.000,") - 1] == "#EXT-X-PROGRAM-DATE-TIME:2025-12-06T05:46:48.123Z"

    full = playlist(all_, target_seconds=2.0, ended=False)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in full and "#EXT-X-MEDIA-SEQUENCE:1" in full
    assert full.count("seg-") == 10
    ended = playlist(all_, target_seconds=2.0, ended=True)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in ended and ended.endswith("#EXT-X-ENDLIST\n")


def test_discontinuities_are_marked_and_counted_once_they_leave_the_window() -> None:
    all_ = segments(10, breaks=(1, 3, 8))
    full = playlist(all_, target_seconds=2.0, ended=False)
    assert full.count("#EXT-X-DISCONTINUITY\n") == 2  # the first segment's flag starts nothing
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in full
    live = playlist(all_, target_seconds=2.0, ended=False, window=4)  # 7..10: segment 3's break has left
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:2" in live  # 1 and 3 left the window
    assert live.count("#EXT-X-DISCONTINUITY\n") == 1
    # After a discontinuity the wall clock is given again.
    lines = live.splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")


def test_an_empty_recording_and_a_long_segment() -> None:
    assert playlist([], target_seconds=2.0, ended=False, window=6).splitlines()[:4] == [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:0",
    ]
    long = [Segment(seq=1, duration=3.6, start_ms=NOW_MS)]
    assert "#EXT-X-TARGETDURATION:4" in playlist(long, target_seconds=2.0, ended=True)  # never under one


# -- the cut -------------------------------------------------------------------------------------------


@given(
    interval=st.floats(min_value=0.01, max_value=0.2),
    jitter=st.lists(st.floats(min_value=0.5, max_value=1.5), min_size=1, max_size=50),
    target=st.sampled_from([1.0, 2.0, 4.0]),
)
def test_segments_never_last_longer_than_the_target(
    interval: float, jitter: list[float], target: float
) -> None:
    """Frames at a steady rate with up to 50% jitter, the cut decided as the encoder does (its estimate of
    the interval): a segment overshoots the target by less than a frame (the one that came late), so its
    EXTINF rounds to at most the target duration; and it lasts at least half of it."""
    times, t = [], 0.0
    for factor in itertools.cycle(jitter):  # six targets' worth of frames
        times.append(t)
        t += interval * factor
        if t > 6 * target:
            break
    start, estimate, durations = times[0], interval, []
    for previous, now in itertools.pairwise(times):
        # The encoder decides on the frame before this one whether this one would be too late: what it
        # cannot know is how much later than its estimate this frame comes.
        late = max(0.0, (now - previous) - estimate)
        estimate = min(0.2, max(0.005, 0.8 * estimate + 0.2 * (now - previous)))
        if should_cut(now - start, frame_interval=estimate, target=target):
            durations.append(now - start)
            assert now - start <= target + late + 1e-9
            start = now
    assert durations
    assert all(target / 2 <= d < target + interval and round(d) <= target for d in durations)


def test_the_cut_at_the_frame_before_the_target() -> None:
    assert not should_cut(1.9, frame_interval=0.05, target=2.0)
    assert should_cut(1.96, frame_interval=0.05, target=2.0)
    assert not should_cut(0.9, frame_interval=0.5, target=2.0)  # never less than half a segment
    assert should_cut(1.6, frame_interval=0.5, target=2.0)


# -- the picture ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (1280, 720)),
        ((1080, 1920), (720, 1280)),  # a phone held upright stays upright
        ((1280, 720), (1280, 720)),
        ((640, 360), (640, 360)),  # never scaled up
        ((321, 241), (320, 240)),  # even, for 4:2:0 (never a pixel more)
        ((1081, 1921), (720, 1278)),
        ((3840, 2160), (1280, 720)),
    ],
)
def test_the_picture_keeps_its_shape_below_the_cap(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert picture_size(*size, max_short_side=720) == expected


# -- the clock -----------------------------------------------------------------------------------------


def test_each_track_keeps_its_own_spacing_on_one_wall_clock() -> None:
    clock = MediaClock(epoch=1000.0)
    # Video stamped from a random origin, arriving with jitter: its spacing is kept.
    assert clock.time_of("video", 5000.0, arrived=1000.5) == pytest.approx(0.5)
    assert clock.time_of("video", 5000.1, arrived=1000.63) == pytest.approx(0.6)
    assert clock.time_of("video", 5000.2, arrived=1000.69) == pytest.approx(0.7)
    # Audio from another origin is placed by its own arrival.
    assert clock.time_of("audio", 77.0, arrived=1000.52) == pytest.approx(0.52)
    assert clock.time_of("audio", 77.02, arrived=1000.6) == pytest.approx(0.54)


def test_a_track_that_drifts_or_jumps_is_anchored_again_and_never_goes_back() -> None:
    clock = MediaClock(epoch=0.0, max_drift=1.0)
    assert clock.time_of("video", 10.0, arrived=1.0) == pytest.approx(1.0)
    # A stall: frames resume 5 s later stamped as if nothing happened: placed at their arrival.
    assert clock.time_of("video", 10.1, arrived=6.0) == pytest.approx(6.0)
    # A timestamp that goes backwards (a new source) never puts a frame before the last one.
    assert clock.time_of("video", 3.0, arrived=6.01) == pytest.approx(6.01)
    at = clock.time_of("video", 3.0, arrived=6.0)
    assert at > 6.01
