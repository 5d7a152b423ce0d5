"""A room's thumbnail: one decoded video frame, scaled down and encoded as JPEG with PyAV's mjpeg encoder
(PyAV comes with aiortc; this avoids a dependency on Pillow)."""

from __future__ import annotations

from fractions import Fraction

import av

THUMBNAIL_WIDTH = 320


def jpeg(frame: av.VideoFrame, *, width: int = THUMBNAIL_WIDTH) -> bytes:
    """``frame`` as a JPEG at most ``width`` pixels wide (never enlarged), keeping its aspect ratio."""
    width = _even(min(width, frame.width))
    height = _even(frame.height * width / frame.width)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    packets = [*encoder.encode(small), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def _even(value: float) -> int:
    """Chroma-subsampled formats need even dimensions."""
    return max(2, round(value / 2) * 2)
