"""The HLS encoder of one room's recording, run as its own process (``python -m live.hls_worker``) by
``live/hls_encoder.py``: one per room while its ingest lives, whatever the number of viewers.

A process of its own, so that encoding never holds the app's event loop or its GIL, it uses another core
when there is one, and a crash (a codec fault, ``kill -9``) ends it alone: the app sees it exit and starts a
new one.

stdin: the ingest's decoded frames, each a ``HEADER`` and its payload, with presentation times (µs) on the
recording's one clock (``live.hls_rules.MediaClock``, kept by the app):

- ``V``: a video frame: width, height, and the three yuv420p planes, each its line size (u32) and its rows;
- ``A``: an audio frame: sample rate, channels, samples, then the interleaved s16 samples.

It encodes them with one H.264 encoder (libx264, zero latency, no B-frames, a keyframe only where a segment
starts) and one AAC encoder, cuts a segment at the first frame that would take it past the target
(``should_cut``), and writes each segment to a hidden temporary file in the room's directory, renamed to
``seg-NNNNNN.ts`` when it is complete. Then one JSON line on stdout reports it:
``{"seq", "start_us", "duration", "width", "height", "bytes", "discontinuity"}``.
EOF on stdin finishes the last segment and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler
from av.video.frame import PictureType

from live.hls_rules import picture_size, segment_name, should_cut

#: kind (``V``/``A``), presentation time (µs), three fields (video: width, height, 0; audio: sample rate,
#: channels, samples), payload length.
HEADER = struct.Struct("<cqIIII")
_LINE = struct.Struct("<I")
VIDEO_CLOCK = 90_000  # MPEG-TS time base
AUDIO_RATE = 48_000
AAC_FRAME = 1024
#: A jump in an audio track's times longer than this starts its samples afresh (a gap, not a glitch).
AUDIO_RESYNC_SAMPLES = AUDIO_RATE // 10


@dataclass(frozen=True, slots=True)
class Config:
    folder: Path
    first_seq: int
    video: bool
    audio: bool
    segment_seconds: float = 2.0
    max_short_side: int = 720
    video_kbps: int = 1500
    audio_kbps: int = 96
    preset: str = "veryfast"
    #: The first segment does not continue what the room's recording holds (a new ingest or encoder).
    discontinuity: bool = True


class _Segment:
    def __init__(self, config: Config, seq: int, start: float, size: tuple[int, int] | None) -> None:
        self.seq, self.start = seq, start
        self.path = config.folder / f".{segment_name(seq)}.part"
        self.container: Any = av.open(str(self.path), "w", format="mpegts")
        self.video: Any = None
        self.audio: Any = None
        if config.video and size is not None:
            self.video = self.container.add_stream("libx264", rate=30)
            self.video.width, self.video.height = size
            self.video.pix_fmt = "yuv420p"
            self.video.time_base = Fraction(1, VIDEO_CLOCK)
        if config.audio:
            self.audio = self.container.add_stream("aac", rate=AUDIO_RATE)
            self.audio.layout = "stereo"
            self.audio.time_base = Fraction(1, AUDIO_RATE)


class Encoder:
    """Frames in, finished segments out (``report`` is called with each one's record)."""

    def __init__(self, config: Config, report: Any) -> None:
        self.config = config
        self.report = report
        self.seq = config.first_seq
        self.discontinuity = config.discontinuity
        self.segment: _Segment | None = None
        self.video_codec: Any = None
        self.size: tuple[int, int] | None = None  # what the video encoder encodes
        self.wanted: tuple[int, int] | None = None  # what the newest frame would be encoded at
        self.last_video: float | None = None
        self.interval = 1 / 30
        self.audio_codec: Any = None
        self.resampler: AudioResampler | None = None
        self.fifo: AudioFifo | None = None
        self.audio_next: int | None = None  # the next AAC frame's time, in samples
        self.last_audio: float | None = None

    # -- video -----------------------------------------------------------------------------------------

    def video(self, at: float, frame: av.VideoFrame) -> None:
        self.wanted = picture_size(frame.width, frame.height, max_short_side=self.config.max_short_side)
        gap = self.last_video is not None and at - self.last_video > self.config.segment_seconds
        if gap and self.segment is not None:
            # The ingest paused: end the segment at its last frame, the next one starts after the gap.
            assert self.last_video is not None
            self._finish(self.last_video + self.interval)
            self.discontinuity = True
        if self.last_video is not None and not gap:
            self.interval = min(0.2, max(0.005, 0.8 * self.interval + 0.2 * (at - self.last_video)))
        self.last_video = at
        keyframe = False
        if self.segment is None or self.segment.video is None:
            self._start(at)
            keyframe = True
        elif should_cut(
            at - self.segment.start, frame_interval=self.interval, target=self.config.segment_seconds
        ):
            self._finish(at)
            self._start(at)
            keyframe = True
        assert self.segment is not None and self.size is not None
        if (frame.width, frame.height) != self.size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        frame.pts = round(at * VIDEO_CLOCK)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        for packet in self.video_codec.encode(frame):
            packet.stream = self.segment.video
            self.segment.container.mux(packet)

    def _open_video(self) -> None:
        assert self.wanted is not None
        if self.video_codec is not None and self.size == self.wanted:
            return
        if self.video_codec is not None:
            self.discontinuity = True  # a new picture size: a new encoding sequence
        self.size = self.wanted
        codec: Any = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = self.size
        codec.pix_fmt = "yuv420p"
        codec.time_base = Fraction(1, VIDEO_CLOCK)
        codec.framerate = Fraction(30, 1)
        kbps = self.config.video_kbps
        codec.bit_rate = kbps * 1000
        codec.options = {
            "preset": self.config.preset,
            "tune": "zerolatency",
            "profile": "high",
            # A keyframe only where a segment starts (forced); no scene-cut or periodic ones.
            "g": "100000",
            "keyint_min": "100000",
            "sc_threshold": "0",
            "bf": "0",
            "x264-params": f"vbv-maxrate={kbps}:vbv-bufsize={kbps * 2}:repeat-headers=1",
        }
        codec.open()
        self.video_codec = codec

    # -- audio -----------------------------------------------------------------------------------------

    def audio(self, at: float, frame: av.AudioFrame) -> None:
        if self.audio_codec is None:
            codec: Any = av.CodecContext.create("aac", "w")
            codec.sample_rate, codec.layout, codec.format = AUDIO_RATE, "stereo", "fltp"
            codec.bit_rate = self.config.audio_kbps * 1000
            codec.time_base = Fraction(1, AUDIO_RATE)
            codec.open()
            self.audio_codec = codec
            self.resampler = AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            self.fifo = AudioFifo()
        assert self.resampler is not None and self.fifo is not None
        self.last_audio = at
        if self.segment is None and not self.config.video:
            self._start(at)
        elif (
            not self.config.video
            and self.segment is not None
            and should_cut(at - self.segment.start, frame_interval=0.02, target=self.config.segment_seconds)
        ):
            self._finish(at)
            self._start(at)
        if self.segment is None:
            return  # audio before the first video frame: the recording starts with the picture
        sample = round(at * AUDIO_RATE)
        expected = None if self.audio_next is None else self.audio_next + self.fifo.samples
        if expected is None or abs(sample - expected) > AUDIO_RESYNC_SAMPLES:
            self.fifo = AudioFifo()  # a gap or a jump: what was waiting is dropped, times restart here
            self.audio_next = sample
        frame.pts = None
        for resampled in self.resampler.resample(frame):
            resampled.pts = None
            self.fifo.write(resampled)
        while self.fifo.samples >= AAC_FRAME:
            chunk = self.fifo.read(AAC_FRAME)
            assert chunk is not None and self.audio_next is not None
            chunk.pts = self.audio_next
            chunk.time_base = Fraction(1, AUDIO_RATE)
            self.audio_next += AAC_FRAME
            self._mux_audio(self.audio_codec.encode(chunk))

    def _mux_audio(self, packets: list[Any]) -> None:
        assert self.segment is not None
        for packet in packets:
            if self.segment.audio is not None:
                packet.stream = self.segment.audio
                self.segment.container.mux(packet)

    # -- segments --------------------------------------------------------------------------------------

    def _start(self, at: float) -> None:
        if self.config.video:
            self._open_video()
        self.segment = _Segment(self.config, self.seq, at, self.size)
        self.seq += 1

    def _finish(self, end: float) -> None:
        segment = self.segment
        assert segment is not None
        self.segment = None
        segment.container.close()
        final = self.config.folder / segment_name(segment.seq)
        os.replace(segment.path, final)
        width, height = self.size if self.size is not None else (0, 0)
        self.report(
            {
                "seq": segment.seq,
                "start_us": round(segment.start * 1_000_000),
                "duration": round(max(0.001, end - segment.start), 3),
                "width": width,
                "height": height,
                "bytes": final.stat().st_size,
                "discontinuity": self.discontinuity,
            }
        )
        self.discontinuity = False

    def close(self) -> None:
        """The input ended: encode what the encoders hold, finish the last segment."""
        if self.segment is None:
            return
        if self.video_codec is not None and self.segment.video is not None:
            for packet in self.video_codec.encode(None):
                packet.stream = self.segment.video
                self.segment.container.mux(packet)
        if self.audio_codec is not None:
            self._mux_audio(self.audio_codec.encode(None))
        last = max(t for t in (self.last_video, self.last_audio) if t is not None)
        self._finish(last + (self.interval if self.last_video is not None else 0.02))


def read_frame(stream: IO[bytes]) -> tuple[str, float, av.VideoFrame | av.AudioFrame] | None:
    """The next frame on ``stream`` (its kind and time in seconds), or ``None`` at its end."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    kind, at_us, first, second, third, length = HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    at = at_us / 1_000_000
    if kind == b"V":
        return "video", at, _video_frame(first, second, memoryview(payload))
    if kind == b"A":
        return "audio", at, _audio_frame(first, second, third, payload)
    raise ValueError(f"unknown frame kind {kind!r}")


def _video_frame(width: int, height: int, payload: memoryview) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    offset = 0
    for index, plane in enumerate(frame.planes):
        (line,) = _LINE.unpack_from(payload, offset)
        offset += _LINE.size
        rows = height if index == 0 else (height + 1) // 2
        data = payload[offset : offset + line * rows]
        offset += line * rows
        if line == plane.line_size:
            plane.update(bytes(data))
        else:  # another alignment than this process's: copy row by row
            useful = plane.width
            target = memoryview(plane)
            for row in range(rows):
                start = row * plane.line_size
                target[start : start + useful] = data[row * line : row * line + useful]
    return frame


def _audio_frame(rate: int, channels: int, samples: int, payload: bytes) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo" if channels == 2 else "mono", samples=samples)
    frame.sample_rate = rate
    frame.planes[0].update(payload)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Encode one room's frames (stdin) into HLS segments.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--config", required=True, help="the Config fields as JSON (folder aside)")
    args = parser.parse_args(argv)
    config = Config(folder=args.folder, **json.loads(args.config))
    out = sys.stdout

    def report(record: dict[str, Any]) -> None:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        out.flush()

    encoder = Encoder(config, report)
    source = sys.stdin.buffer
    while (item := read_frame(source)) is not None:
        _, at, frame = item
        if isinstance(frame, av.VideoFrame):
            encoder.video(at, frame)
        else:
            encoder.audio(at, frame)
    encoder.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
