"""A room's HLS recording while its ingest lives: the encoder process (``live/hls_worker.py``), what feeds it,
and what it writes (SPEC section 11).

- Encode once: the ingest's drains hand every decoded frame to the room's ``Recorder`` (``feed``: no I/O, no
  waiting), which sends them to its encoder process. The cost does not depend on the number of viewers.
- Never block the ingest: frames wait in a short queue (``queue_frames`` video frames, a second of audio);
  when the encoder falls behind the oldest are dropped and counted (``dropped``).
- Survive a crash: when the encoder process exits during the ingest (a codec fault, ``kill -9``), it is
  started again after ``restart_seconds`` (doubling while it keeps failing, at most 30 s); its first segment
  is marked as a discontinuity, and the half-written segment of the dead one is never listed.
- Times: each frame is stamped when it arrives, on one clock for the ingest's tracks
  (``live.hls_rules.MediaClock``); each segment's record carries the wall-clock time of its first frame.
- The records and the playlists are written by ``live/hls_store.py``; stopping flushes the last segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from asyncio.streams import FlowControlMixin
from collections import deque
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import av

from base.metrics import Metrics
from base.settings import Settings
from live.hls_rules import MediaClock, Segment
from live.hls_store import HlsStore
from live.hls_worker import HEADER, Config

log = logging.getLogger("livecart.hls")

#: Audio frames (20 ms each from WebRTC) that may wait for the encoder: a second.
AUDIO_QUEUE = 50
MAX_RESTART_SECONDS = 30.0
#: An encoder that ran this long before it failed counts as healthy again: the next restart waits the least.
HEALTHY_SECONDS = 30.0
#: How long a stopping encoder may take to finish its last segment before it is killed.
STOP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class EncoderOptions:
    segment_seconds: float = 2.0
    max_short_side: int = 720
    video_kbps: int = 1500
    audio_kbps: int = 96
    preset: str = "veryfast"
    queue_frames: int = 8
    restart_seconds: float = 0.5

    @classmethod
    def of(cls, settings: Settings) -> EncoderOptions:
        return cls(
            segment_seconds=settings.hls_segment_seconds,
            max_short_side=settings.hls_max_short_side,
            video_kbps=settings.hls_video_kbps,
            audio_kbps=settings.hls_audio_kbps,
            preset=settings.hls_x264_preset,
            queue_frames=settings.hls_queue_frames,
            restart_seconds=settings.hls_restart_seconds,
        )


def video_message(at: float, frame: av.VideoFrame) -> bytes:
    """A video frame as the encoder process reads it (``live.hls_worker.read_frame``)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    parts = []
    for plane in frame.planes:
        parts.append(plane.line_size.to_bytes(4, "little"))
        parts.append(bytes(plane))
    payload = b"".join(parts)
    return HEADER.pack(b"V", round(at * 1_000_000), frame.width, frame.height, 0, len(payload)) + payload


def audio_message(at: float, frame: av.AudioFrame, resampler: av.AudioResampler | None) -> list[bytes]:
    """An audio frame as the encoder process reads it: interleaved s16 (converted when it is not)."""
    frames = [frame]
    if frame.format.name != "s16" or frame.layout.nb_channels not in (1, 2):
        assert resampler is not None
        frames = resampler.resample(frame)
    messages = []
    for f in frames:
        channels = f.layout.nb_channels
        payload = bytes(f.planes[0])[: f.samples * channels * 2]
        messages.append(
            HEADER.pack(b"A", round(at * 1_000_000), f.sample_rate, channels, f.samples, len(payload))
        )
        messages[-1] += payload
    return messages


@dataclass(frozen=True, slots=True)
class _Child:
    """A running encoder process and the ends of its pipes."""

    popen: subprocess.Popen[bytes]
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader


def _reap(popen: subprocess.Popen[bytes]) -> int:
    """The exit status of an encoder whose output ended (it exited, or closes its pipe and is killed)."""
    try:
        return popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.wait()


