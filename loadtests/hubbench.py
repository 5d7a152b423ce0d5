"""What the hub benchmarks share: a real ``livecart serve`` on Redis DB 10, a room, and its joined viewers.

Not a benchmark itself. Redis DB 10 is flushed before each server starts; SQL is a fresh SQLite file. The
server, its port and the set-up over HTTP are the harness's (``loadtests/harness``). The room is a verified
one (the default): each viewer is a customer signed in through the dev SMS provider first, all from this
one address, so the server runs with every rate limit scaled by ``LIVECART_LIMITS_SCALE`` (``LIMITS_SCALE``;
production allows 10 codes an hour per address).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtests.harness import ServeProcess, join_many, new_card, new_host, new_room

REDIS_URL = "redis://127.0.0.1:6379/10"
ORIGIN = "http://127.0.0.1:8000"  # the base URL the servers are given: their websocket Origin
LIMITS_SCALE = "100000"  # thousands of sign-ins, joins and orders from one address, well within every limit


def handshake(path: str, port: int) -> bytes:
    """A websocket upgrade request for ``path`` from the allowed origin."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {ORIGIN}\r\n\r\n"
    ).encode()


def start_server(db: Path, *, workers: int = 1, **settings: str) -> ServeProcess:
    """``livecart serve`` on a held port; ``settings`` are extra ``LIVECART_*`` variables (name: value)."""
    import redis as sync_redis

    sync_redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **os.environ,
        "LIVECART_REDIS_URL": REDIS_URL,
        "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "LIVECART_LOG_LEVEL": "WARNING",
        "LIVECART_SECRET_KEY": "bench-hub-secret",
        "LIVECART_BASE_URL": ORIGIN,
        "LIVECART_LIMITS_SCALE": LIMITS_SCALE,
        **{f"LIVECART_{k.upper()}": v for k, v in settings.items()},
    }
    return ServeProcess(env, workers=workers)


@dataclass
class Show:
    """A host's live room, perhaps an open card in it, and its joined viewers."""

    room: dict[str, Any]
    host_token: str
    card_id: str
    viewer_tokens: list[str]

    def viewer_paths(self) -> list[str]:
        """The websocket path of each viewer."""
        return [f"/ws/rooms/{self.room['id']}?token={token}" for token in self.viewer_tokens]


async def set_up_show(
    server: ServeProcess,
    title: str,
    *,
    viewers: int,
    stock: int | None = None,
    per_user_limit: int = 1,
    reserve_seconds: int = 300,
    settle: float = 0.0,
) -> Show:
    """Once the server answers (and ``settle`` seconds more), over HTTP: a host, a live room, an open card
    of ``stock`` units when it is given, and ``viewers`` joined viewers (each a customer signed in first)."""
    await server.wait_ready()
    await asyncio.sleep(settle)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        host_token = await new_host(c, "Bench")
        room = await new_room(c, host_token, title)
        card_id = ""
        if stock is not None:
            _, card_id = await new_card(
                c,
                host_token,
                room["id"],
                stock=stock,
                per_user_limit=per_user_limit,
                reserve_seconds=reserve_seconds,
                product_price=990,
            )
        joined = await join_many(c, room["id"], room["invite_token"], viewers, concurrency=32)
    return Show(room, host_token, card_id, [v.token for v in joined])
