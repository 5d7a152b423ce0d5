"""A synthetic camera for WHIP publishers in the tests and the benchmarks (aiortc, so apart from the rest of
the harness)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from fractions import Fraction

import av
import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack


class PacedVideo(VideoStreamTrack):
    """``width`` x ``height`` yuv420p frames at a steady ``fps`` (grey chroma); a subclass draws the luma
    plane of frame ``count`` in :meth:`luma`."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._count = 0
        self._began: float | None = None

    def luma(self, count: int) -> bytes:
        raise NotImplementedError

    async def recv(self) -> av.VideoFrame:
        if self._began is None:
            self._began = time.monotonic()
        else:
            self._count += 1
            await asyncio.sleep(max(0.0, self._began + self._count / self.fps - time.monotonic()))
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma, cb, cr = frame.planes
        luma.update(self.luma(self._count))
        cb.update(b"\x80" * cb.buffer_size)
        cr.update(b"\x80" * cr.buffer_size)
        frame.pts = self._count * 90_000 // self.fps
        frame.time_base = Fraction(1, 90_000)
        return frame


# The clock barcode: two rows of COLUMNS cells across the top of the picture, each row BAND of the height.
# A row starts with GUARD_CELLS fixed cells (white/black, the two rows in opposite phase) that both prove
# the pattern is there and give the black and white levels the data cells are compared with; the other
# cells hold 48 bits of epoch milliseconds and a CRC-8 of them, most significant bit first. Cell edges are
# fractions of the picture, so a scaled copy reads the same at the same fractions, and the reader samples
# only each cell's middle, away from the ringing a low bit rate leaves at the edges.
COLUMNS = 32
ROWS = 2
BAND = 1 / 12
GUARD = ((1, 0, 1, 0), (0, 1, 0, 1))
GUARD_CELLS = len(GUARD[0])
CLOCK_BITS = 48
CRC_BITS = 8
BLACK, WHITE = 16, 235
# the white-minus-black guard contrast below which a picture carries no barcode
MIN_CONTRAST = 80
assert ROWS * (COLUMNS - GUARD_CELLS) == CLOCK_BITS + CRC_BITS


