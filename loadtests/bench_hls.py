"""HLS serving benchmark (issue 14): 1,000 simulated HLS players against ONE ``livecart serve`` process.

    .venv/bin/python loadtests/bench_hls.py [--players 1000] [--seconds 30] [--agents 2]

A real ``livecart serve`` (one process, SQLite on a temporary file, Redis DB 9, flushed first, its data
directory a temporary one, every rate limit scaled by ``LIVECART_LIMITS_SCALE``) has one live room. A viewer
of the room asks ``GET /api/rooms/{room}/video`` for the signed ``live.m3u8`` URL, which every player uses:
the grant's expiry is rounded to a bucket, so all the viewers of a room get the same URL, as a CDN would see.

The feeder. Real segments, but not encoded during the run: a 1280x720 @ 30 fps clip (the ClockPattern
camera: a barcode, a scrolling checkerboard and moving noise) with a silent AAC track is encoded once by the
app's own encoder (``live.hls_worker.Encoder``, the settings' bit rates and preset) and kept in
``--clip-dir``; during the run this process writes its segments into the room's directory one per segment
duration, cycling, with new sequence numbers, through ``HlsStore.add``, exactly as the encoder's recorder
does (file renamed into place, record appended, both playlists rewritten). Why not a real WHIP publisher: on
this 2-core machine the publisher's VP8 encode plus the server's decode and H.264 encode cost more than a
core (``bench_hls_encoder.py``) and would take it from the thing measured here, serving; and the files
served are the same either way.

The players run in ``--agents`` separate processes (spawned, uvloop): each is one keep-alive HTTP/1.1
connection that fetches the playlist every ``--poll`` seconds (from a random phase) and every segment that
is new in it, starting like hls.js three segments behind the live edge. Responses are parsed only as far as
the status line and ``Content-Length``; segment bodies are counted, not kept.

Phases, mirrored against drift: closed loops on ``/healthz``, the playlist and one segment, the players, the
closed loops again in reverse order (``--connections`` keep-alive connections, one request in flight on
each); then, unless ``--no-bare``, the same segment from a bare Starlette app under uvicorn (``bare_app``:
as a ``FileResponse`` like the app, read whole in one thread hop, from memory), the floor.
Printed: requests/s and MB/s of each phase, the CPU (cores) of the server process and of the load
generator, server CPU per request, and for the players what fraction of them got every segment:

- within the live window: each segment fetched before it left ``live.m3u8`` (its sequence number plus the
  window appeared), which is what a player needs not to fall off the live edge;
- in real time: each segment fetched within one segment duration of the poll that listed it (its download
  took less than the time it plays for);

and the delay from a segment's appearance to its fetch (p50 / p95 / max). The ratios set the figures
against baselines from the same run: segment closed-loop requests/s and player-phase server CPU per request
against ``/healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.harness import ROOT, Port, ServeProcess, auth, join, new_host, new_room, ok

REDIS_URL = "redis://127.0.0.1:6379/9"
ORIGIN = "http://127.0.0.1:8000"
LIMITS_SCALE = "100000"
CLIP_DIR = Path(tempfile.gettempdir()) / "livecart-bench-hls-clip"


# -- the server -----------------------------------------------------------------------------------------


def start_server(work: Path, **settings: str) -> ServeProcess:
    """``livecart serve`` (one process) on Redis DB 9 (flushed), SQLite and a data directory in ``work``;
    ``settings`` are extra ``LIVECART_*`` variables (name: value)."""
    import redis as sync_redis

    sync_redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **os.environ,
        "LIVECART_REDIS_URL": REDIS_URL,
        "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bench.db'}",
        "LIVECART_DATA_DIR": str(work / "data"),
        "LIVECART_LOG_LEVEL": "WARNING",
        "LIVECART_SECRET_KEY": "bench-secret-key-not-for-production",
        "LIVECART_BASE_URL": ORIGIN,
        "LIVECART_LIMITS_SCALE": LIMITS_SCALE,
        **{f"LIVECART_{k.upper()}": v for k, v in settings.items()},
    }
    return ServeProcess(env, log=work / "serve.log")


async def live_room(server: ServeProcess, *, need_hls: bool = True) -> tuple[str, str, str, dict[str, Any]]:
    """Once the server answers: a host, a live room, one joined viewer; (room id, host token, viewer
    token, the viewer's ``GET /api/rooms/{room}/video``, which must carry an HLS URL if ``need_hls``)."""
    await server.wait_ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        host = await new_host(c, "Bench")
        room = await new_room(c, host, "HLS")
        viewer = await join(c, room["id"], room["invite_token"], "Player")
        video = await ok(await c.get(f"/api/rooms/{room['id']}/video", headers=auth(viewer.token)))
    if need_hls and not video.get("hls"):
        raise RuntimeError(f"the video endpoint gave no HLS URL: {video}")
    return room["id"], host, viewer.token, video


def cpu_seconds(process: psutil.Process, *, children: bool = False) -> float:
    """User + system CPU seconds of ``process`` (and of its live children)."""
    total = sum(process.cpu_times()[:2])
    if children:
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
    return float(total)


# -- the floor: the same segment from a bare Starlette app ---------------------------------------------------

BARE_SEGMENT = "LIVECART_BENCH_HLS_SEGMENT"


def bare_app() -> Any:
    """A Starlette app with nothing but the segment named by ``$LIVECART_BENCH_HLS_SEGMENT``, served three
    ways: ``/file`` as the app serves segments (``FileResponse``: a thread hop per 64 KiB chunk), ``/whole``
    read in one thread hop and sent as one body, ``/cached`` from memory. uvicorn runs it (``--factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    segment = Path(os.environ[BARE_SEGMENT])
    cached = segment.read_bytes()
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Access-Control-Allow-Origin": "*"}

    async def file(request: Request) -> Response:
        found = await asyncio.to_thread(os.stat, segment)
        return FileResponse(segment, media_type="video/mp2t", headers=headers, stat_result=found)

    async def whole(request: Request) -> Response:
        return Response(await asyncio.to_thread(segment.read_bytes), media_type="video/mp2t", headers=headers)

    async def memory(request: Request) -> Response:
        return Response(cached, media_type="video/mp2t", headers=headers)

    return Starlette(routes=[Route("/file", file), Route("/whole", whole), Route("/cached", memory)])


def start_bare(segment: Path) -> tuple[subprocess.Popen[bytes], Port]:
    """uvicorn (httptools, uvloop, as ``livecart serve``) serving :func:`bare_app` on a held port."""
    port = Port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "loadtests.bench_hls:bare_app",
        "--port",
        str(port.number),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {**os.environ, BARE_SEGMENT: str(segment)}
    return subprocess.Popen(command, env=env, cwd=ROOT), port


# -- the clip -------------------------------------------------------------------------------------------


def encode_clip(
    folder: Path, *, seconds: float, width: int, height: int, settings: Any
) -> list[dict[str, Any]]:
    """``seconds`` of ClockPattern video (and silence) encoded by the app's encoder into ``folder``: its
    segment records, also kept as ``folder/clip.json``. Reused when a clip of the same kind is there."""
    import av

    from live.hls_worker import Config, Encoder
    from loadtests.harness.video import ClockPattern

    kind = {
        "seconds": seconds,
        "width": width,
        "height": height,
        "segment_seconds": settings.hls_segment_seconds,
        "video_kbps": settings.hls_video_kbps,
        "audio_kbps": settings.hls_audio_kbps,
        "preset": settings.hls_x264_preset,
        "max_short_side": settings.hls_max_short_side,
    }
    index = folder / "clip.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        kept = json.loads(index.read_text())
        if kept["kind"] == kind and all((folder / r["name"]).exists() for r in kept["segments"]):
            return list(kept["segments"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = Config(
        folder=folder,
        first_seq=1,
        video=True,
        audio=True,
        segment_seconds=settings.hls_segment_seconds,
        max_short_side=settings.hls_max_short_side,
        video_kbps=settings.hls_video_kbps,
        audio_kbps=settings.hls_audio_kbps,
        preset=settings.hls_x264_preset,
    )
    records: list[dict[str, Any]] = []
    encoder = Encoder(config, records.append)
    camera = ClockPattern(width, height, 30)
    start_ms = int(time.time() * 1000)
    frames = round(seconds * 30)
    for i in range(frames):
        at = i / 30
        encoder.video(at, camera.frame(i, start_ms + round(at * 1000)))
        if i % 3 == 0:  # 100 ms of stereo silence per 3 frames
            for j in range(5):
                audio = av.AudioFrame(format="s16", layout="stereo", samples=960)
                audio.sample_rate = 48_000
                audio.planes[0].update(bytes(audio.planes[0].buffer_size))
                encoder.audio(at + j * 0.02, audio)
    encoder.close()
    segments = [{**r, "name": f"seg-{r['seq']:06d}.ts"} for r in records]
    index.write_text(json.dumps({"kind": kind, "segments": segments}))
    return segments


class Feeder:
    """Writes the clip's segments into a room's recording, one per segment duration, as the encoder's
    recorder would; ``appeared`` maps each sequence number to when its playlists were in place."""

    def __init__(self, store: Any, room_id: str, clip_dir: Path, clip: list[dict[str, Any]]) -> None:
        self.store, self.room_id, self.clip_dir, self.clip = store, room_id, clip_dir, clip
        self.segments: list[Any] = []
        self.appeared: dict[int, float] = {}
        self.bytes = 0

    def add_next(self) -> None:
        from live.hls_rules import Segment

        seq = len(self.segments) + 1
        source = self.clip[(seq - 1) % len(self.clip)]
        folder = self.store.prepare(self.room_id)
        name = f"seg-{seq:06d}.ts"
        temporary = folder / f".{name}.part"
        shutil.copyfile(self.clip_dir / source["name"], temporary)
        os.replace(temporary, folder / name)
        segment = Segment(
            seq=seq,
            duration=float(source["duration"]),
            start_ms=int(time.time() * 1000),
            discontinuity=seq == 1 or (seq - 1) % len(self.clip) == 0,
            width=int(source["width"]),
            height=int(source["height"]),
            bytes=int(source["bytes"]),
        )
        self.segments.append(segment)
        self.store.add(self.room_id, segment, list(self.segments))
        self.appeared[seq] = time.time()
        self.bytes += segment.bytes

    async def run(self, until: float) -> None:
        """One segment per its duration until ``until`` (epoch seconds), on a steady schedule."""
        next_at = time.time()
        while time.time() < until:
            await asyncio.to_thread(self.add_next)
            next_at += self.segments[-1].duration
            await asyncio.sleep(max(0.0, next_at - time.time()))


# -- the load generator (agent processes) ---------------------------------------------------------------


class Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight; a response is read as far as its status
    and ``Content-Length``, its body kept only when asked."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.remaining = -1
        self.status = 0
        self.length = 0
        self.body: bytearray | None = None
        self.keep = False
        self.waiter: asyncio.Future[tuple[int, int, bytes | None]] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get(self, path: str, *, keep: bool = False) -> asyncio.Future[tuple[int, int, bytes | None]]:
        """(status, body length, body when ``keep``); status 0 when the connection was lost."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.keep = keep
        if self.transport is None or self.transport.is_closing():
            self.waiter.set_result((0, 0, None))
        else:
            self.transport.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        return self.waiter

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            if self.remaining < 0:
                self.head += view
                view = memoryview(b"")
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.head[:end]).lower()
                view = memoryview(bytes(self.head[end + 4 :]))
                self.head.clear()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
                stop = head.find(b"\r\n", at + 2)
                self.length = self.remaining = int(head[at + 17 : stop if stop > 0 else len(head)])
                self.body = bytearray() if self.keep else None
            take = min(len(view), self.remaining)
            if self.body is not None:
                self.body += view[:take]
            self.remaining -= take
            view = view[take:]
            if self.remaining == 0:
                self.remaining = -1
                if self.waiter is not None and not self.waiter.done():
                    body = bytes(self.body) if self.body is not None else None
                    self.waiter.set_result((self.status, self.length, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((0, 0, None))
        if not self.closed.done():
            self.closed.set_result(None)


async def _connect(host: str, port: int) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(f"{host}:{port}"), host, port)
    return client


def _cpu_at(moment: float, into: list[float]) -> asyncio.Task[None]:
    async def mark() -> None:
        await asyncio.sleep(max(0.0, moment - time.time()))
        into.append(time.process_time())

    return asyncio.create_task(mark())


async def closed_loop(
    *, host: str, port: int, path: str, connections: int, t_start: float, t0: float, t1: float
) -> dict[str, Any]:
    """``connections`` connections GET ``path`` back to back from ``t_start``; completions in [t0, t1)."""
    counts: Counter[str] = Counter()
    sizes = [0]
    cpu: list[float] = []
    marks = [_cpu_at(t0, cpu), _cpu_at(t1, cpu)]
    await asyncio.sleep(max(0.0, t_start - time.time()))
    clients = [await _connect(host, port) for _ in range(connections)]

    async def loop_one(client: Client) -> None:
        while time.time() < t1:
            status, length, _ = await client.get(path)
            if status == 0:
                counts["lost"] += 1
                return
            if t0 <= time.time() < t1:
                counts[str(status)] += 1
                sizes[0] += length

    await asyncio.gather(*(loop_one(c) for c in clients))
    await asyncio.gather(*marks)
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    return {"counts": dict(counts), "bytes": sizes[0], "cpu": cpu[1] - cpu[0], "t0": t0, "t1": t1}


def _listed(playlist: bytes) -> list[int]:
    return [int(line[4:10]) for line in playlist.decode().splitlines() if line.startswith("seg-")]


async def players(
    *,
    host: str,
    port: int,
    playlist_path: str,
    count: int,
    poll: float,
    behind: int,
    t_start: float,
    t0: float,
    t1: float,
    stop: float,
    seed: int,
) -> dict[str, Any]:
    """``count`` players from ``t_start`` (each from a random phase of ``poll``) until ``stop``; requests
    counted in [t0, t1); every segment fetch recorded as (player, seq, listed at, done at, status, bytes)."""
    rng = random.Random(seed)
    prefix = playlist_path.rsplit("/", 1)[0] + "/"
    counts: Counter[str] = Counter()
    sizes = Counter[str]()
    fetches: list[tuple[int, int, float, float, int, int]] = []
    cpu: list[float] = []
    marks = [_cpu_at(t0, cpu), _cpu_at(t1, cpu)]

    def note(kind: str, status: int, length: int) -> None:
        if t0 <= time.time() < t1:
            counts[f"{kind} {status}"] += 1
            sizes[kind] += length

    async def player(index: int) -> None:
        await asyncio.sleep(max(0.0, t_start + rng.random() * poll - time.time()))
        client = await _connect(host, port)
        last: int | None = None
        next_poll = time.time()
        while time.time() < stop:
            status, length, body = await client.get(playlist_path, keep=True)
            listed_at = time.time()
            note("playlist", status, length)
            if status == 0:
                client = await _connect(host, port)
            elif status == 200 and body is not None:
                seqs = _listed(body)
                wanted = seqs[-behind:] if last is None else [s for s in seqs if s > last]
                for seq in wanted:
                    status, length, _ = await client.get(f"{prefix}seg-{seq:06d}.ts")
                    fetches.append((index, seq, listed_at, time.time(), status, length))
                    note("segment", status, length)
                    if status == 0:
                        client = await _connect(host, port)
                        break
                    last = seq
            next_poll = max(next_poll + poll, time.time())
            await asyncio.sleep(next_poll - time.time())
        if client.transport is not None:
            client.transport.close()

    await asyncio.gather(*(player(i) for i in range(count)))
    await asyncio.gather(*marks)
    return {
        "counts": dict(counts),
        "bytes": dict(sizes),
        "fetches": fetches,
        "cpu": cpu[1] - cpu[0] if len(cpu) == 2 else float("nan"),
        "t0": t0,
        "t1": t1,
    }


PHASES: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {
    "closed_loop": closed_loop,
    "players": players,
}


def _agent_main(conn: Connection, name: str, kwargs: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        conn.send(("ok", asyncio.run(PHASES[name](**kwargs))))
    except BaseException as exc:
        conn.send(("error", repr(exc)))


async def in_agents(name: str, each: list[dict[str, Any]], *, within: float) -> list[dict[str, Any]]:
    """Run phase ``name`` once per kwargs of ``each``, each in a spawned process of its own."""
    ctx = multiprocessing.get_context("spawn")
    running = []
    for kwargs in each:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_agent_main, args=(child, name, kwargs), daemon=True)
        process.start()
        child.close()
        running.append((process, parent))
    results = []
    for process, parent in running:
        ready = await asyncio.to_thread(parent.poll, within)
        if not ready:
            process.kill()  # this agent's own pid
            raise TimeoutError(f"agent {process.pid} gave no result within {within:.0f} s")
        status, value = parent.recv()
        process.join(5)
        if status != "ok":
            raise RuntimeError(f"agent {process.pid}: {value}")
        results.append(value)
    return results


# -- the run --------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    server: psutil.Process, name: str, each: list[dict[str, Any]], t0: float, t1: float, within: float
) -> tuple[list[dict[str, Any]], float]:
    """Run a phase in the agents; the server's cores over [t0, t1) (and the machine's busy cores, kept in
    ``BUSY`` under ``name``)."""
    task = asyncio.create_task(in_agents(name, each, within=within))
    await asyncio.sleep(max(0.0, t0 - time.time()))
    me = psutil.Process()
    s0, b0, m0 = cpu_seconds(server), _busy(), cpu_seconds(me)
    await asyncio.sleep(max(0.0, t1 - time.time()))
    s1, b1, m1 = cpu_seconds(server), _busy(), cpu_seconds(me)
    BUSY[name] = (b1 - b0) / (t1 - t0)
    BUSY[f"{name} me"] = (m1 - m0) / (t1 - t0)
    return await task, (s1 - s0) / (t1 - t0)


