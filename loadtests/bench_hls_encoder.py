"""HLS encoder benchmark (issue 14): what one room's encoder costs, in CPU, bit rate and disk.

    .venv/bin/python loadtests/bench_hls_encoder.py [--sizes 1280x720,640x360,720x1280] [--seconds 10]
    .venv/bin/python loadtests/bench_hls_encoder.py --whip [--whip-size 640x360]

Direct (the default). The app's own recorder (``live.hls_encoder.Recorder``, with the settings' bit rates,
preset and segment length) is fed the frames an ingest would hand it: a ClockPattern camera (a barcode, a
scrolling checkerboard and a quarter-size patch of fresh noise every frame: harder to compress than a person
talking to a phone) at 30 fps, paced in real time, and 20 ms frames of stereo silence. For each size it
measures, after ``--settle`` seconds, over ``--seconds``: the encoder process's CPU (user + system, psutil),
and this process's CPU with and without the recorder (the difference is the app's side: stamping, the
queue, copying each frame into the pipe). Then it stops the recorder and reads what was written: the bit
rate, the disk use per hour of video, segment lengths, and the frames the recorder dropped (it drops rather
than block the ingest when the encoder falls behind).

``--whip`` adds the cost seen from outside, through a real ingest: ``livecart serve`` (one process, SQLite,
Redis DB 9, its data directory a temporary one) gets an aiortc WHIP publisher (ClockPattern at
``--whip-size``, VP8, with Opus silence) from this process, once with ``LIVECART_HLS_ENABLED=false`` and
once with it on; the server process and its children (the encoder) are measured. The difference is the
whole cost of HLS for a room: the encoder and the app's feeding of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench_hls import cpu_seconds, live_room, start_server
from loadtests.harness.video import ClockPattern, offer_to

FPS = 30


def silence(count: int) -> av.AudioFrame:
    """The ``count``th 20 ms frame of stereo silence at 48 kHz, stamped as WebRTC's are."""
    frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    frame.sample_rate = 48_000
    frame.planes[0].update(bytes(frame.planes[0].buffer_size))
    frame.pts = count * 960
    frame.time_base = Fraction(1, 48_000)
    return frame


async def camera_loop(camera: ClockPattern, until: float, feed: Any) -> int:
    """Frames from ``camera`` (paced) and audio every 20 ms, handed to ``feed`` (or dropped) until
    ``until``; the number of video frames."""
    frames = audio = 0
    began = time.monotonic()
    while time.monotonic() < until:
        frame = await camera.recv()
        frames += 1
        if feed is not None:
            feed("video", frame)
        while audio * 0.02 <= time.monotonic() - began:
            if feed is not None:
                feed("audio", silence(audio))
            audio += 1
    return frames


