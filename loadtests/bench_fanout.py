"""Fan-out benchmark: the hub against a plain ``websockets.broadcast()`` server, measured in the same run.

    .venv/bin/python loadtests/bench_fanout.py [--viewers 1000,5000] [--rate 10] [--seconds 8]

For each viewer count, both servers get the same load: N viewers connected from a separate process
(``rawviewers``: a minimal websocket client that counts frames and reads the send time out of each), and
``--rate`` events per second of the same size for ``--seconds``. The hub is a real ``livecart serve`` (one
worker, SQLite, Redis DB 10); its events are published to the room's Redis stream as the app publishes chat.
The baseline is a ``websockets`` server that broadcasts every message its publisher connection sends.

Figures: server CPU (user + system) per delivered frame, and p50/p99 delivery delay (from the publisher's
send time to the frame reaching the viewer's socket, the kernel's receive time; when the one viewers
process got round to reading it is printed too); ratios hub/baseline (goals: CPU <= 1.0x, p99 <= 1.1x).
Idle memory per viewer: the server's RSS growth from before the viewers connect to 2 s after the last one is
in (and has its snapshot), divided by the viewers (goal <= 16 KiB).

Capacity runs (``docs/capacity.md``) measure the hub alone: ``--workers 2`` serves the room from two
processes, ``--sample 10`` has only every tenth viewer time its frames (the others count them), so that one
viewers process can follow rooms of 10,000 and more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.harness import Port
from loadtests.hubbench import REDIS_URL, set_up_show, start_server
from loadtests.rawviewers import RawViewers, parse_frames, pong, serve

PAD = "x" * 120  # a chat message of a typical size


# -- the viewers (a separate process) -------------------------------------------------------------------


class _Delays:
    """Every frame each viewer gets: its delay, from the publisher's send time in it (``@t=``) to when it
    reached the viewer's socket (the kernel's receive time), and, to compare, to when this process read it.
    With ``sample`` > 1 only every ``sample``-th viewer parses its frames and times them; the others count
    theirs (for rooms larger than one client process can parse on a shared 2-core machine)."""

    def __init__(self, n: int, reply: Callable[[int, bytes], None], sample: int = 1) -> None:
        self.reply = reply
        self.parses = [i % sample == 0 for i in range(n)]
        self.carry = [b""] * n  # the start of a frame cut in two by the network (or of a cut ``@t=``)
        self.delays: list[float] = []
        self.read_delays: list[float] = []
        self.count = 0

    def on_data(self, i: int, data: bytes, at: float, now: float) -> None:
        if not self.parses[i]:
            data = self.carry[i] + data
            self.count += data.count(b"@t=")
            self.carry[i] = data[-2:]  # too short to hold a whole ``@t=``: nothing is counted twice
            return
        frames, self.carry[i] = parse_frames(self.carry[i] + data)
        for opcode, payload in frames:
            if opcode == 0x9:
                self.reply(i, pong(payload))
                continue
            t = payload.find(b"@t=")
            if t >= 0:
                sent = float(payload[t + 3 : payload.index(b";", t)])
                self.count += 1
                self.delays.append(at - sent)
                self.read_delays.append(now - sent)

    def reset(self) -> None:
        self.delays.clear()
        self.read_delays.clear()
        self.count = 0


def _viewers_main(conn: Any, host: str, port: int, paths: list[str], first_frame: bool, sample: int) -> None:
    got = _Delays(len(paths), lambda i, data: viewers.send(i, data), sample)
    viewers = RawViewers(host, port, paths, got.on_data, first_frame=first_frame)
    report = lambda: (got.count, sorted(got.delays), sorted(got.read_delays))  # noqa: E731
    serve(viewers, conn, {"reset": got.reset, "report": report})


def start_viewers(
    host: str, port: int, paths: list[str], *, first_frame: bool, sample: int = 1
) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    args = (child, host, port, paths, first_frame, sample)
    proc = ctx.Process(target=_viewers_main, args=args, daemon=True)
    proc.start()
    return proc, parent


# -- the two servers ------------------------------------------------------------------------------------

BASELINE = r"""
import asyncio, sys
from websockets.asyncio.server import serve, broadcast
clients = set()
async def handler(ws):
    if ws.request.path == "/publish":
        async for message in ws:
            broadcast(clients, message)
        return
    clients.add(ws)
    try:
        await ws.wait_closed()
    finally:
        clients.discard(ws)
async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None, max_queue=None):
        await asyncio.Future()
asyncio.run(main())
"""


def message(seq: int) -> str:
    return f"@t={time.time():.6f};{seq};{PAD}"


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def server_processes(pid: int) -> list[psutil.Process]:
    """The server's processes: its workers (``--workers N``), or the one process that is the worker."""
    top = psutil.Process(pid)
    return top.children(recursive=True) or [top]


async def measure(
    procs: list[psutil.Process], viewers: Any, publish: Any, *, rate: float, seconds: float
) -> dict[str, Any]:
    viewers.send("reset")
    viewers.recv()
    cpu0 = cpu_seconds(procs)
    n = int(rate * seconds)
    started = time.monotonic()
    for i in range(n):
        await publish(i)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    await asyncio.sleep(1.0)  # let the last ones arrive
    cpu = cpu_seconds(procs) - cpu0
    viewers.send("report")
    delivered, delays, read_delays = viewers.recv()

    def pct(q: float, ordered: list[float] = delays) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "events": n,
        "delivered": delivered,
        "cpu_us_per_frame": cpu / max(1, delivered) * 1e6,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "p99_read_ms": pct(0.99, read_delays),
    }


