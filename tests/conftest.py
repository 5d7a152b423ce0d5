"""Shared fixtures. Integration tests talk to the real Redis and to real SQLite and PostgreSQL.

- ``LIVECART_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``): flushed before each test that uses it.
- ``LIVECART_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``): its ``public``
  schema is recreated before each test that uses it.

When a service is unreachable the tests that need it are skipped locally but *fail* under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import text

from livecart.app import create_app
from livecart.clock import Clock
from livecart.db import create_engine
from livecart.settings import Settings
from realtime.uvicorn_ws import WS_PROTOCOL

REDIS_URL = os.environ.get("LIVECART_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_URL = os.environ.get("LIVECART_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


#: Test modules whose in-process server runs on uvloop, the loop ``livecart serve`` runs on (uvicorn picks it
#: when it is installed). The hub writes to the transports directly, and uvloop's differ from asyncio's (one
#: raises on a closed transport where asyncio's does nothing). The rest stay on asyncio: httpx over anyio on
#: uvloop trips on a socket the test itself killed (``test_crash.py``), which says nothing about the app.
UVLOOP_MODULES = frozenset({"test_realtime.py"})


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    if item.path.name in UVLOOP_MODULES:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true forbids skipping integration tests")
    pytest.skip(f"{what} is not reachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        _unavailable(f"Redis at {REDIS_URL}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


async def reset_postgres(url: str) -> None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}"
    try:
        await reset_postgres(PG_URL)
    except OSError:
        _unavailable(f"PostgreSQL at {PG_URL}")
    return PG_URL


def make_settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "dev",
        "database_url": database_url,
        "redis_url": redis_url,
        "data_dir": tmp_path / "data",
        "secret_key": "test-secret-key",
        "log_json": False,
        "log_level": "WARNING",
        "sweep_interval_seconds": 0.2,
        "orphan_grace_seconds": 3.0,
        "commit_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


class LiveServer:
    """The real app behind a real uvicorn on a free port, inside the test's event loop."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, sweeper: bool = True, port: int | None = None
    ) -> None:
        self.settings = settings
        self.port = port or free_port()  # given when settings.base_url must name this very server
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, clock=clock, sweeper=sweeper)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws=WS_PROTOCOL,
            ws_per_message_deflate=False,
            ws_max_size=settings.ws_max_frame_bytes,
            ws_ping_interval=settings.ws_ping_interval_seconds,
            ws_ping_timeout=settings.ws_ping_timeout_seconds,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        await self._task

    @property
    def state(self) -> Any:
        """The AppState, for assertions that read SQL or Redis directly (never to stub anything)."""
        return self.app.state.livecart_state


@pytest.fixture
async def server(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path)) as live:
        yield live


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
        yield c