async def direct(width: int, height: int, args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from live.hls_encoder import EncoderOptions, Recorder
    from live.hls_store import HlsStore

    me = psutil.Process()
    camera = ClockPattern(width, height, FPS)
    # this process alone: the camera drawing frames (what the bench costs without a recorder)
    t0 = time.monotonic() + args.settle
    alone_task = asyncio.create_task(camera_loop(camera, t0 + args.seconds, None))
    await asyncio.sleep(args.settle)
    c0 = cpu_seconds(me)
    await alone_task
    alone = (cpu_seconds(me) - c0) / (time.monotonic() - t0)

    work = Path(tempfile.mkdtemp(prefix="bench-hls-encoder-"))
    store = HlsStore(
        work / "hls", target_seconds=settings.hls_segment_seconds, window=settings.hls_live_window
    )
    recorder = Recorder("bench", store, EncoderOptions.of(settings), kinds={"video", "audio"})
    await recorder.start()
    camera = ClockPattern(width, height, FPS)
    try:
        t0 = time.monotonic() + args.settle
        end = t0 + args.seconds
        task = asyncio.create_task(camera_loop(camera, end, recorder.feed))
        await asyncio.sleep(args.settle)
        pid = recorder.pid
        if pid is None:
            raise RuntimeError(f"the encoder is not running: {recorder.status()}")
        encoder = psutil.Process(pid)
        e0, c0, w0 = cpu_seconds(encoder), cpu_seconds(me), time.monotonic()
        frames = await task
        elapsed = time.monotonic() - w0
        encoder_cores = (cpu_seconds(encoder) - e0) / elapsed
        with_recorder = (cpu_seconds(me) - c0) / elapsed
        if recorder.pid != pid:
            raise RuntimeError("the encoder restarted during the measurement")
        await recorder.stop()
        segments = store.segments("bench")
        disk = store.size_bytes("bench")
    finally:
        with contextlib.suppress(Exception):
            await recorder.stop()
        shutil.rmtree(work, ignore_errors=True)
    duration = sum(s.duration for s in segments)
    media = sum(s.bytes for s in segments)
    return {
        "size": f"{width}x{height}",
        "encoded": f"{segments[-1].width}x{segments[-1].height}" if segments else "-",
        "encoder_cores": encoder_cores,
        "app_cores": with_recorder - alone,
        "frames": frames,
        "dropped": recorder.dropped,
        "restarts": recorder.restarts,
        "segments": len(segments),
        "seconds": duration,
        "segment_min": min((s.duration for s in segments[:-1]), default=0.0),
        "segment_max": max((s.duration for s in segments[:-1]), default=0.0),
        "kbps": media * 8 / 1000 / duration if duration else 0.0,
        "gb_per_hour": disk / duration * 3600 / 1e9 if duration else 0.0,
    }


# -- through a real WHIP ingest --------------------------------------------------------------------------


async def publish(url: str, room: str, token: str, camera: ClockPattern) -> Any:
    """An aiortc WHIP publisher of ``camera`` (VP8) and Opus silence; its peer connection."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver(camera, direction="sendonly")
    video.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await offer_to(url, f"/api/rooms/{room}/whip", token, pc)
    return pc


async def whip(width: int, height: int, hls: bool, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-hls-whip-"))
    server = start_server(work, hls_enabled="true" if hls else "false")
    pc = None
    try:
        room, host, _, _ = await live_room(server, need_hls=hls)
        me = psutil.Process()
        proc = psutil.Process(server.pid)
        pc = await publish(server.url, room, host, ClockPattern(width, height, FPS))
        await asyncio.sleep(args.settle + 2)
        children = [p for p in proc.children(recursive=True)]
        s0, k0, m0, t0 = cpu_seconds(proc), _sum(children), cpu_seconds(me), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        app = (cpu_seconds(proc) - s0) / elapsed
        encoder = (_sum(children) - k0) / elapsed
        client = (cpu_seconds(me) - m0) / elapsed
        segments = sorted((work / "data" / "hls" / room).glob("seg-*.ts")) if hls else []
    finally:
        if pc is not None:
            await pc.close()
        server.stop(15)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "size": f"{width}x{height}",
        "hls": hls,
        "app_cores": app,
        "encoder_cores": encoder,
        "publisher_cores": client,
        "segments": len(segments),
    }


def _sum(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            total += sum(p.cpu_times()[:2])
    return total


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


async def main_async(args: argparse.Namespace) -> int:
    from base.settings import Settings

    settings = Settings()
    print(
        f"settings: {settings.hls_video_kbps} kbit/s video, {settings.hls_audio_kbps} kbit/s audio, preset "
        f"{settings.hls_x264_preset}, segments of {settings.hls_segment_seconds} s, short side at most "
        f"{settings.hls_max_short_side}; machine load {psutil.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = []
    for text in filter(None, args.sizes.split(",")):
        width, height = _size(text)
        row = await direct(width, height, args, settings)
        rows.append(row)
        print(
            f"{row['size']} -> {row['encoded']}: encoder {row['encoder_cores']:.2f} cores, app side "
            f"{row['app_cores']:+.2f}, {row['kbps']:.0f} kbit/s, {row['gb_per_hour']:.2f} GB/hour, "
            f"segments {row['segment_min']:.2f}-{row['segment_max']:.2f} s, dropped {row['dropped']}",
            flush=True,
        )
    whips = []
    if args.whip:
        width, height = _size(args.whip_size)
        for hls in (False, True, True, False):  # mirrored against drift
            row = await whip(width, height, hls, args)
            whips.append(row)
            print(
                f"WHIP {row['size']} HLS {'on' if hls else 'off'}: server {row['app_cores']:.2f} cores, its "
                f"encoder {row['encoder_cores']:.2f}, publisher (this process) {row['publisher_cores']:.2f}",
                flush=True,
            )
    print()
    print(
        "| ingest | encoded | encoder cores | app side cores | kbit/s (audio incl.) | GB per hour "
        "| segment s | dropped frames |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        print(
            f"| {r['size']} @ {FPS} | {r['encoded']} | {r['encoder_cores']:.2f} | {r['app_cores']:.2f} | "
            f"{r['kbps']:.0f} | {r['gb_per_hour']:.2f} | {r['segment_min']:.2f}-{r['segment_max']:.2f} | "
            f"{sum(r['dropped'].values())} |"
        )
    if whips:
        off = [r for r in whips if not r["hls"]]
        on = [r for r in whips if r["hls"]]
        base = statistics.mean(r["app_cores"] for r in off)
        total_on = statistics.mean(r["app_cores"] + r["encoder_cores"] for r in on)
        print()
        print(
            f"WHIP ingest {args.whip_size}: server {base:.2f} cores with HLS off, {total_on:.2f} with it on "
            f"(app {statistics.mean(r['app_cores'] for r in on):.2f} + encoder "
            f"{statistics.mean(r['encoder_cores'] for r in on):.2f}): HLS costs {total_on - base:+.2f} cores "
            f"per room ({total_on / base:.2f}x the ingest alone)"
        )
    print(json.dumps({"bench": "hls_encoder", "direct": rows, "whip": whips}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1280x720,640x360,720x1280", help="ingest sizes, WIDTHxHEIGHT")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per size")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before measuring")
    p.add_argument("--whip", action="store_true", help="also measure through a real WHIP ingest")
    p.add_argument("--whip-size", default="640x360")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
