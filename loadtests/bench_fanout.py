"""Fan-out benchmark: the hub against a plain ``websockets.broadcast()`` server, measured in the same run.

    .venv/bin/python loadtests/bench_fanout.py [--viewers 1000,5000] [--rate 10] [--seconds 8]

For each viewer count, both servers get the same load: N viewers connected from a separate process (a
minimal raw websocket client that counts frames and reads the send time out of each), and ``--rate``
events per second of the same size for ``--seconds``. The hub is a real ``livecart serve`` (one worker,
SQLite, Redis DB 10); its events are published to the room's Redis stream as the app publishes chat. The
baseline is a ``websockets`` server that broadcasts every message its publisher connection sends.

Figures: server CPU (user + system) per delivered frame, and p50/p99 delivery delay; ratios hub/baseline
(goals: CPU <= 1.0x, p99 <= 1.1x). Idle memory per viewer: the server's RSS growth from before the viewers
connect to 2 s after the last one is in (and has its snapshot), divided by the viewers (goal <= 16 KiB).
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
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.hubbench import REDIS_URL, Show, free_port, handshake, start_server

PAD = "x" * 120  # a chat message of a typical size


# -- the viewers (a separate process) -------------------------------------------------------------------


class _Viewer(asyncio.Protocol):
    def __init__(self, handshake: bytes, delays: list[float], counts: list[int]) -> None:
        self.handshake, self.delays, self.counts = handshake, delays, counts
        self.buf = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.first = asyncio.get_running_loop().create_future()  # the first frame (the hub's snapshot)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded.set_result(self.buf.startswith(b"HTTP/1.1 101"))
            self.buf = self.buf[end + 4 :]
        now = time.time()
        while len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            head = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if len(self.buf) < head:
                return
            if n == 126:
                n = int.from_bytes(self.buf[2:4], "big")
            elif n == 127:
                n = int.from_bytes(self.buf[2:10], "big")
            if len(self.buf) < head + n:
                return
            opcode = self.buf[0] & 0x0F
            payload = self.buf[head : head + n]
            self.buf = self.buf[head + n :]
            if opcode == 0x9:  # a ping: answer it (a client's frames are masked; a zero mask is a mask)
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
                continue
            if not self.first.done():
                self.first.set_result(None)
            self.on_payload(payload, now)

    def on_payload(self, payload: bytes, now: float) -> None:
        i = payload.find(b"@t=")
        if i >= 0:
            self.counts[0] += 1
            self.delays.append(now - float(payload[i + 3 : payload.index(b";", i)]))


def _viewers_main(conn: Any, host: str, port: int, paths: list[str], first_frame: bool) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        delays: list[float] = []
        counts = [0]
        protos = []
        for path in paths:
            proto = _Viewer(handshake(path, port), delays, counts)
            await loop.create_connection(lambda p=proto: p, host, port)  # type: ignore[misc]
            protos.append(proto)
        ok = sum([await p.upgraded for p in protos])
        if first_frame:  # the hub sends a snapshot first: a viewer is ready once it has it
            await asyncio.gather(*(p.first for p in protos))
        conn.send(("ready", ok))
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "reset":
                delays.clear()
                counts[0] = 0
                conn.send("ok")
            elif cmd == "report":
                conn.send((counts[0], sorted(delays)))
            else:
                return

    asyncio.run(run())


def start_viewers(host: str, port: int, paths: list[str], *, first_frame: bool) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_viewers_main, args=(child, host, port, paths, first_frame), daemon=True)
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


async def measure(
    proc: psutil.Process, viewers: Any, publish: Any, *, rate: float, seconds: float
) -> dict[str, Any]:
    viewers.send("reset")
    viewers.recv()
    cpu0 = sum(proc.cpu_times()[:2])
    n = int(rate * seconds)
    started = time.monotonic()
    for i in range(n):
        await publish(i)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    await asyncio.sleep(1.0)  # let the last ones arrive
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    viewers.send("report")
    delivered, delays = viewers.recv()

    def pct(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))] * 1000 if delays else float("nan")

    return {
        "events": n,
        "delivered": delivered,
        "cpu_us_per_frame": cpu / max(1, delivered) * 1e6,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


async def run_baseline(viewers_n: int, rate: float, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    port = free_port()
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

            result = await measure(server_proc, viewers, publish, rate=rate, seconds=seconds)
        viewers.send("stop")
        proc.join(5)
        return {**result, "idle_kib_per_viewer": idle_kib}
    finally:
        server.kill()


async def run_hub(viewers_n: int, rate: float, seconds: float, work: Path) -> dict[str, Any]:
    from redis.asyncio import Redis

    from realtime.broker_redis import RedisBroker

    server, port = start_server(work / "hub.db")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            show = Show(c)
            await show.wait_ready()
            await show.open("Fan-out")
            paths = await show.viewer_paths(viewers_n)
        room = show.room
        server_proc = psutil.Process(server.pid)
        await asyncio.sleep(1.0)
        rss0 = server_proc.memory_info().rss
        proc, viewers = start_viewers("127.0.0.1", port, paths, first_frame=True)
        assert viewers.recv()[0] == "ready"
        await asyncio.sleep(2.0)  # presence settles
        idle_kib = (server_proc.memory_info().rss - rss0) / viewers_n / 1024
        redis = Redis.from_url(REDIS_URL)
        broker = RedisBroker(redis)

        async def publish(i: int) -> None:
            await broker.publish(room["id"], "chat", {"from": "Host", "text": message(i)}, now_ms=0)

        result = await measure(server_proc, viewers, publish, rate=rate, seconds=seconds)
        await redis.aclose()
        viewers.send("stop")
        proc.join(5)
        return {**result, "idle_kib_per_viewer": idle_kib}
    finally:
        server.terminate()
        server.wait(15)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    results: dict[str, Any] = {}
    for n in [int(v) for v in args.viewers.split(",")]:
        base = await run_baseline(n, args.rate, args.seconds)
        hub = await run_hub(n, args.rate, args.seconds, work)
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
            f"(ratio {results[str(n)]['p99_ratio']:.2f}, goal <= 1.1); delivered hub {hub['delivered']}/"
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
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
