"""Shared fixtures. Integration tests talk to the real Redis and to real SQLite and PostgreSQL.

- ``LIVECART_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``): flushed before each test that uses it.
- ``LIVECART_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``): its ``public``
  schema is recreated before each test that uses it.

When a service is unreachable the tests that need it are skipped locally but *fail* under ``CI=true``.

The server on a held port (``LiveServer``) and ``reset_postgres`` are the harness's (``loadtests/harness``),
shared with the benchmarks; they are imported from here too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from base.settings import Settings
from loadtests.harness import LiveServer, reset_postgres

__all__ = ["IN_CI", "PG_URL", "REDIS_URL", "LiveServer", "make_settings", "reset_postgres"]

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


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = flushed_redis()
    yield REDIS_URL
    client.flushdb()
    client.close()


async def fresh_database(kind: str, tmp_path: Path) -> str:
    """The URL of an empty database: SQLite in ``tmp_path``, or the test PostgreSQL's schema recreated."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}"
    try:
        await reset_postgres(PG_URL)
    except OSError:
        _unavailable(f"PostgreSQL at {PG_URL}")
    return PG_URL


def flushed_redis() -> redis.Redis:
    """A client of the test Redis database, flushed (the caller closes it)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        _unavailable(f"Redis at {REDIS_URL}")
    client.flushdb()
    return client


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test using this runs twice: on SQLite and on PostgreSQL."""
    return await fresh_database(request.param, tmp_path)


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
        # Tests sign in and join hundreds of buyers from one address: every rate limit a thousand times
        # its production figure (the limit tests set their own, down to 1).
        "limits_scale": 1000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def server(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path)) as live:
        yield live


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
        yield c
