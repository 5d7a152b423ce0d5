"""Load-generating phases for ``bench_buy.py``, each run inside a separate *agent* process.

Why a hand-written HTTP/1.1 client: on a 2-core machine every cycle the load generator burns is taken from
the server under test. httpx costs several hundred microseconds of Python per request, which would make
the client, not the app, the ceiling. This client is an ``asyncio.Protocol`` on uvloop (already installed
with ``uvicorn[standard]``): requests are pre-formatted bytes, a response is parsed only as far as the status
code and ``Content-Length``, and every connection is keep-alive with one request in flight (no pipelining,
like a browser or mobile client). It needs no dependency beyond what the app already installs.

Measurement protocol shared by every phase: the parent hands each agent the same absolute window on the
system-wide monotonic clock (``time.monotonic()`` is ``CLOCK_MONOTONIC`` on Linux, shared by processes).
Work before ``t0`` is warm-up; only completions inside ``[t0, t1)`` are counted; at ``t1`` the agent stops
issuing work and waits briefly for what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

DRAIN_SECONDS = 5.0


# -- agent processes ------------------------------------------------------------------------------------


def _agent_main(conn: Connection) -> None:
    """Run phases on request until told to stop. One fresh event loop per phase."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        name, kwargs = msg
        try:
            result = asyncio.run(PHASES[name](**kwargs))
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class Agent:
    """A load-generator process (spawned, so it shares nothing with the orchestrating parent)."""

    def __init__(self, ctx: Any) -> None:
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_agent_main, args=(child,), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        pid: int | None = self.process.pid
        assert pid is not None
        return pid

    def submit(self, name: str, **kwargs: Any) -> None:
        self._conn.send((name, kwargs))

    def result(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"agent {self.pid} gave no result within {timeout:.0f}s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"agent {self.pid} failed:\n{value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send(None)
        self.process.join(timeout=3)
        if self.process.is_alive():
            self.process.terminate()  # this agent's own pid only
            self.process.join(timeout=3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=3)
        self._conn.close()


def start_agents(n: int) -> list[Agent]:
    ctx = multiprocessing.get_context("spawn")
    return [Agent(ctx) for _ in range(n)]


# -- results --------------------------------------------------------------------------------------------


def _result(
    counts: Counter[str], latencies: list[float], t0: float, t1: float, **extra: Any
) -> dict[str, Any]:
    return {"counts": dict(counts), "latencies": latencies, "t0": t0, "t1": t1, "pid": os.getpid(), **extra}


def commit_rate(events: list[tuple[float, int]], t0: float, t1: float) -> tuple[float, int]:
    """Rows/s from commit events ``(time, rows)`` without window-edge quantisation: the rows of every commit
    after the first one inside ``[t0, t1)``, over the time from that first commit to the last."""
    inside = sorted(e for e in events if t0 <= e[0] < t1)
    if len(inside) < 2:
        return 0.0, len(inside)
    rows = sum(n for _, n in inside[1:])
    return rows / (inside[-1][0] - inside[0][0]), len(inside)


async def _wait_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# -- HTTP/1.1 keep-alive client -------------------------------------------------------------------------


class _HttpConn(asyncio.Protocol):
    """One keep-alive connection, one request in flight. ``next_request()`` gives bytes, or None to stop."""

    def __init__(self, run: _HttpRun, next_request: Callable[[], bytes | None]) -> None:
        self.run = run
        self.next_request = next_request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent_at = 0.0
        self.busy = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send_next(self) -> None:
        request = self.next_request() if time.monotonic() < self.run.t1 else None
        if request is None or self.transport is None or self.transport.is_closing():
            self.busy = False
            self.run.idle()
            return
        self.busy = True
        self.sent_at = time.monotonic()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            pos = head.find(b"\r\ncontent-length:")
            if pos < 0:
                length = 0
            else:
                stop = head.find(b"\r\n", pos + 2)
                length = int(head[pos + 17 : stop if stop > 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            status = self.buf[9:12].decode()
            self.buf = self.buf[total:]
            self.run.record(status, self.sent_at)
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.run.record("conn_lost", self.sent_at)
            self.busy = False
            self.run.idle()
        if not self.lost.done():
            self.lost.set_result(None)


class _HttpRun:
    def __init__(self, t0: float, t1: float, connections: int) -> None:
        self.t0, self.t1 = t0, t1
        self.counts: Counter[str] = Counter()
        self.warmup: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.active = connections
        self.done = asyncio.get_running_loop().create_future()

    def record(self, status: str, sent_at: float) -> None:
        now = time.monotonic()
        if self.t0 <= now < self.t1:
            self.counts[status] += 1
            if status in ("200", "201"):
                self.latencies.append(now - sent_at)
        elif now < self.t0:
            self.warmup[status] += 1

    def idle(self) -> None:
        self.active -= 1
        if self.active <= 0 and not self.done.done():
            self.done.set_result(None)


async def http_phase(
    *,
    host: str,
    port: int,
    connections: int,
    kind: str,
    t_start: float,
    t0: float,
    t1: float,
    card_id: str = "",
    tokens: list[str] | None = None,
    key_prefix: str = "",
) -> dict[str, Any]:
    """``kind``: ``healthz`` (GET /healthz) or ``buy`` (POST /api/cards/{card}/orders, a fresh key each)."""
    loop = asyncio.get_running_loop()
    hostname = f"{host}:{port}".encode()
    if kind == "healthz":
        fixed = b"GET /healthz HTTP/1.1\r\nHost: " + hostname + b"\r\n\r\n"

        def factory(i: int) -> Callable[[], bytes | None]:
            return lambda: fixed

    elif kind == "buy":
        assert tokens
        body = b'{"quantity":1}'
        heads = [
            (
                f"POST /api/cards/{card_id}/orders HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {t}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nIdempotency-Key: "
            ).encode()
            for t in tokens
        ]

        def factory(i: int) -> Callable[[], bytes | None]:
            seq = 0
            prefix = f"{key_prefix}-{i}-".encode()

            def next_request() -> bytes | None:
                nonlocal seq
                seq += 1
                # each connection walks the viewers from its own offset: many distinct buyers at once
                head = heads[(i + seq * 7919) % len(heads)]
                return head + prefix + str(seq).encode() + b"\r\n\r\n" + body

            return next_request

    else:
        raise ValueError(kind)

    await _wait_until(t_start)
    run = _HttpRun(t0, t1, connections)
    conns: list[_HttpConn] = []
    for i in range(connections):
        proto = _HttpConn(run, factory(i))
        await loop.create_connection(lambda proto=proto: proto, host, port)  # type: ignore[misc]
        conns.append(proto)
    for c in conns:
        c.send_next()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(
            asyncio.shield(run.done), timeout=max(0.0, t1 - time.monotonic()) + DRAIN_SECONDS
        )
    in_flight = sum(1 for c in conns if c.busy)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    for c in conns:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(c.lost, timeout=1)
    return _result(run.counts, run.latencies, t0, t1, warmup=dict(run.warmup), unfinished=in_flight)


# -- direct Lua baseline --------------------------------------------------------------------------------


async def lua_phase(
    *,
    redis_url: str,
    script_path: str,
    keys: list[str],
    room_id: str,
    buyers: list[str],
    rate_args: list[int],
    concurrency: int,
    t0: float,
    t1: float,
    key_prefix: str,
) -> dict[str, Any]:
    """The app's reserve.lua, called exactly as ``Inventory.reserve`` calls it, minus everything else."""
    from redis.asyncio import Redis

    from base.ids import new_id
    from shop.inventory.store import rate_keys

    source = Path(script_path).read_text(encoding="utf-8")  # noqa: ASYNC240  (before the window)
    redis = Redis.from_url(redis_url)
    script = redis.register_script(source)
    card_id = keys[0][len("{card:") : keys[0].index("}")]  # keys[0] is "{card:ID}:sale"
    counts: Counter[str] = Counter()
    latencies: list[float] = []

    async def worker(i: int) -> None:
        seq = 0
        while True:
            started = time.monotonic()
            if started >= t1:
                return
            seq += 1
            buyer = buyers[(i + seq * 7919) % len(buyers)]
            res = await script(
                keys=[*keys, *rate_keys(card_id, buyer, "127.0.0.1")],  # the gate, as the app's buy
                args=[
                    buyer,
                    f"{key_prefix}-{i}-{seq}",
                    1,
                    int(time.time() * 1000),
                    new_id("ord"),
                    room_id,
                    "",
                    *rate_args,
                ],
            )
            now = time.monotonic()
            if t0 <= now < t1:
                outcome = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
                counts[outcome] += 1
                if outcome == "ok":
                    latencies.append(now - started)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await redis.aclose()
    return _result(counts, latencies, t0, t1)


# -- SQL: the app's group commit vs plain batched inserts -----------------------------------------------


def _row_factory(
    card_id: str, room_id: str, buyers: list[str], key_prefix: str
) -> Callable[[], dict[str, Any]]:
    from base.ids import new_id

    seq = 0

    def make() -> dict[str, Any]:
        nonlocal seq
        seq += 1
        now = int(time.time() * 1000)
        return {
            "id": new_id("ord"),
            "card_id": card_id,
            "room_id": room_id,
            "buyer_id": buyers[seq % len(buyers)],
            "referrer_id": None,
            "idempotency_key": f"{key_prefix}-{seq}",
            "quantity": 1,
            "unit_price": 990,
            "amount": 990,
            "status": "reserved",
            "restocked": False,
            "late": False,
            "expires_ms": now + 300_000,
            "created_ms": now,
            "paid_ms": None,
            "closed_ms": None,
            "refund_reason": None,
            "tracking_number": None,
        }

    return make


async def writer_phase(
    *,
    database_url: str,
    card_id: str,
    room_id: str,
    buyers: list[str],
    concurrency: int,
    t0: float,
    t1: float,
    key_prefix: str,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """The app's ``OrderWriter`` driven by ``concurrency`` tasks, each awaiting ``insert(row)`` in a loop.

    With ``redis_url`` the writer gets the same ``on_committed`` callback as the app (clear pending marks).
    """
    import live.models  # noqa: F401  (every mapped table, so the ORM can resolve foreign keys)
    import shop.models  # noqa: F401
    from base import db
    from shop.orders.writer import OrderWriter

    engine = db.create_engine(database_url)
    redis = None
    on_committed = None
    if redis_url:
        from redis.asyncio import Redis

        from shop.inventory.store import Inventory

        redis = Redis.from_url(redis_url)
        inventory = Inventory(redis)

        async def on_committed(rows: list[dict[str, object]]) -> None:
            await inventory.mark_committed([(str(r["card_id"]), str(r["id"])) for r in rows])

    events: list[tuple[float, int]] = []

    async def committed(rows: list[dict[str, object]]) -> None:
        events.append((time.monotonic(), len(rows)))  # one call per committed batch, right after COMMIT
        if on_committed is not None:
            await on_committed(rows)

    writer = OrderWriter(engine, on_committed=committed)
    writer.start()
    make = _row_factory(card_id, room_id, buyers, key_prefix)
    counts: Counter[str] = Counter()
    latencies: list[float] = []

    async def worker() -> None:
        while True:
            started = time.monotonic()
            if started >= t1:
                return
            try:
                await writer.insert(make())
                status = "ok"
            except Exception as exc:
                status = type(exc).__name__
            now = time.monotonic()
            if t0 <= now < t1:
                counts[status] += 1
                if status == "ok":
                    latencies.append(now - started)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        batches, rows = writer.batches, writer.rows
        await writer.stop()
    finally:
        await engine.dispose()
        if redis is not None:
            await redis.aclose()
    rate, commits = commit_rate(events, t0, t1)
    return _result(counts, latencies, t0, t1, batches=batches, rows=rows, rate=rate, commits=commits)


async def batch_insert_phase(
    *,
    database_url: str,
    card_id: str,
    room_id: str,
    buyers: list[str],
    batch: int,
    loops: int,
    t0: float,
    t1: float,
    key_prefix: str,
) -> dict[str, Any]:
    """Baseline: ``loops`` concurrent loops, each one transaction with one executemany INSERT of ``batch``
    rows (SQLAlchemy core, the migrated ``orders`` table), back to back."""
    from sqlalchemy import insert

    from base import db
    from shop.models import Order

    engine = db.create_engine(database_url)
    stmt = insert(Order.__table__)  # type: ignore[arg-type]
    make = _row_factory(card_id, room_id, buyers, key_prefix)
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    events: list[tuple[float, int]] = []

    async def loop_() -> None:
        while True:
            started = time.monotonic()
            if started >= t1:
                return
            rows = [make() for _ in range(batch)]
            async with engine.begin() as conn:
                await conn.execute(stmt, rows)
            now = time.monotonic()
            events.append((now, len(rows)))
            if t0 <= now < t1:
                counts["ok"] += len(rows)
                latencies.append(now - started)

    try:
        await asyncio.gather(*(loop_() for _ in range(loops)))
    finally:
        await engine.dispose()
    rate, commits = commit_rate(events, t0, t1)
    return _result(counts, latencies, t0, t1, rate=rate, commits=commits)


PHASES: dict[str, Callable[..., Any]] = {
    "http": http_phase,
    "lua": lua_phase,
    "writer": writer_phase,
    "batch": batch_insert_phase,
}
