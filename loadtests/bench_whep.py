"""WebRTC benchmark: CPU of the server process per WHEP viewer (aiortc encodes once per viewer).

    .venv/bin/python loadtests/bench_whep.py [--viewers 0,1,2,4,8] [--seconds 5] [--codec vp8]

A real ``livecart serve`` (one worker, SQLite, Redis DB 13) gets one WHIP ingest: a synthetic 640x360 @ 30 fps
publisher (a scrolling checkerboard with a patch of noise, so the encoders have something to do) plus Opus
silence, sent from this process. Then WHEP viewers are added up to each count, and after a settling time
the server's CPU (user + system, from psutil) is measured over ``--seconds``. The viewers live in this
process too, with a counting no-op decoder in place of aiortc's, so that they cost this machine as little as
possible and still tell how many video frames (and bytes) each one received.

Printed per step: server cores, cores above the ingest alone, cores per viewer, frames per second and
kbit/s received per viewer (the slowest and the mean), and the cores this client process used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiortc.rtcrtpreceiver
import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.mediastreams import AudioStreamTrack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.harness.video import PacedVideo
from loadtests.hubbench import set_up_show, start_server

SDP = {"Content-Type": "application/sdp"}
WIDTH, HEIGHT, FPS = 640, 360, 30


class Synthetic(PacedVideo):
    """640x360 @ 30 fps: 60 precomputed frames (checkerboard scrolling, a 160x90 noise patch), cycled."""

    def __init__(self) -> None:
        super().__init__(WIDTH, HEIGHT, FPS)
        rng = random.Random(0)
        self._lumas = []
        for i in range(60):
            even = bytes((((x + i * 4) // 40) % 2) * 160 + 40 for x in range(WIDTH))
            odd = bytes(200 - v for v in even)
            rows = []
            for y in range(HEIGHT):
                row = even if (y // 40) % 2 == 0 else odd
                if 135 <= y < 225:
                    row = row[:240] + rng.randbytes(160) + row[400:]
                rows.append(row)
            self._lumas.append(b"".join(rows))

    def luma(self, count: int) -> bytes:
        return self._lumas[count % len(self._lumas)]


class Counting(Decoder):
    """Counts what a viewer receives instead of decoding it."""

    def __init__(self, kind: str) -> None:
        self.kind, self.frames, self.bytes = kind, 0, 0

    def decode(self, encoded_frame: Any) -> list[Any]:
        self.frames += 1
        self.bytes += len(encoded_frame.data)
        return []


DECODERS: list[Counting] = []


def counting_decoder(codec: Any) -> Counting:
    decoder = Counting(codec.mimeType.split("/")[0])
    DECODERS.append(decoder)
    return decoder


aiortc.rtcrtpreceiver.get_decoder = counting_decoder  # type: ignore[attr-defined]


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(c: httpx.AsyncClient, pc: RTCPeerConnection, url: str, token: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    r = await c.post(
        url, content=pc.localDescription.sdp, headers={"Authorization": f"Bearer {token}", **SDP}
    )
    if r.status_code != 201:
        raise RuntimeError(f"{url}: {r.status_code} {r.text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))


async def add_viewer(c: httpx.AsyncClient, room: str, token: str, codec: str) -> RTCPeerConnection:
    pc = peer()
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    if codec != "any":
        mime = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
        video.setCodecPreferences(
            [k for k in RTCRtpSender.getCapabilities("video").codecs if k.mimeType == mime]
        )
    await negotiate(c, pc, f"/api/rooms/{room}/whep", token)
    return pc


def video_counts() -> list[tuple[int, int]]:
    return [(d.frames, d.bytes) for d in DECODERS if d.kind == "video"]


async def measure(server: psutil.Process, seconds: float, viewers: int) -> dict[str, Any]:
    me = psutil.Process()
    before = video_counts()
    s0, m0, t0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.monotonic()
    psutil.cpu_percent()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    machine = psutil.cpu_percent() / 100 * (psutil.cpu_count() or 1)
    server_cores = (sum(server.cpu_times()[:2]) - s0) / elapsed
    client_cores = (sum(me.cpu_times()[:2]) - m0) / elapsed
    after = video_counts()
    pairs = list(zip(after, before, strict=False))[-viewers:] if viewers else []
    rates = [((a[0] - b[0]) / elapsed, (a[1] - b[1]) * 8 / 1000 / elapsed) for a, b in pairs]
    return {
        "viewers": viewers,
        "server_cores": server_cores,
        "client_cores": client_cores,
        "machine_cores": machine,
        "fps_min": min((r[0] for r in rates), default=0.0),
        "fps_mean": sum(r[0] for r in rates) / len(rates) if rates else 0.0,
        "kbps_mean": sum(r[1] for r in rates) / len(rates) if rates else 0.0,
    }


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="whep-"))
    server = start_server(work / "whep.db", whep_max_viewers="1000")
    counts = sorted(int(v) for v in args.viewers.split(","))
    peers: list[RTCPeerConnection] = []
    results = []
    try:
        show = await set_up_show(server, "WHEP", viewers=max(counts))
        room, host_token, tokens = show.room, show.host_token, show.viewer_tokens
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            publisher = peer()
            peers.append(publisher)
            publisher.addTransceiver(Synthetic(), direction="sendonly")
            publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
            await negotiate(c, publisher, f"/api/rooms/{room['id']}/whip", host_token)
            proc = psutil.Process(server.pid)
            viewers: list[RTCPeerConnection] = []
            for n in counts:
                while len(viewers) < n:
                    viewers.append(await add_viewer(c, room["id"], tokens[len(viewers)], args.codec))
                    peers.append(viewers[-1])
                await asyncio.sleep(args.settle)
                row = await measure(proc, args.seconds, n)
                results.append(row)
                print(
                    f"{n} viewers: server {row['server_cores']:.2f} cores, per viewer fps min "
                    f"{row['fps_min']:.1f} mean {row['fps_mean']:.1f}, {row['kbps_mean']:.0f} kbit/s; "
                    f"bench client {row['client_cores']:.2f} cores; machine {row['machine_cores']:.2f} cores",
                    flush=True,
                )
    finally:
        await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)
        server.stop(15)
    alone = results[0]["server_cores"] if results and results[0]["viewers"] == 0 else None
    print()
    print(
        "| WHEP viewers | server cores | above ingest alone | per viewer | ratio to ingest alone "
        "| fps per viewer (min / mean) | kbit/s per viewer | bench client cores |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        n, cores = row["viewers"], row["server_cores"]
        extra = cores - alone if alone is not None else float("nan")
        per = extra / n if n and alone is not None else float("nan")
        ratio = per / alone if n and alone else float("nan")
        fps = f"{row['fps_min']:.1f} / {row['fps_mean']:.1f}" if n else "-"
        print(
            f"| {n} | {cores:.2f} | {extra:+.2f} | {per:.3f} | {ratio:.2f}x | {fps} | "
            f"{row['kbps_mean']:.0f} | {row['client_cores']:.2f} |"
            if n
            else f"| 0 (ingest alone) | {cores:.2f} | - | - | - | - | - | {row['client_cores']:.2f} |"
        )
    print(json.dumps({"bench": "whep", "codec": args.codec, "seconds": args.seconds, "results": results}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", default="0,1,2,4,8", help="viewer counts to measure, ascending")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement window per step")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after adding viewers before measuring")
    p.add_argument("--codec", choices=["vp8", "h264", "any"], default="vp8", help="what the viewers accept")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
