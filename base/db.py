"""SQL engine, sessions and the declarative base (migrations: ``livecart.schema``).

Sessions: ``async_sessionmaker(expire_on_commit=False)``; repository functions take a session and never
commit; the service owns ``async with session.begin()``. Write transactions start with a guarded write
(``UPDATE ... WHERE status = ...``) so that SQLite takes its write lock first and PostgreSQL decides races
on the row — never read-then-write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, MetaData, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.dml import Insert

SQLITE_BUSY_TIMEOUT_MS = 30_000

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: BigInteger}


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


#: Applied to every SQLite connection. WAL: readers never block the writer. NORMAL: a commit survives a
#: crash of the app process.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def insert_ignoring(dialect_name: str, table: type[Base]) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the dialect's own syntax (PostgreSQL or SQLite)."""
    if dialect_name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


def insert_ignoring_conflicts(session: AsyncSession, table: type[Base]) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the session's database."""
    return insert_ignoring(session.get_bind().dialect.name, table)


def upsert(session: AsyncSession, table: type[Base], values: dict[str, Any], *, keys: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` setting every other column of ``values``."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(**values)
    changed = {k: v for k, v in values.items() if k not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=changed)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
