"""The clock barcode of the video benchmarks (loadtests/harness/video.py): what ClockPattern draws, encoded at
a low bit rate with H.264 and VP8, decoded and scaled, reads back as the exact milliseconds; anything else
reads None."""

from __future__ import annotations

import io
import random

import av
import pytest

from loadtests.harness.video import (
    BLACK,
    COLUMNS,
    GUARD_CELLS,
    WHITE,
    ClockPattern,
    _backgrounds,
    clock_cells,
    read_clock,
)

BASE_MS = 1_760_000_000_000


def stamps(n: int) -> list[int]:
    """Frame times 33 ms apart plus a jitter that exercises every low bit."""
    return [BASE_MS + i * 33 + (i * 7919) % 1000 for i in range(n)]


def round_trip(
    codec: str, width: int, height: int, sent: list[int], *, kbps: int = 300
) -> list[av.VideoFrame]:
    """``sent`` drawn by a ClockPattern, encoded at ``kbps`` and decoded again."""
    camera = ClockPattern(width, height, 30)
    out = io.BytesIO()
    with av.open(out, "w", format="mp4" if codec == "libx264" else "webm") as box:
        stream = box.add_stream(codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = kbps * 1000
        for count, ms in enumerate(sent):
            box.mux(stream.encode(camera.frame(count, ms)))
        box.mux(stream.encode())
    # the low rate is real: what came out is close to what was asked, not a near-lossless copy
    seconds = len(sent) / 30
    assert out.getbuffer().nbytes * 8 / seconds < 2 * kbps * 1000
    out.seek(0)
    with av.open(out, "r") as box:
        return list(box.decode(video=0))


@pytest.mark.parametrize(
    ("codec", "width", "height", "sizes"),
    [
        ("libx264", 640, 360, [(640, 360), (320, 180), (1280, 720), (427, 240), (160, 90)]),
        ("libvpx", 640, 360, [(640, 360), (320, 180), (1280, 720)]),
        # the HLS encoder scales 1280x720 down; an upright phone stream keeps its shape
        ("libx264", 1280, 720, [(1280, 720), (640, 360), (854, 480)]),
        ("libx264", 720, 1280, [(720, 1280), (360, 640)]),
    ],
)
def test_the_exact_ms_survives_low_rate_compression_and_scaling(
    codec: str, width: int, height: int, sizes: list[tuple[int, int]]
) -> None:
    sent = stamps(45)
    decoded = round_trip(codec, width, height, sent)
    assert len(decoded) == len(sent)
    for frame, ms in zip(decoded, sent, strict=True):
        for w, h in sizes:
            scaled = frame if (w, h) == (frame.width, frame.height) else frame.reformat(width=w, height=h)
            assert read_clock(scaled) == ms, (codec, width, height, w, h)


def test_a_frame_in_another_pixel_format_reads_too() -> None:
    frame = ClockPattern(640, 360, 30).frame(0, BASE_MS)
    assert read_clock(frame.reformat(format="rgb24")) == BASE_MS
    assert read_clock(frame.reformat(format="yuvj420p")) == BASE_MS


def luma_frame(data: bytes, width: int = 640, height: int = 360) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    luma, cb, cr = frame.planes
    luma.update(data)
    cb.update(b"\x80" * cb.buffer_size)
    cr.update(b"\x80" * cr.buffer_size)
    return frame


def test_frames_without_the_pattern_read_none() -> None:
    rng = random.Random(3)
    backgrounds = _backgrounds(640, 360, 10, random.Random(0))
    pictures = [
        *backgrounds,  # the moving background alone
        b"\x80" * (640 * 360),  # flat grey
        *(rng.randbytes(640 * 360) for _ in range(20)),  # noise
        # stripes of pure black and white, in the barcode's own levels
        *(bytes(rng.choice((16, 235)) for _ in range(640)) * 360 for _ in range(50)),
    ]
    for data in pictures:
        assert read_clock(luma_frame(data)) is None
    assert read_clock(av.VideoFrame(16, 16, "yuv420p")) is None  # too small to hold it


def paint_cell(picture: bytes, row: int, column: int, level: int) -> bytes:
    """``picture`` (640x360) with one barcode cell painted ``level``."""
    data = bytearray(picture)
    row_height, cell_width = 30, 640 // COLUMNS
    for y in range(row * row_height, (row + 1) * row_height):
        start = y * 640 + column * cell_width
        data[start : start + cell_width] = bytes([level]) * cell_width
    return bytes(data)


def test_wrong_cells_fail_the_checksum() -> None:
    good = ClockPattern(640, 360, 30).picture(0, BASE_MS)
    assert read_clock(luma_frame(good)) == BASE_MS
    cells = clock_cells(BASE_MS)
    wrong = [(0, GUARD_CELLS + 5), (1, COLUMNS - 1), (0, COLUMNS - 3)]
    for n in range(1, len(wrong) + 1):  # one, two and three cells read on the wrong side
        data = good
        for row, column in wrong[:n]:
            data = paint_cell(data, row, column, BLACK if cells[row][column] else WHITE)
        assert read_clock(luma_frame(data)) is None, n


def test_a_cell_caught_half_way_through_a_flip_reads_on_its_side() -> None:
    # what a real-time encoder at a low rate shows for a cell that just changed (aiortc VP8, 500 kbit/s)
    good = ClockPattern(640, 360, 30).picture(0, BASE_MS)
    cells = clock_cells(BASE_MS)
    data = good
    for column in range(GUARD_CELLS, GUARD_CELLS + 6):
        data = paint_cell(data, 1, column, 140 if cells[1][column] else 110)
    assert read_clock(luma_frame(data)) == BASE_MS


def test_the_guard_cells_must_be_there() -> None:
    data = bytearray(ClockPattern(640, 360, 30).picture(0, BASE_MS))
    for y in range(60):
        data[y * 640 : y * 640 + 20] = b"\x80" * 20  # the first guard cell of both rows greyed
    assert read_clock(luma_frame(bytes(data))) is None


def test_clock_values_and_sizes_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="48 bits"):
        clock_cells(1 << 48)
    with pytest.raises(ValueError, match="48 bits"):
        clock_cells(-1)
    with pytest.raises(ValueError, match="even size"):
        ClockPattern(641, 360, 30)
    with pytest.raises(ValueError, match="even size"):
        ClockPattern(640, 40, 30)


async def test_recv_stamps_each_frame_with_the_clock_at_capture() -> None:
    now = [1_760_000_000.0]

    def clock() -> float:
        now[0] += 0.0415
        return now[0]

    camera = ClockPattern(320, 180, 30, clock=clock, cycle=4)
    frames = [await camera.recv() for _ in range(3)]
    assert [read_clock(f) for f in frames] == [camera.stamps[i] for i in range(3)]
    assert [camera.stamps[i] for i in range(3)] == [1_760_000_000_041, 1_760_000_000_083, 1_760_000_000_124]
    assert (frames[0].width, frames[0].height) == (320, 180)
