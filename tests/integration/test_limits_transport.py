"""Abuse limits at the transport (SPEC §13), against the real app, Redis and uvicorn, with raw sockets where
the point is what a client sends byte by byte:

- sockets per viewer: 500 sockets on one viewer token leave the cap open (the last ones), across processes
  too; a killed process's sockets stop counting;
- chat: per customer across all their sockets, per IP (the real client behind a proxy), repeated refusals
  close with 4429, and the host's lines carry ``role: host``, which no viewer name gives;
- HTTP: the header-read timeout (slow-loris), the header size cap (431), the connection cap (503) and the
  keep-alive timeout, over both HTTP/1.1 protocols (``livecart.http_server``), also under
  ``livecart serve --workers 2``;
- no token in any log line.

SQLite only: none of this depends on which SQL backend holds the rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from redis.asyncio import Redis
from websockets.protocol import State
from websockets.typing import Origin

from livecart.http_server import H11_PROTOCOL, ServerConfig, redact, server_options
from loadtests.harness import ServeProcess
from realtime.hub import Connection
from realtime.keys import socket_keys
from realtime.socket_cap import SocketCap
from tests.conftest import LiveServer, make_settings
from tests.shop_api import Buyer, auth, buy, join, new_sale, ok

pytestmark = pytest.mark.integration

ORIGIN = "http://127.0.0.1:8000"  # the origin of the test settings' base_url
SLACK = 1.0  # seconds a deadline may be late on a shared 2-core machine


def settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}", redis_url, tmp_path, **overrides)


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(settings(redis_url, tmp_path)) as live:
        yield live


def ws_url(server: LiveServer, room_id: str, token: str) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/rooms/{room_id}?token={token}"


async def connect(server: LiveServer, room_id: str, token: str, **kwargs: Any) -> Any:
    """An open room socket, its snapshot read."""
    ws = await websockets.connect(ws_url(server, room_id, token), origin=Origin(ORIGIN), **kwargs)
    assert (await next_frame(ws))["type"] == "snapshot"
    return ws


async def next_frame(ws: Any, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if kind is None or frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


# -- sockets per viewer ---------------------------------------------------------------------------------


async def test_500_sockets_on_one_viewer_token_leave_the_last_3_open(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=10, per_user_limit=10)
    viewer = await join(client, sale, "Many")
    sockets = []
    try:
        for _ in range(500):
            sockets.append(await connect(server, sale.room_id, viewer.token))
        async with asyncio.timeout(10):  # the evicted ones finish their closing handshake
            while sum(ws.state is State.OPEN for ws in sockets) > 3:
                await asyncio.sleep(0.05)
        assert [ws.state for ws in sockets[-3:]] == [State.OPEN] * 3
        for ws in sockets[:-3]:
            assert ws.close_code == 4509, ws.close_code
        assert server.state.realtime.hub.count() == 3
        assert await server.state.redis.zcard(socket_keys(sale.room_id, viewer.viewer_id).sockets) == 3
        # The three left are live: a sale reaches each of them.
        await ok(await buy(client, sale.card_id, viewer), 201)
        for ws in sockets[-3:]:
            stock = await next_frame(ws, "stock")
            while stock["stock_left"] != 9:
                stock = await next_frame(ws, "stock")
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    async with asyncio.timeout(5):  # closed sockets stop counting
        while await server.state.redis.zcard(socket_keys(sale.room_id, viewer.viewer_id).sockets):
            await asyncio.sleep(0.05)


async def test_the_cap_holds_across_processes_and_hosts_are_not_capped(
    redis_url: str, tmp_path: Path
) -> None:
    """Three sockets on process A, then one on B: A's oldest is closed (4509) within a tick of A's
    (the presence interval, 1 s). The host opens more sockets than the cap: all stay open."""
    config = settings(redis_url, tmp_path)
    async with (
        LiveServer(config) as a,
        LiveServer(config) as b,
        httpx.AsyncClient(base_url=a.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=1)
        viewer = await join(client, sale, "Two tabs")
        on_a = [await connect(a, sale.room_id, viewer.token) for _ in range(3)]
        on_b = await connect(b, sale.room_id, viewer.token)
        started = asyncio.get_running_loop().time()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(on_a[0], "never", timeout=1.0 + 2 * SLACK)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4509
        assert asyncio.get_running_loop().time() - started <= 1.0 + 2 * SLACK
        assert [ws.state for ws in [*on_a[1:], on_b]] == [State.OPEN] * 3
        hosts = [await connect(b, sale.room_id, sale.host_token) for _ in range(5)]
        await asyncio.sleep(1.5)  # a tick or more
        assert all(ws.state is State.OPEN for ws in hosts)
        for ws in [*on_a, on_b, *hosts]:
            await ws.close()


async def test_a_killed_process_sockets_stop_counting(redis_url: str) -> None:
    """Two processes' counters on one Redis (``SocketCap`` is the whole of it): one counts three sockets of
    a viewer and dies without closing them; after ``stale_after`` they no longer count, so the viewer's
    new sockets on the other process evict nothing, until they pass the cap themselves."""
    redis = Redis.from_url(redis_url)
    dead = SocketCap(redis, max_per_viewer=3, stale_after=0.5)
    alive = SocketCap(redis, max_per_viewer=3, stale_after=0.5)
    try:
        for _ in range(3):
            assert await dead.admit(Connection("rm_k", "vw_k")) == []
        await asyncio.sleep(0.6)  # ``dead`` never refreshes
        mine = [Connection("rm_k", "vw_k") for _ in range(4)]
        for conn in mine[:3]:
            assert await alive.admit(conn) == []
        for _ in range(3):  # a tick each: ``alive`` keeps its sockets counted
            await asyncio.sleep(0.3)
            assert await alive.refresh() == []
        assert await alive.admit(mine[3]) == [mine[0].id]  # the cap, among the living
        assert await redis.zcard(socket_keys("rm_k", "vw_k").sockets) == 3
        # Evicted by another process: that one learns it at its next tick.
        other = SocketCap(redis, max_per_viewer=3, stale_after=0.5)
        assert await other.admit(Connection("rm_k", "vw_k")) == []
        assert await alive.refresh() == [mine[1].id]
        assert await alive.refresh() == []
    finally:
        await redis.aclose()


# -- chat -----------------------------------------------------------------------------------------------


async def chat(ws: Any, text: str) -> dict[str, Any]:
    """Send a chat message; what came of it: the chat frame (it went out) or the error frame."""
    await ws.send(json.dumps({"type": "chat", "text": text}))
    async with asyncio.timeout(5):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "error" or (frame["type"] == "chat" and frame["text"] == text):
                return frame  # type: ignore[no-any-return]


async def test_a_customer_chat_limit_counts_all_their_sockets(redis_url: str, tmp_path: Path) -> None:
    overrides = {
        "limits_scale": 1,
        "limit_chat_per_customer": "6/3seconds",
        "limit_chat_per_ip": "1000/minute",
    }
    async with (
        LiveServer(settings(redis_url, tmp_path, **overrides)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=1)
        ann, bob = await join(client, sale, "Ann"), await join(client, sale, "Bob")
        tabs = [await connect(server, sale.room_id, ann.token) for _ in range(3)]
        watcher = await connect(server, sale.room_id, bob.token)
        outcomes = [await chat(tabs[i % 3], f"m{i}") for i in range(9)]  # round robin over her sockets
        assert [o["type"] for o in outcomes] == ["chat"] * 6 + ["error"] * 3
        refusals = outcomes[6:]
        assert all(o["error"] == "rate_limited" and 1 <= o["retry_after"] <= 3 for o in refusals)
        assert all(ws.state is State.OPEN for ws in tabs)  # one refusal per socket: none is closed
        # Bob's own limit is his: his message goes out meanwhile.
        assert (await chat(watcher, "bob here"))["type"] == "chat"
        await asyncio.sleep(max(o["retry_after"] for o in refusals))
        after = await chat(tabs[0], "after the window")
        assert (after["type"], after["from"], after["role"]) == ("chat", "Ann", "viewer")
        for ws in [*tabs, watcher]:
            await ws.close()


async def test_chat_per_ip_counts_the_real_client_and_refusals_close_with_4429(
    redis_url: str, tmp_path: Path
) -> None:
    """Two customers from one address share its limit; behind a proxy (``X-Forwarded-For`` from a trusted
    address) each client address has its own. A socket refused three times in a row is closed with 4429."""
    overrides = {"limits_scale": 1, "limit_chat_per_ip": "4/minute", "limit_chat_per_customer": "100/minute"}
    async with (
        LiveServer(settings(redis_url, tmp_path, **overrides)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=1)
        ann, bob, cy = [await join(client, sale, name) for name in ("Ann", "Bob", "Cy")]
        ws_ann = await connect(server, sale.room_id, ann.token)
        ws_bob = await connect(server, sale.room_id, bob.token)
        outcomes = [await chat(ws, f"m{i}") for i, ws in enumerate([ws_ann, ws_bob] * 3)]
        assert [o["type"] for o in outcomes] == ["chat"] * 4 + ["error"] * 2
        # Cy is another client behind the proxy (loopback is a trusted proxy address by default).
        proxied = await connect(
            server, sale.room_id, cy.token, additional_headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert (await chat(proxied, "from elsewhere"))["type"] == "chat"
        # Bob's socket was refused once; twice more in a row and it is closed.
        assert (await chat(ws_bob, "again"))["type"] == "error"
        await ws_bob.send(json.dumps({"type": "chat", "text": "and again"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(ws_bob, "never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        for ws in (ws_ann, proxied):
            await ws.close()


async def test_the_host_lines_carry_role_host_and_no_viewer_name_copies_it(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=1, host="Mia Tea House")
    impostor = await join(client, sale, "Mia Tea House")
    host = await connect(server, sale.room_id, sale.host_token)
    viewer = await connect(server, sale.room_id, impostor.token)
    said = await chat(host, "welcome")
    assert {k: said[k] for k in ("from", "text", "role")} == {
        "from": "Mia Tea House",  # the host's own name
        "text": "welcome",
        "role": "host",
    }
    assert (await next_frame(viewer, "chat"))["role"] == "host"
    copied = await chat(viewer, "I am the host")
    assert {k: copied[k] for k in ("from", "role")} == {"from": "Mia Tea House", "role": "viewer"}
    assert (await next_frame(host, "chat"))["role"] == "viewer"
    await host.close()
    await viewer.close()


# -- HTTP: header timeout and size, connection cap, keep-alive ------------------------------------------


@pytest.fixture(params=["httptools", "h11"])
def http(request: pytest.FixtureRequest) -> str:
    """The HTTP/1.1 protocol of the server under test (``livecart serve`` uses httptools)."""
    return str(request.param)


def live_server(config: Any, http: str, **options: Any) -> LiveServer:
    """The harness's server, on the chosen protocol, with ``options`` over ``server_options``."""
    server = LiveServer(config)
    chosen = {"http": H11_PROTOCOL} if http == "h11" else {}
    server.server = uvicorn.Server(
        ServerConfig(server.app, lifespan="on", **{**server_options(config), **chosen, **options})
    )
    return server