class Recorder:
    """The HLS recording of one ingest of a room. ``start()``, then ``feed()`` each frame, then ``stop()``."""

    def __init__(
        self,
        room_id: str,
        store: HlsStore,
        options: EncoderOptions,
        *,
        kinds: Collection[str],
        metrics: Metrics | None = None,
    ) -> None:
        self.room_id = room_id
        self.store = store
        self.options = options
        self.kinds = frozenset(kinds)
        self.metrics = metrics
        self.state = "encoding"
        self.restarts = 0
        self.dropped = {"video": 0, "audio": 0}
        self.segments: list[Segment] = []
        self.epoch = time.time()
        self._clock = MediaClock(self.epoch)
        self._queue: deque[tuple[str, float, Any]] = deque()
        self._waiting = {"video": 0, "audio": 0}
        self._wake = asyncio.Event()
        self._stopping = False
        self._discontinuity = False
        self._process: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._resampler: av.AudioResampler | None = None

    @property
    def pid(self) -> int | None:
        """The encoder process now (``None`` between a crash and its restart)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    async def start(self) -> None:
        self.segments = await asyncio.to_thread(self._prepare)
        # A recording that goes on after another ingest (or an app restart) does not continue its picture.
        self._discontinuity = bool(self.segments)
        self._task = asyncio.create_task(self._run(), name=f"hls:{self.room_id}")

    def _prepare(self) -> list[Segment]:
        folder = self.store.prepare(self.room_id)
        for stray in folder.glob(".seg-*.part"):  # a dead encoder's unfinished segment
            stray.unlink(missing_ok=True)
        return self.store.segments(self.room_id)

    def feed(self, kind: str, frame: av.VideoFrame | av.AudioFrame) -> None:
        """A decoded frame of the ingest, as it arrives (called by the ingest's drain: never waits)."""
        if self._stopping or kind not in self._waiting:
            return
        stamp = float(frame.time) if frame.time is not None else time.time()
        at = self._clock.time_of(kind, stamp, arrived=time.time())
        limit = self.options.queue_frames if kind == "video" else AUDIO_QUEUE
        if self._waiting[kind] >= limit:
            self._drop_oldest(kind)
        self._queue.append((kind, at, frame))
        self._waiting[kind] += 1
        self._wake.set()

    def _drop_oldest(self, kind: str) -> None:
        for index, (queued, _, _) in enumerate(self._queue):
            if queued == kind:
                del self._queue[index]
                self._waiting[kind] -= 1
                self.dropped[kind] += 1
                if self.metrics is not None:
                    self.metrics.hls_dropped.labels(kind).inc()
                return

    async def stop(self) -> None:
        """The ingest ended: the encoder finishes the segment it holds (listed), then exits."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_SECONDS)
            except TimeoutError:
                log.warning(
                    "room %s: the HLS encoder did not finish in %ss; killing it", self.room_id, STOP_SECONDS
                )
                self._kill()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self.state = "stopped"

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def status(self) -> dict[str, Any]:
        last = self.segments[-1] if self.segments else None
        return {
            "state": self.state,
            "segments": len(self.segments),
            "duration_seconds": round(sum(s.duration for s in self.segments), 3),
            "bytes": sum(s.bytes for s in self.segments),
            "last_segment_ms": last.end_ms if last else None,
            "restarts": self.restarts,
            "width": last.width if last else None,
            "height": last.height if last else None,
            "dropped_frames": sum(self.dropped.values()),
        }

    # -- the encoder process ---------------------------------------------------------------------------

    def _config(self) -> Config:
        o = self.options
        first = self.segments[-1].seq + 1 if self.segments else 1
        return Config(
            folder=self.store.room_dir(self.room_id),
            first_seq=first,
            video="video" in self.kinds,
            audio="audio" in self.kinds,
            segment_seconds=o.segment_seconds,
            max_short_side=o.max_short_side,
            video_kbps=o.video_kbps,
            audio_kbps=o.audio_kbps,
            preset=o.preset,
            discontinuity=self._discontinuity,
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.options.restart_seconds
        while True:
            config = self._config()
            try:
                child = await self._spawn(config)
            except OSError as exc:  # out of processes or memory: like a crash, try again later
                log.error("room %s: could not start the HLS encoder: %s", self.room_id, exc)
                self.state = "restarting"
                await self._sleep(delay)
                delay = min(MAX_RESTART_SECONDS, delay * 2)
                if self._stopping:
                    return
                continue
            self._process = child.popen
            began = loop.time()
            self.state = "encoding"
            reader = asyncio.create_task(self._read(child.stdout))
            writer = asyncio.create_task(self._write(child.stdin))
            try:
                await reader  # to its end: the encoder exited (its records all read)
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
                child.stdin.close()
                code = await asyncio.to_thread(_reap, child.popen)
            except asyncio.CancelledError:
                self._kill()
                reader.cancel()
                writer.cancel()
                child.stdin.close()
                raise
            if self._stopping and code == 0:
                return
            if self._stopping:
                log.warning("room %s: the HLS encoder exited with %s while stopping", self.room_id, code)
                return
            self.restarts += 1
            if self.metrics is not None:
                self.metrics.hls_restarts.inc()
            if loop.time() - began > HEALTHY_SECONDS:
                delay = self.options.restart_seconds
            log.warning(
                "room %s: the HLS encoder exited with %s during the ingest; starting it again in %.1fs",
                self.room_id,
                code,
                delay,
            )
            self.state = "restarting"
            self._discontinuity = True
            self._process = None
            await self._sleep(delay)
            delay = min(MAX_RESTART_SECONDS, delay * 2)
            if self._stopping:
                return

    async def _spawn(self, config: Config) -> _Child:
        """Start an encoder process. ``subprocess.Popen`` in a thread, not the event loop's subprocess
        support: uvloop's runs Python's after-fork handlers in the child, which can deadlock on a lock that
        another thread of the app (SQLite, thumbnails) held at the fork (the worker hung in it here)."""
        fields = {k: v for k, v in asdict(config).items() if k != "folder"}
        command = [
            sys.executable,
            "-m",
            "live.hls_worker",
            str(config.folder),
            "--config",
            json.dumps(fields),
        ]
        popen = await asyncio.to_thread(
            subprocess.Popen, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            stdout = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout)
            transport, protocol = await loop.connect_write_pipe(FlowControlMixin, popen.stdin)
        except BaseException:
            popen.kill()
            await asyncio.to_thread(popen.wait)
            raise
        return _Child(popen, asyncio.StreamWriter(transport, protocol, None, loop), stdout)

    async def _sleep(self, seconds: float) -> None:
        """Wait before a restart; a stop meanwhile ends the wait."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _write(self, stdin: asyncio.StreamWriter) -> None:
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        stdin.close()
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                kind, at, frame = self._queue.popleft()
                self._waiting[kind] -= 1
                if kind == "video":
                    stdin.write(video_message(at, frame))
                else:
                    if self._resampler is None:
                        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000)
                    for message in audio_message(at, frame, self._resampler):
                        stdin.write(message)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # the encoder died: _run sees it exit

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            try:
                record = json.loads(line)
                segment = Segment(
                    seq=int(record["seq"]),
                    duration=float(record["duration"]),
                    start_ms=round(self.epoch * 1000 + record["start_us"] / 1000),
                    discontinuity=bool(record["discontinuity"]),
                    width=int(record["width"]),
                    height=int(record["height"]),
                    bytes=int(record["bytes"]),
                )
            except (ValueError, KeyError, TypeError):
                log.warning("room %s: the HLS encoder wrote %r; ignored", self.room_id, line[:200])
                continue
            self.segments.append(segment)
            if self._discontinuity and segment.discontinuity:
                self._discontinuity = False
            try:
                await asyncio.to_thread(self.store.add, self.room_id, segment, list(self.segments))
            except OSError as exc:
                log.error("room %s: could not record HLS segment %s: %s", self.room_id, segment.seq, exc)
            if self.metrics is not None:
                self.metrics.hls_segments.inc()