def crc8(value: int, nbytes: int = CLOCK_BITS // 8) -> int:
    """CRC-8 (polynomial 0x07) of ``value``'s ``nbytes`` big-endian bytes."""
    crc = 0
    for byte in value.to_bytes(nbytes, "big"):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def clock_cells(ms: int) -> list[list[int]]:
    """The ROWS x COLUMNS cells (1 = white) that carry ``ms`` (0 <= ms < 2**48)."""
    if not 0 <= ms < 1 << CLOCK_BITS:
        raise ValueError(f"clock value {ms} does not fit in {CLOCK_BITS} bits")
    word = (ms << CRC_BITS) | crc8(ms)
    total = CLOCK_BITS + CRC_BITS
    bits = [(word >> (total - 1 - i)) & 1 for i in range(total)]
    per_row = COLUMNS - GUARD_CELLS
    return [list(GUARD[r]) + bits[r * per_row : (r + 1) * per_row] for r in range(ROWS)]


def _edges(size: int, parts: int) -> list[int]:
    return [round(i * size / parts) for i in range(parts + 1)]


def clock_band(width: int, ms: int) -> list[bytes]:
    """One luma row per barcode row, ``width`` bytes each, drawing ``ms``."""
    xs = _edges(width, COLUMNS)
    rows = []
    for cells in clock_cells(ms):
        row = bytearray(width)
        for c, bit in enumerate(cells):
            row[xs[c] : xs[c + 1]] = bytes([WHITE if bit else BLACK]) * (xs[c + 1] - xs[c])
        rows.append(bytes(row))
    return rows


def _luma_plane(frame: av.VideoFrame) -> tuple[bytes, int]:
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12", "gray"):
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    return bytes(plane), plane.line_size


def read_clock(frame: av.VideoFrame) -> int | None:
    """The epoch milliseconds a :class:`ClockPattern` drew into ``frame``, read at any scale of the
    picture; None when the guard cells are missing or too flat, or the CRC does not match.

    A data cell is read against the level halfway between the guards' black and white, with no margin: a
    real-time encoder at a low rate leaves a cell that just flipped part of the way (aiortc's VP8 at
    500 kbit/s: 137 where 235 was drawn, 114 where 16 was), and such a cell is still on its side. A cell
    read on the wrong side is caught by the CRC-8 (polynomial 0x07 has Hamming distance 4 at this length:
    every misread of up to three cells), which makes the frame read None rather than a wrong time."""
    width, height = frame.width, frame.height
    if width < COLUMNS or height < 2 * ROWS / BAND:
        return None
    data, stride = _luma_plane(frame)

    def cell(r: int, c: int) -> float:
        # the mean of a 3x3 grid of points over the middle half of the cell
        x0, x1 = c * width / COLUMNS, (c + 1) * width / COLUMNS
        y0, y1 = r * height * BAND, (r + 1) * height * BAND
        total = 0
        for fy in (0.3, 0.5, 0.7):
            y = int(y0 + (y1 - y0) * fy)
            for fx in (0.3, 0.5, 0.7):
                total += data[y * stride + int(x0 + (x1 - x0) * fx)]
        return total / 9

    levels = [[cell(r, c) for c in range(COLUMNS)] for r in range(ROWS)]
    whites = [levels[r][c] for r in range(ROWS) for c in range(GUARD_CELLS) if GUARD[r][c]]
    blacks = [levels[r][c] for r in range(ROWS) for c in range(GUARD_CELLS) if not GUARD[r][c]]
    if min(whites) - max(blacks) < MIN_CONTRAST:
        return None
    white, black = sum(whites) / len(whites), sum(blacks) / len(blacks)
    threshold = (white + black) / 2
    word = 0
    for r in range(ROWS):
        for c in range(GUARD_CELLS, COLUMNS):
            word = (word << 1) | (levels[r][c] > threshold)
    ms, crc = word >> CRC_BITS, word & ((1 << CRC_BITS) - 1)
    return ms if crc8(ms) == crc else None


class ClockPattern(PacedVideo):
    """Frames that carry the wall-clock time of their capture: ``clock()`` (default ``time.time``) when
    :meth:`recv` makes the frame, in epoch milliseconds, as a barcode in the top sixth of the picture that
    :func:`read_clock` reads back from a decoded copy of any size. Below it a checkerboard scrolls and a
    patch of noise wanders (``cycle`` precomputed frames), so an encoder has real work.
    ``stamps`` maps each frame's count to its milliseconds (the last ``keep`` frames)."""

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        *,
        clock: Callable[[], float] = time.time,
        cycle: int = 40,
        keep: int = 10_000,
        seed: int = 0,
    ) -> None:
        if width < 2 * COLUMNS or height < 4 * ROWS / BAND or width % 2 or height % 2:
            raise ValueError(
                f"a clock pattern needs an even size of at least {2 * COLUMNS}x{int(4 * ROWS / BAND)}"
            )
        super().__init__(width, height, fps)
        self.clock = clock
        self.keep = keep
        self.stamps: dict[int, int] = {}
        self._band_rows = _edges(height, round(1 / BAND))[ROWS]
        self._backgrounds = _backgrounds(width, height, cycle, random.Random(seed))

    def luma(self, count: int) -> bytes:
        ms = int(self.clock() * 1000)
        self.stamps[count] = ms
        self.stamps.pop(count - self.keep, None)
        return self.picture(count, ms)

    def picture(self, count: int, ms: int) -> bytes:
        """The luma plane of frame ``count`` carrying ``ms``."""
        ys = _edges(self.height, round(1 / BAND))
        band = b"".join(row * (ys[r + 1] - ys[r]) for r, row in enumerate(clock_band(self.width, ms)))
        background = self._backgrounds[count % len(self._backgrounds)]
        return band + background[len(band) :]

    def frame(self, count: int, ms: int) -> av.VideoFrame:
        """Frame ``count`` carrying ``ms``, without pacing (to encode a clip ahead of time)."""
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma, cb, cr = frame.planes
        luma.update(self.picture(count, ms))
        cb.update(b"\x80" * cb.buffer_size)
        cr.update(b"\x80" * cr.buffer_size)
        frame.pts = count * 90_000 // self.fps
        frame.time_base = Fraction(1, 90_000)
        return frame


def _backgrounds(width: int, height: int, cycle: int, rng: random.Random) -> list[bytes]:
    """``cycle`` luma planes: a checkerboard scrolling two periods per cycle, and a quarter-size patch of
    fresh noise circling the picture."""
    square = max(8, width // 16)
    patch_w, patch_h = width // 4, height // 4
    planes = []
    for i in range(cycle):
        shift = i * 4 * square // cycle
        even = bytes(40 + 160 * (((x + shift) // square) % 2) for x in range(width))
        odd = bytes(240 - v for v in even)
        angle = 2 * math.pi * i / cycle
        px = int((width - patch_w) * (0.5 + 0.4 * math.cos(angle)))
        py = int((height - patch_h) * (0.6 + 0.35 * math.sin(angle)))
        rows = []
        for y in range(height):
            row = even if (y // square) % 2 == 0 else odd
            if py <= y < py + patch_h:
                row = row[:px] + rng.randbytes(patch_w) + row[px + patch_w :]
            rows.append(row)
        planes.append(b"".join(rows))
    return planes


async def offer_to(url: str, path: str, token: str, pc: RTCPeerConnection) -> None:
    """Send ``pc``'s offer to a WHIP or WHEP endpoint (``path`` on the server at ``url``) with ``token`` and
    take its answer; ``RuntimeError`` unless it is ``201``."""
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post(
            path,
            content=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
    if r.status_code != 201:
        raise RuntimeError(f"{path}: {r.status_code} {r.text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
