"""Scale-out benchmark: how many frames a second one app process and two app processes deliver.

    .venv/bin/python loadtests/bench_scale.py [--viewers 4000] [--rate 150] [--seconds 5]

For 1 and then 2 workers (``livecart serve --workers N``: one SO_REUSEPORT socket each, so the viewers
spread over them), ``--viewers`` websockets from a separate process hold one room, and events of a fixed
size are published to it at ``--rate`` per second, more than two processes can fan out (600,000 frames/s
offered by default). Every process reads the room's stream from Redis and writes to its own viewers. The
viewers (``rawviewers``, no asyncio) only count bytes (every frame has the same size) and read each socket
every ``READ_EVERY`` seconds, so they cost little per frame. Figure: frames delivered per second, 2 workers
/ 1 worker (goal >= 1.6), the servers' CPU per delivered frame in each case (flat when nothing is shared)
and the viewers process's CPU.

On a 2-core machine the viewers process, Redis and the publisher share the cores with the servers, so two
workers cannot have two whole cores: the CPU per frame says whether the second worker scales.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.hubbench import REDIS_URL, set_up_show, start_server  # noqa: E402
from loadtests.rawviewers import RawViewers, serve  # noqa: E402

PAD = "x" * 100
READ_EVERY = 0.05  # seconds between two reads of a viewer's socket


def _viewers_main(conn: Any, port: int, paths: list[str]) -> None:
    """Counts the bytes after each viewer's snapshot: nothing per frame (``rawviewers``, no asyncio)."""
    counted = [0]

    def on_data(i: int, data: bytes, at: float, now: float) -> None:
        counted[0] += len(data)

    viewers = RawViewers("127.0.0.1", port, paths, on_data, timestamps=False)
    cpu0 = time.process_time()
    # Reading each socket a few times a second, not at every frame, keeps this process's cost per frame small
    # (a read costs about the same for one frame or fifteen), so it leaves the cores to the workers. It also
    # raises the workers' own CPU per frame (probably the loopback's ACKs, now sent by delayed-ACK timers;
    # docs/benchmarks.md, "Two workers vs one"), the same for one worker and for two.
    count = lambda: (counted[0], time.process_time() - cpu0)  # noqa: E731
    serve(viewers, conn, {"count": count}, read_every=READ_EVERY)


async def run(workers: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from redis.asyncio import Redis

    from realtime.broker_redis import RedisBroker

    server = start_server(
        work / f"scale{workers}.db",
        workers=workers,
        ws_ping_interval_seconds="600",  # the counting client answers no pings
        ws_history="100000",  # a backlog the servers work through is never trimmed away
    )
    try:
        show = await set_up_show(server, "Scale", viewers=args.viewers, settle=1.0)  # settle: every worker up
        room, paths = show.room, show.viewer_paths()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        viewers = ctx.Process(target=_viewers_main, args=(child, server.port, paths), daemon=True)
        viewers.start()
        assert parent.recv()[0] == "ready"
        await asyncio.sleep(2.0)
        top = psutil.Process(server.pid)
        procs = top.children(recursive=True) or [top]  # one worker runs in the top process
        redis = Redis.from_url(REDIS_URL)
        broker = RedisBroker(redis, history=100_000)
        body = {"from": "Host", "text": PAD}
        frame_bytes = len(json.dumps({"type": "chat", "seq": 100000, **body}, separators=(",", ":"))) + 2
        n = int(args.rate * args.seconds)
        started = time.monotonic()
        parent.send("count")
        count0, client0 = parent.recv()
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        for i in range(n):
            await broker.publish(room["id"], "chat", body, now_ms=0)
            await asyncio.sleep(max(0.0, started + (i + 1) / args.rate - time.monotonic()))
        parent.send("count")
        count1, client1 = parent.recv()
        elapsed = time.monotonic() - started
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs) - cpu0
        await redis.aclose()
        parent.send("stop")
        viewers.join(5)
        frames = (count1 - count0) / frame_bytes
        return {
            "workers": workers,
            "frames_per_s": frames / elapsed,
            "offered_per_s": args.rate * args.viewers,
            "server_cores": cpu / elapsed,
            "cpu_us_per_frame": cpu / max(frames, 1) * 1e6,
            "viewers_cores": (client1 - client0) / elapsed,
        }
    finally:
        server.stop(20)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    one = await run(1, args, work)
    two = await run(2, args, work)
    ratio = two["frames_per_s"] / one["frames_per_s"]
    print(
        f"{args.viewers} viewers, offered {one['offered_per_s']:.0f} frames/s: 1 worker delivered "
        f"{one['frames_per_s']:.0f}/s ({one['server_cores']:.2f} cores, "
        f"{one['cpu_us_per_frame']:.2f} us/frame; viewers {one['viewers_cores']:.2f} cores), "
        f"2 workers {two['frames_per_s']:.0f}/s ({two['server_cores']:.2f} cores, "
        f"{two['cpu_us_per_frame']:.2f} us/frame; viewers {two['viewers_cores']:.2f} cores): "
        f"ratio {ratio:.2f} (goal >= 1.6)",
        flush=True,
    )
    print(json.dumps({"bench": "scale", "one": one, "two": two, "ratio": ratio}))
    return 0 if ratio >= 1.6 or not args.check else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=4000)
    p.add_argument("--rate", type=float, default=150.0, help="events per second")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
