"""Glass-to-glass delay of the room's video (issue 14), WHEP and HLS, measured with frames that carry the
wall-clock time of their capture (``loadtests/harness/video.py``'s ClockPattern barcode).

    .venv/bin/python loadtests/bench_video_delay.py [--size 1280x720] [--seconds 30]

A real ``livecart serve`` (one process, SQLite, Redis DB 9, flushed first, its data directory a temporary
one, HLS on with the settings' defaults) gets a WHIP ingest from an aiortc publisher in this process: the
ClockPattern camera at ``--size`` @ 30 fps (VP8) and Opus silence. Each frame's barcode is the epoch ms at
which the camera made it (before the publisher encoded it). Then, for ``--seconds``:

- WHEP: an aiortc viewer (its own decoder, as a browser decodes) reads the barcode of every frame it
  receives: delay = when the decoded frame came out of the viewer's track minus its capture time.
- HLS: a poller reads ``live.m3u8`` every ``--hls-poll`` seconds (much more often than hls.js, to see each
  segment the moment it is listed), fetches each new segment, decodes it with PyAV and reads every frame's
  barcode. ``fetchable``: when the segment holding a frame was first listed minus the frame's capture time
  (the best any HLS player could do). ``hls.js``: what a player that starts ``--behind`` target durations
  behind the live edge (hls.js's ``liveSyncDurationCount``, 3 by default) and then plays in real time would
  show: for a player starting at instant T, T minus the capture time of the frame at (the live edge at T)
  minus behind x target; sampled at every 10 ms of the window (the start instant is what varies).

Printed: p50 / p95 / max of each, the frames read (and unread: a barcode that failed its check), and the CPU
of the server (app and encoder) and of this process. The machine's two cores carry the publisher's VP8
encode, the server's decode, WHEP re-encode and HLS encode, and the viewer's decode: the delays include what
that contention costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bench_hls import cpu_seconds, live_room, start_server
from loadtests.bench_hls_encoder import publish
from loadtests.harness.video import ClockPattern, offer_to, read_clock

FPS = 30


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": ordered[-1]}


async def whep_viewer(url: str, room: str, token: str) -> tuple[Any, list[tuple[float, int | None]]]:
    """An aiortc WHEP viewer; what it decodes: (arrival epoch s, barcode ms or None) per video frame."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    seen: list[tuple[float, int | None]] = []
    readers: list[asyncio.Task[None]] = []
    video = pc.addTransceiver("video", direction="recvonly")
    video.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
    )
    pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind != "video":
            return

        async def read() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frame = await track.recv()
                    seen.append((time.time(), read_clock(frame)))

        readers.append(asyncio.ensure_future(read()))

    await offer_to(url, f"/api/rooms/{room}/whep", token, pc)
    return pc, seen


