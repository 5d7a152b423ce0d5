"""Shared fixtures. Integration tests talk to the real Redis and to real SQLite and PostgreSQL.

- ``LIVECART_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``): flushed before each test that uses it.
- ``LIVECART_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``): emptied before
  each test that uses it (its tables truncated when its schema is at the migrations' head, else the schema
  recreated and migrated); ``fresh_database(..., migrated=False)`` gives an empty schema.

When a service is unreachable the tests that need it are skipped locally but *fail* under ``CI=true``.

Run in parallel (``pytest -n N``, pytest-xdist: ``make test`` does), each worker has its own: worker ``gwK``
takes the Redis database K below the given one (15, 14, ...) and the PostgreSQL database named
``<given>_gwK`` (created on first use). Nothing else is shared: every server, Redis instance or cluster a test
starts listens on a port it holds.

The server on a held port (``LiveServer``) and ``reset_postgres`` are the harness's (``loadtests/harness``),
shared with the benchmarks; they are imported from here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from alembic.script import ScriptDirectory
from sqlalchemy import text

from base import db
from base.settings import Settings
from livecart import schema
from livecart.schema import alembic_config
from loadtests.harness import LiveServer, reset_postgres

__all__ = ["IN_CI", "PG_URL", "REDIS_URL", "LiveServer", "make_settings", "reset_postgres"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The pytest-xdist worker this process is (``gw0``, ``gw1``, ...), or ``""`` when not run in parallel.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def for_this_worker(redis_url: str, pg_url: str) -> tuple[str, str]:
    """The worker's own Redis database and PostgreSQL database (see the module's docstring)."""
    if not WORKER:
        return redis_url, pg_url
    index = int(WORKER.removeprefix("gw"))
    redis_parts = urlsplit(redis_url)
    base = int(redis_parts.path.lstrip("/") or "0")
    if base - index < 0:
        raise RuntimeError(f"{WORKER}: no Redis database {base} - {index}; give fewer workers")
    pg_parts = urlsplit(pg_url)
    return (
        redis_parts._replace(path=f"/{base - index}").geturl(),
        pg_parts._replace(path=f"{pg_parts.path}_{WORKER}").geturl(),
    )


REDIS_URL, PG_URL = for_this_worker(
    os.environ.get("LIVECART_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("LIVECART_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
)


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


@pytest.fixture(scope="session", autouse=True)
def _worker_database() -> None:
    """A parallel worker's PostgreSQL database exists before any test uses it (made, or emptied, once per
    run). Unreachable, the tests that need it say so themselves."""
    if WORKER:
        with contextlib.suppress(OSError):
            asyncio.run(reset_postgres(PG_URL, create=True))


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


async def fresh_database(kind: str, tmp_path: Path, *, migrated: bool = True) -> str:
    """The URL of a database with no rows: SQLite in ``tmp_path``, or the test PostgreSQL's.

    ``migrated`` (the default): its schema is already at the migrations' head, as the app would make it on
    start (which then finds nothing to do), made once per test run and reused: a copy of a migrated SQLite
    file, or PostgreSQL's tables emptied. Otherwise an empty schema (``test_migrations`` starts from one)."""
    if kind == "sqlite":
        path = tmp_path / "livecart.db"
        if migrated:
            shutil.copyfile(await _sqlite_template(), path)
        return f"sqlite+aiosqlite:///{path}"
    try:
        if migrated:
            await _emptied_postgres(PG_URL)
        else:
            await reset_postgres(PG_URL)
    except OSError:
        _unavailable(f"PostgreSQL at {PG_URL}")
    return PG_URL


_sqlite_templates: list[Path] = []


async def _sqlite_template() -> Path:
    """A SQLite file migrated to head, made on first use in this test run."""
    if not _sqlite_templates:
        path = Path(tempfile.mkdtemp(prefix="livecart-template-")) / "livecart.db"
        engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await schema.migrate(engine)
            async with engine.begin() as conn:  # everything in the main file, none left in the WAL
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        finally:
            await engine.dispose()
        _sqlite_templates.append(path)
    return _sqlite_templates[0]


async def _emptied_postgres(url: str) -> None:
    """Every table of ``url`` emptied when its schema is at the migrations' head; else the schema recreated
    and migrated (the first time, or after a test left another revision)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = db.create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            at = None
            if await conn.scalar(text("SELECT to_regclass('public.alembic_version') IS NOT NULL")):
                at = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            if at == head:
                tables = (
                    await conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables "
                            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                        )
                    )
                ).scalars()
                names = ", ".join(f'public."{name}"' for name in tables)
                await conn.execute(text(f"TRUNCATE {names}"))
                return
    finally:
        await engine.dispose()
    await reset_postgres(url)
    engine = db.create_engine(url, pool_size=1, max_overflow=0)
    try:
        await schema.migrate(engine)
    finally:
        await engine.dispose()


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