async def response_of(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Everything the server sends until it closes: the status and the body."""
    data = await reader.read()  # until EOF
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_a_slow_loris_is_closed_within_the_header_timeout(
    redis_url: str, tmp_path: Path, http: str
) -> None:
    """Four clients trickle a header line a second, one sends nothing: each is closed within the timeout
    (2 s here), the tricklers with a 408; the server serves others meanwhile."""
    config = settings(redis_url, tmp_path, http_header_timeout_seconds=2)
    loop = asyncio.get_running_loop()
    async with live_server(config, http) as server, httpx.AsyncClient(base_url=server.url) as client:

        async def loris(trickle: bool) -> tuple[float, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = loop.time()

            async def drip() -> None:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                for i in range(30):
                    await asyncio.sleep(1)
                    writer.write(f"X-Slow-{i}: y\r\n".encode())
                    await writer.drain()

            dripping = asyncio.create_task(drip()) if trickle else None
            try:
                got = await asyncio.wait_for(reader.read(), 10)
                return loop.time() - started, got
            finally:
                if dripping is not None:
                    dripping.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await dripping
                writer.close()

        async def others() -> None:
            for _ in range(3):
                await asyncio.sleep(0.6)
                assert (await client.get("/healthz")).status_code == 200

        serving = asyncio.create_task(others())
        lorises = await asyncio.gather(*(loris(True) for _ in range(4)), loris(False))
        await serving
        for elapsed, got in lorises[:4]:
            assert 2 - 0.1 <= elapsed <= 2 + SLACK, elapsed
            assert got.startswith(b"HTTP/1.1 408 ")
            assert json.loads(got.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
        elapsed, got = lorises[4]
        assert 2 - 0.1 <= elapsed <= 2 + SLACK and got == b""
        assert (await client.get("/healthz")).status_code == 200


async def test_a_header_past_the_cap_gets_431(redis_url: str, tmp_path: Path, http: str) -> None:
    config = settings(redis_url, tmp_path)  # 16 KiB
    async with live_server(config, http) as server, httpx.AsyncClient(base_url=server.url) as client:
        # 64 KiB in one piece
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        status, body = await asyncio.wait_for(response_of(reader), 5)
        assert (status, json.loads(body)["error"]) == (431, "request_header_too_large")
        writer.close()
        # A header that never ends, sent 1 KiB at a time: refused once past the cap, not buffered on.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: "
        writer.write(start)
        sent = len(start)
        while sent <= 16 * 1024:
            chunk = b"b" * min(1024, 16 * 1024 + 1 - sent)
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0.01)
        status, _ = await asyncio.wait_for(response_of(reader), 5)
        assert status == 431
        writer.close()
        # Under the cap is served, and so is everyone else.
        ok_header = {"X-Fine": "c" * 12 * 1024}
        assert (await client.get("/healthz", headers=ok_header)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200


async def test_past_the_connection_cap_new_requests_get_503_until_some_close(
    redis_url: str, tmp_path: Path, http: str
) -> None:
    config = settings(redis_url, tmp_path, max_connections=20)
    async with live_server(config, http) as server:
        held = []
        for _ in range(20):  # twenty kept-alive connections, each served once
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(len(b'{"status":"ok"}'))
            held.append(writer)

        async def one(request: bytes) -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            try:
                return int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).split(b" ")[1])
            finally:
                writer.close()

        assert await one(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == 503
        upgrade = (
            b"GET /ws/rooms/rm_x?token=v.x HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert await one(upgrade) == 503  # a websocket counts as a connection too
        for writer in held[:5]:
            writer.close()
        async with asyncio.timeout(5):
            while await one(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") != 200:
                await asyncio.sleep(0.05)
        for writer in held[5:]:
            writer.close()


async def test_an_idle_kept_alive_connection_lives_its_keepalive_not_the_header_timeout(
    redis_url: str, tmp_path: Path, http: str
) -> None:
    """The header deadline runs from a request's first byte, not while a kept-alive connection idles."""
    config = settings(redis_url, tmp_path, http_header_timeout_seconds=0.5, http_keepalive_seconds=2)
    async with live_server(config, http) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(len(b'{"status":"ok"}'))
            await asyncio.sleep(1.0)  # longer than the header timeout, shorter than the keep-alive
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the keep-alive timeout
        assert 0.5 <= asyncio.get_running_loop().time() - started <= 2 - 1.0 + SLACK
        writer.close()


# -- logs -----------------------------------------------------------------------------------------------


def test_secret_query_values_are_redacted() -> None:
    line = '127.0.0.1:5 - "WebSocket /ws/rooms/rm_1?token=v.abc.def&since=3" [accepted]'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /ws/rooms/rm_1?token=[redacted]&since=3" [accepted]'
    assert redact("/r/rm_1?invite=i.x&ref=abc") == "/r/rm_1?invite=[redacted]&ref=abc"
    assert redact("/auth/wechat/callback?code=0a1&state=s") == "/auth/wechat/callback?code=[redacted]&state=s"


async def test_no_token_in_any_log_line(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With uvicorn's access log on, a socket opened with a token and a request with one in its query
    leave log lines, none of which holds the token."""
    caplog.set_level(logging.INFO)
    config = settings(redis_url, tmp_path)
    async with (
        live_server(config, "httptools", access_log=True) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=1)
        viewer: Buyer = await join(client, sale, "Ann")
        ws = await connect(server, sale.room_id, viewer.token)
        await ws.close()
        await client.get(f"/api/rooms/{sale.room_id}?token={viewer.token}", headers=auth(sale.host_token))
    # The server's lines (this process also runs the test's clients, whose own logs are not the server's).
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("WebSocket /ws/rooms/" in line and "token=[redacted]" in line for line in lines), lines
    assert any(f"/api/rooms/{sale.room_id}?token=[redacted]" in line for line in lines), lines
    secrets = (viewer.token, viewer.token.split(".")[-1])
    assert not [line for line in lines if any(s in line for s in secrets)]


# -- livecart serve --workers 2 -------------------------------------------------------------------------


async def test_livecart_serve_with_workers_has_the_limits_and_logs_no_token(
    redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    env.update(
        {
            "LIVECART_ENV": "dev",
            "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}",
            "LIVECART_REDIS_URL": redis_url,
            "LIVECART_DATA_DIR": str(tmp_path / "data"),
            "LIVECART_SECRET_KEY": "test-secret-key",
            "LIVECART_LOG_JSON": "false",
            "LIVECART_LOG_LEVEL": "INFO",
            "LIVECART_LIMITS_SCALE": "1000",
            "LIVECART_HTTP_HEADER_TIMEOUT_SECONDS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
    )
    (tmp_path / "metrics").mkdir()
    log = tmp_path / "serve.log"
    with ServeProcess(env, workers=2, log=log) as serve:
        await serve.wait_ready()
        async with httpx.AsyncClient(base_url=serve.url, timeout=30) as client:
            sale = await new_sale(client, stock=1)
            viewer = await join(client, sale, "Ann")
        loop = asyncio.get_running_loop()
        for _ in range(4):  # connections of their own: both workers take some
            reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = loop.time()
            status, _ = await asyncio.wait_for(response_of(reader), 5)
            assert status == 408 and loop.time() - started <= 1 + SLACK
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
            assert (await asyncio.wait_for(response_of(reader), 5))[0] == 431
            writer.close()
            url = f"ws://127.0.0.1:{serve.port}/ws/rooms/{sale.room_id}?token={viewer.token}"
            ws = await websockets.connect(url, origin=Origin(ORIGIN))
            assert (await next_frame(ws))["type"] == "snapshot"
            await ws.close()
    text = log.read_text(errors="replace")
    assert "token=[redacted]" in text, text[-2000:]
    assert viewer.token not in text and viewer.token.split(".")[-1] not in text
