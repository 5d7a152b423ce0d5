"""What the hub benchmarks share: a real ``livecart serve`` on Redis DB 10, a room, and its joined viewers.

Not a benchmark itself. Redis DB 10 is flushed before each server starts; SQL is a fresh SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/10"
ORIGIN = "http://127.0.0.1:8000"  # the base URL the servers are given: their websocket Origin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handshake(path: str, port: int) -> bytes:
    """A websocket upgrade request for ``path`` from the allowed origin."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {ORIGIN}\r\n\r\n"
    ).encode()


def start_server(db: Path, *, workers: int = 1, **settings: str) -> tuple[subprocess.Popen[bytes], int]:
    """``livecart serve`` on a free port; ``settings`` are extra ``LIVECART_*`` variables (name: value)."""
    import redis as sync_redis

    sync_redis.Redis.from_url(REDIS_URL).flushdb()
    port = free_port()
    env = {
        **os.environ,
        "LIVECART_REDIS_URL": REDIS_URL,
        "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "LIVECART_LOG_LEVEL": "WARNING",
        "LIVECART_SECRET_KEY": "bench-hub-secret",
        "LIVECART_BASE_URL": ORIGIN,
        **{f"LIVECART_{k.upper()}": v for k, v in settings.items()},
    }
    cmd = [sys.executable, "-m", "livecart.cli", "serve", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT), port


class Show:
    """A host, a live room and, optionally, an open card, set up over HTTP."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.c = client
        self.room: dict[str, Any] = {}
        self.card: dict[str, Any] = {}
        self.auth: dict[str, str] = {}

    async def wait_ready(self) -> None:
        for _ in range(150):
            try:
                if (await self.c.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("the server did not come up")

    async def open(self, title: str) -> None:
        host = (await self.c.post("/api/hosts", json={"name": "Bench"})).json()
        self.auth = {"Authorization": f"Bearer {host['token']}"}
        self.room = (await self.c.post("/api/rooms", json={"title": title}, headers=self.auth)).json()
        await self.c.post(f"/api/rooms/{self.room['id']}/live", headers=self.auth)

    async def sell(self, *, stock: int, per_user_limit: int, reserve_seconds: int) -> None:
        product = (
            await self.c.post("/api/products", json={"name": "Tea", "price": 990}, headers=self.auth)
        ).json()
        body = {
            "product_id": product["id"],
            "price": 990,
            "stock": stock,
            "per_user_limit": per_user_limit,
            "reserve_seconds": reserve_seconds,
        }
        url = f"/api/rooms/{self.room['id']}/cards"
        self.card = (await self.c.post(url, json=body, headers=self.auth)).json()
        await self.c.post(f"/api/cards/{self.card['id']}/open", json={}, headers=self.auth)

    async def viewer_paths(self, n: int) -> list[str]:
        """``n`` viewers join; the websocket path of each."""
        gate = asyncio.Semaphore(32)
        room_id = self.room["id"]

        async def join(i: int) -> str:
            async with gate:
                body = {"invite": self.room["invite_token"], "name": f"v{i}"}
                token = (await self.c.post(f"/api/rooms/{room_id}/join", json=body)).json()["token"]
                return f"/ws/rooms/{room_id}?token={token}"

        return await asyncio.gather(*(join(i) for i in range(n)))
