"""A synthetic camera for WHIP publishers in the tests and the benchmarks (aiortc, so apart from the rest of
the harness)."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
from aiortc import VideoStreamTrack


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