async def run_baseline(viewers_n: int, rate: float, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    held = Port()  # bound until the baseline server is done with it (SO_REUSEADDR: it may bind it too)
    port = held.number
    server = subprocess.Popen([sys.executable, "-c", BASELINE, str(port)])
    try:
        await asyncio.sleep(1.0)
        server_proc = psutil.Process(server.pid)
        rss0 = server_proc.memory_info().rss
        proc, viewers = start_viewers("127.0.0.1", port, ["/"] * viewers_n, first_frame=False)
        assert viewers.recv()[0] == "ready"
        await asyncio.sleep(2.0)
        idle_kib = (server_proc.memory_info().rss - rss0) / viewers_n / 1024
        async with connect(f"ws://127.0.0.1:{port}/publish", compression=None) as pub:

            async def publish(i: int) -> None:
                await pub.send(message(i))

            result = await measure([server_proc], viewers, publish, rate=rate, seconds=seconds)
        viewers.send("stop")
        proc.join(5)
        return {**result, "idle_kib_per_viewer": idle_kib}
    finally:
        server.kill()
        held.close()


async def run_hub(
    viewers_n: int, rate: float, seconds: float, work: Path, *, workers: int = 1, sample: int = 1
) -> dict[str, Any]:
    from redis.asyncio import Redis

    from realtime.broker_redis import RedisBroker

    server = start_server(work / "hub.db", workers=workers)
    try:
        show = await set_up_show(server, "Fan-out", viewers=viewers_n)
        room, paths = show.room, show.viewer_paths()
        await asyncio.sleep(1.0)
        procs = server_processes(server.pid)
        rss0 = sum(p.memory_info().rss for p in procs)
        proc, viewers = start_viewers("127.0.0.1", server.port, paths, first_frame=True, sample=sample)
        assert viewers.recv()[0] == "ready"
        await asyncio.sleep(2.0)  # presence settles
        idle_kib = (sum(p.memory_info().rss for p in procs) - rss0) / viewers_n / 1024
        redis = Redis.from_url(REDIS_URL)
        broker = RedisBroker(redis)

        async def publish(i: int) -> None:
            await broker.publish(room["id"], "chat", {"from": "Host", "text": message(i)}, now_ms=0)

        result = await measure(procs, viewers, publish, rate=rate, seconds=seconds)
        await redis.aclose()
        viewers.send("stop")
        proc.join(5)
        return {**result, "idle_kib_per_viewer": idle_kib}
    finally:
        server.stop(15)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    results: dict[str, Any] = {}
    for n in [int(v) for v in args.viewers.split(",")]:
        hub_only = args.hub_only or args.workers > 1 or args.sample > 1
        base = None if hub_only else await run_baseline(n, args.rate, args.seconds)
        hub = await run_hub(n, args.rate, args.seconds, work, workers=args.workers, sample=args.sample)
        if base is None:
            results[str(n)] = {"hub": hub}
            print(
                f"{n} viewers, {args.rate}/s, {args.workers} worker(s): CPU/frame "
                f"{hub['cpu_us_per_frame']:.2f} us; p50 {hub['p50_ms']:.1f} ms, p99 {hub['p99_ms']:.1f} ms "
                f"(as read by the viewers process {hub['p99_read_ms']:.1f} ms); delivered "
                f"{hub['delivered']}/{hub['events'] * n}; idle memory per viewer "
                f"{hub['idle_kib_per_viewer']:.1f} KiB",
                flush=True,
            )
            continue
        results[str(n)] = {
            "baseline": base,
            "hub": hub,
            "cpu_ratio": hub["cpu_us_per_frame"] / base["cpu_us_per_frame"],
            "p99_ratio": hub["p99_ms"] / base["p99_ms"],
            "idle_memory_ratio": hub["idle_kib_per_viewer"] / base["idle_kib_per_viewer"],
        }
        print(
            f"{n} viewers, {args.rate}/s: CPU/frame hub {hub['cpu_us_per_frame']:.2f} us vs broadcast "
            f"{base['cpu_us_per_frame']:.2f} us (ratio {results[str(n)]['cpu_ratio']:.2f}, goal <= 1.0); "
            f"p99 hub {hub['p99_ms']:.1f} ms vs {base['p99_ms']:.1f} ms "
            f"(ratio {results[str(n)]['p99_ratio']:.2f}, goal <= 1.1; as read by the viewers process "
            f"{hub['p99_read_ms']:.1f} vs {base['p99_read_ms']:.1f} ms); delivered hub {hub['delivered']}/"
            f"{hub['events'] * n}, broadcast {base['delivered']}/{base['events'] * n}; idle memory "
            f"per viewer hub {hub['idle_kib_per_viewer']:.1f} KiB vs broadcast "
            f"{base['idle_kib_per_viewer']:.1f} KiB "
            f"(ratio {results[str(n)]['idle_memory_ratio']:.2f}; goal <= 16 KiB)",
            flush=True,
        )
    print(json.dumps({"bench": "fanout", "rate": args.rate, "seconds": args.seconds, "results": results}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", default="1000,5000")
    p.add_argument("--rate", type=float, default=10.0, help="events per second")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--workers", type=int, default=1, help="hub worker processes (more than 1: hub only)")
    p.add_argument(
        "--sample", type=int, default=1, help="every Nth viewer times its frames (N > 1: hub only)"
    )
    p.add_argument("--hub-only", action="store_true", help="no baseline (for capacity runs)")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