class HlsPoller:
    """Polls the live playlist; for each new segment: when it was first listed, and each frame's barcode."""

    def __init__(self, url: str, playlist_path: str, poll: float) -> None:
        self.url, self.playlist_path, self.poll = url, playlist_path, poll
        self.prefix = playlist_path.rsplit("/", 1)[0] + "/"
        self.listed: dict[int, float] = {}
        self.frames: dict[int, list[int | None]] = {}
        self.durations: dict[int, float] = {}
        self.target = 2.0

    async def run(self, until: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as c:
            while time.time() < until:
                r = await c.get(self.playlist_path)
                now = time.time()
                if r.status_code == 200:
                    duration = 0.0
                    for line in r.text.splitlines():
                        if line.startswith("#EXT-X-TARGETDURATION:"):
                            self.target = float(line.split(":", 1)[1])
                        elif line.startswith("#EXTINF:"):
                            duration = float(line[8:].split(",", 1)[0])
                        elif line.startswith("seg-"):
                            seq = int(line[4:10])
                            if seq not in self.listed:
                                self.listed[seq] = now
                                self.durations[seq] = duration
                                data = (await c.get(self.prefix + line)).content
                                self.frames[seq] = await asyncio.to_thread(_barcodes, data)
                await asyncio.sleep(self.poll)


def _barcodes(segment: bytes) -> list[int | None]:
    with av.open(io.BytesIO(segment), "r") as box:
        return [read_clock(frame) for frame in box.decode(video=0)]


def hls_figures(poller: HlsPoller, t0: float, t1: float, behind: int) -> dict[str, Any]:
    """``fetchable`` per frame, and what an hls.js-like player starting at each 10 ms of [t0, t1) shows."""
    fetchable: list[float] = []
    unread = 0
    # each listed segment's live edge: the capture time just after its last frame
    edges: list[tuple[float, float]] = []
    for seq in sorted(poller.listed):
        stamps = poller.frames.get(seq, [])
        unread += sum(1 for s in stamps if s is None)
        known = [s for s in stamps if s is not None]
        listed = poller.listed[seq]
        if t0 <= listed < t1:
            fetchable.extend(listed - s / 1000 for s in known)
        if known:
            edges.append((listed, known[-1] / 1000 + 1 / FPS))
    player: list[float] = []
    step = 0.01
    t = t0
    index = -1
    while t < t1:
        while index + 1 < len(edges) and edges[index + 1][0] <= t:
            index += 1
        if index >= 0:
            player.append(t - (edges[index][1] - behind * poller.target))
        t += step
    return {
        "fetchable": percentiles(fetchable),
        "player": percentiles(player),
        "segments": sum(1 for s in poller.listed.values() if t0 <= s < t1),
        "unread": unread,
    }


async def main_async(args: argparse.Namespace) -> int:
    width, _, height = args.size.partition("x")
    work = Path(tempfile.mkdtemp(prefix="bench-delay-"))
    server = start_server(work)
    peers: list[Any] = []
    try:
        room, host, viewer, video = await live_room(server)
        proc = psutil.Process(server.pid)
        me = psutil.Process()
        camera = ClockPattern(int(width), int(height), FPS)
        peers.append(await publish(server.url, room, host, camera))
        viewer_pc, seen = await whep_viewer(server.url, room, viewer)
        peers.append(viewer_pc)
        poller = HlsPoller(server.url, str(video["hls"]), args.hls_poll)
        t0 = time.time() + args.settle
        t1 = t0 + args.seconds
        polling = asyncio.create_task(poller.run(t1 + 3 * 2.0 + 1))
        await asyncio.sleep(max(0.0, t0 - time.time()))
        s0, m0 = cpu_seconds(proc, children=True), cpu_seconds(me)
        a0 = cpu_seconds(proc)
        await asyncio.sleep(max(0.0, t1 - time.time()))
        elapsed = time.time() - t0
        server_cores = (cpu_seconds(proc, children=True) - s0) / elapsed
        app_cores = (cpu_seconds(proc) - a0) / elapsed
        bench_cores = (cpu_seconds(me) - m0) / elapsed
        await polling
    finally:
        await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)
        server.stop(15)
        shutil.rmtree(work, ignore_errors=True)

    inside = [(at, ms) for at, ms in seen if t0 <= at < t1]
    whep = percentiles([at - ms / 1000 for at, ms in inside if ms is not None])
    whep_unread = sum(1 for _, ms in inside if ms is None)
    hls = hls_figures(poller, t0, t1, args.behind)
    print(
        f"{args.size} @ {FPS}, {args.seconds:.0f} s; server {server_cores:.2f} cores (app {app_cores:.2f}, "
        f"encoder {server_cores - app_cores:.2f}), this process (publisher, viewer, poller) {bench_cores:.2f}"
    )
    print()
    print("| path | frames | p50 s | p95 s | max s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [
        ("WHEP (aiortc viewer, decoded)", whep),
        ("HLS, segment fetchable", hls["fetchable"]),
        (
            f"HLS, a player {args.behind} segments behind the edge (the viewer page: 2; hls.js's default: 3)",
            hls["player"],
        ),
    ]
    for name, p in rows:
        frames = p["n"] if name != rows[2][0] else "-"
        print(f"| {name} | {frames} | {p['p50']:.2f} | {p['p95']:.2f} | {p['max']:.2f} |")
    print()
    print(
        f"WHEP frames in the window {len(inside)} ({len(inside) / args.seconds:.1f} fps), "
        f"unread {whep_unread}; "
        f"HLS segments listed in the window {hls['segments']}, frames unread {hls['unread']}"
    )
    print(
        json.dumps(
            {
                "bench": "video_delay",
                "size": args.size,
                "seconds": args.seconds,
                "whep": whep,
                "whep_fps": len(inside) / args.seconds,
                "whep_unread": whep_unread,
                "hls": hls,
                "server_cores": server_cores,
                "app_cores": app_cores,
                "bench_cores": bench_cores,
            }
        )
    )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1280x720", help="the publisher's picture, WIDTHxHEIGHT")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument(
        "--settle", type=float, default=8.0, help="seconds after the ingest starts before measuring"
    )
    p.add_argument("--hls-poll", type=float, default=0.1, help="seconds between the poller's playlist reads")
    p.add_argument("--behind", type=int, default=3, help="target durations a player starts behind the edge")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