BUSY: dict[str, float] = {}


def _busy() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


async def closed(
    args: argparse.Namespace,
    server: psutil.Process,
    port: int,
    kind: str,
    path: str,
    results: dict[str, list[dict[str, Any]]],
) -> None:
    """A closed-loop phase: ``--connections`` connections GET ``path`` back to back; a row in ``results``."""
    t_start = time.time() + 1.5
    t0, t1 = t_start + args.warmup_closed, t_start + args.warmup_closed + args.closed_seconds
    per = [
        {
            "host": "127.0.0.1",
            "port": port,
            "path": path,
            "connections": args.connections // args.agents,
            "t_start": t_start,
            "t0": t0,
            "t1": t1,
        }
        for _ in range(args.agents)
    ]
    agents, cores = await measure(server, "closed_loop", per, t0, t1, within=t1 - time.time() + 60)
    count = sum(a["counts"].get("200", 0) for a in agents)
    other = sum(sum(v for k, v in a["counts"].items() if k != "200") for a in agents)
    seconds = t1 - t0
    row = {
        "kind": kind,
        "rps": count / seconds,
        "errors": other,
        "mbps": sum(a["bytes"] for a in agents) / 1e6 / seconds,
        "server_cores": cores,
        "agent_cores": sum(a["cpu"] for a in agents) / seconds,
    }
    row["server_us"] = cores / row["rps"] * 1e6 if row["rps"] else float("nan")
    results.setdefault(kind, []).append(row)
    print(
        f"{kind}: {row['rps']:.0f} req/s ({other} not 200), {row['mbps']:.1f} MB/s, server "
        f"{cores:.2f} cores ({row['server_us']:.0f} us/req), load generator {row['agent_cores']:.2f} cores",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> int:
    from base.settings import Settings
    from live.hls_store import HlsStore

    settings = Settings()
    started = time.time()
    clip = await asyncio.to_thread(
        encode_clip, Path(args.clip_dir), seconds=args.clip_seconds, width=1280, height=720, settings=settings
    )
    clip_bytes = statistics.mean(r["bytes"] for r in clip)
    print(
        f"clip: {len(clip)} segments of {statistics.mean(r['duration'] for r in clip):.2f} s, "
        f"{clip_bytes / 1024:.0f} KiB on average ({clip_bytes * 8 / 1000 / settings.hls_segment_seconds:.0f} "
        f"kbit/s), {clip[0]['width']}x{clip[0]['height']} ({time.time() - started:.1f} s)",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-hls-"))
    server = start_server(work)
    try:
        room, _, _, video = await live_room(server)
        store = HlsStore(
            work / "data" / "hls",
            target_seconds=settings.hls_segment_seconds,
            window=settings.hls_live_window,
        )
        feeder = Feeder(store, room, Path(args.clip_dir), clip)
        for _ in range(settings.hls_live_window):  # a full live window before the first player comes
            feeder.add_next()
        playlist_path = str(video["hls"])
        segment_path = playlist_path.rsplit("/", 1)[0] + "/" + f"seg-{1:06d}.ts"
        host, port = "127.0.0.1", server.port
        proc = psutil.Process(server.pid)
        results: dict[str, list[dict[str, Any]]] = {}
        feeding = asyncio.create_task(feeder.run(until=time.time() + 10_000))

        await closed(args, proc, port, "healthz", "/healthz", results)
        await closed(args, proc, port, "playlist", playlist_path, results)
        await closed(args, proc, port, "segment", segment_path, results)

        t_start = time.time() + 2.0
        t0 = t_start + args.warmup
        t1 = t0 + args.seconds
        stop = t1 + args.poll + 4.0
        per = [
            {
                "host": host,
                "port": port,
                "playlist_path": playlist_path,
                "count": args.players // args.agents + (1 if i < args.players % args.agents else 0),
                "poll": args.poll,
                "behind": 3,
                "t_start": t_start,
                "t0": t0,
                "t1": t1,
                "stop": stop,
                "seed": i,
            }
            for i in range(args.agents)
        ]
        agents, cores = await measure(proc, "players", per, t0, t1, within=stop - time.time() + 120)
        bench_cores = BUSY["players me"]
        await closed(args, proc, port, "segment", segment_path, results)
        await closed(args, proc, port, "playlist", playlist_path, results)
        await closed(args, proc, port, "healthz", "/healthz", results)
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
    finally:
        server.stop(15)
        shutil.rmtree(work, ignore_errors=True)
    if args.bare:
        bare, bare_port = start_bare(Path(args.clip_dir) / clip[0]["name"])
        try:
            await asyncio.sleep(3.0)
            bare_proc = psutil.Process(bare.pid)
            for path in ("/file", "/whole", "/cached", "/cached", "/whole", "/file"):
                await closed(args, bare_proc, bare_port.number, f"bare {path}", path, results)
        finally:
            bare.terminate()
            bare.wait(10)
            bare_port.close()

    # -- the players' figures
    seconds = t1 - t0
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for a in agents:
        counts.update(a["counts"])
        sizes.update(a["bytes"])
    playlist_rps = counts.get("playlist 200", 0) / seconds
    segment_rps = counts.get("segment 200", 0) / seconds
    errors = {k: v for k, v in counts.items() if not k.endswith(" 200")}
    mbps = (sizes.get("playlist", 0) + sizes.get("segment", 0)) / 1e6 / seconds
    agent_cores = sum(a["cpu"] for a in agents) / seconds
    window = settings.hls_live_window
    appeared = feeder.appeared
    judged = sorted(s for s, at in appeared.items() if t0 <= at < t1)
    expected = {s.seq: s.bytes for s in feeder.segments}
    got: dict[tuple[int, int], tuple[float, float, int, int]] = {}
    offset = 0
    for a, agent_per in zip(agents, per, strict=True):
        for player, seq, listed, done, status, length in a["fetches"]:
            got[(offset + player, seq)] = (listed, done, status, length)
        offset += agent_per["count"]
    in_window = real_time = 0
    delays: list[float] = []
    for player in range(args.players):
        ok_window = ok_real = True
        for seq in judged:
            fetch = got.get((player, seq))
            leaves = appeared.get(seq + window, float("inf"))
            if fetch is None or fetch[2] != 200 or fetch[3] != expected[seq]:
                ok_window = ok_real = False
                continue
            listed, done = fetch[0], fetch[1]
            delays.append(done - appeared[seq])
            ok_window &= done < leaves
            ok_real &= done - listed <= settings.hls_segment_seconds
        in_window += ok_window
        real_time += ok_real
    healthz = results["healthz"]
    segment = results["segment"]
    healthz_rps = statistics.mean(r["rps"] for r in healthz)
    healthz_us = statistics.mean(r["server_us"] for r in healthz)
    closed_rps = statistics.mean(r["rps"] for r in segment)
    total_rps = playlist_rps + segment_rps
    player_us = cores / total_rps * 1e6 if total_rps else float("nan")
    print()
    print(
        f"{args.players} players, {seconds:.0f} s: playlist {playlist_rps:.0f} req/s, segment "
        f"{counts.get('segment 200', 0) / seconds:.0f} req/s, {mbps:.1f} MB/s; not 200: {errors or 'none'}"
    )
    print(
        f"server {cores:.2f} cores ({player_us:.0f} us/request); load generator {agent_cores:.2f} cores "
        f"(+ this process, feeder and bookkeeping, {bench_cores:.2f}); the machine "
        f"{BUSY['players']:.2f} cores busy, of which others "
        f"{BUSY['players'] - cores - agent_cores - bench_cores:.2f}"
    )
    print(
        f"segments judged: {len(judged)}; players with every one within the live window: "
        f"{in_window}/{args.players} ({in_window / args.players:.1%}); in real time: "
        f"{real_time}/{args.players} ({real_time / args.players:.1%})"
    )
    print(
        f"appearance -> fetched: p50 {_pct(delays, 0.5):.3f} s, p95 {_pct(delays, 0.95):.3f} s, "
        f"p99 {_pct(delays, 0.99):.3f} s, max {max(delays, default=float('nan')):.3f} s"
    )
    print(
        f"baselines: /healthz closed loop {healthz_rps:.0f} req/s at {healthz_us:.0f} us/req; one segment "
        f"closed loop {closed_rps:.0f} req/s ({closed_rps / healthz_rps:.2f}x healthz), "
        f"{statistics.mean(r['mbps'] for r in segment):.0f} MB/s"
    )
    playlist_us = statistics.mean(r["server_us"] for r in results["playlist"])
    print(
        f"playlist closed loop {statistics.mean(r['rps'] for r in results['playlist']):.0f} req/s at "
        f"{playlist_us:.0f} us/req ({playlist_us / healthz_us:.2f}x healthz); segment "
        f"{statistics.mean(r['server_us'] for r in segment):.0f} us/req"
    )
    print(f"ratio: server CPU per player request / per healthz request = {player_us / healthz_us:.2f}")
    app_segment_us = statistics.mean(r["server_us"] for r in segment)
    for path in ("/file", "/whole", "/cached") if args.bare else ():
        rows = results[f"bare {path}"]
        us = statistics.mean(r["server_us"] for r in rows)
        print(
            f"floor, the same segment from a bare Starlette app, {path}: "
            f"{statistics.mean(r['rps'] for r in rows):.0f} req/s at {us:.0f} us/req "
            f"(the app's segment: {app_segment_us / us:.2f}x this)"
        )
    print(
        json.dumps(
            {
                "bench": "hls",
                "players": args.players,
                "seconds": seconds,
                "playlist_rps": playlist_rps,
                "segment_rps": counts.get("segment 200", 0) / seconds,
                "mbps": mbps,
                "server_cores": cores,
                "agent_cores": agent_cores,
                "bench_cores": bench_cores,
                "machine_cores": BUSY["players"],
                "errors": errors,
                "holds_window": in_window / args.players,
                "holds_real_time": real_time / args.players,
                "delay_p50": _pct(delays, 0.5),
                "delay_p95": _pct(delays, 0.95),
                "delay_max": max(delays, default=None),
                "healthz": healthz,
                "segment": segment,
                "playlist": results["playlist"],
                "bare": {k: v for k, v in results.items() if k.startswith("bare")},
                "clip_segment_bytes": clip_bytes,
            }
        )
    )
    return 0 if in_window == args.players else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--players", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0, help="the players' measurement window")
    p.add_argument("--warmup", type=float, default=6.0, help="seconds of players before the window")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between a player's playlist fetches")
    p.add_argument("--agents", type=int, default=2, help="load generator processes")
    p.add_argument(
        "--connections", type=int, default=64, help="closed-loop baseline connections (all agents)"
    )
    p.add_argument("--closed-seconds", type=float, default=4.0)
    p.add_argument("--warmup-closed", type=float, default=1.0)
    p.add_argument(
        "--bare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also serve the same segment from a bare Starlette app (the floor)",
    )
    p.add_argument("--clip-seconds", type=float, default=20.0, help="length of the pre-encoded clip")
    p.add_argument("--clip-dir", default=str(CLIP_DIR), help="where the pre-encoded clip is kept")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
