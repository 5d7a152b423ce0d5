"""Bulk insert of new order rows in one short transaction, the fastest way each database offers.

One ``BatchInserter`` per flusher of the order writer, each holding one connection for its whole life (no
pool checkout and liveness ping per batch; a batch that fails drops the connection and the next one
connects afresh):

- PostgreSQL: the asyncpg connection is driven directly, three round trips a batch: ``BEGIN; SET LOCAL
  statement_timeout``, one prepared ``INSERT ... SELECT FROM unnest(arrays)`` whatever the batch size (the
  arrays are encoded by asyncpg in C), ``COMMIT``;
- SQLite: a multi-row ``INSERT ... RETURNING`` through SQLAlchemy Core (SQLite has no array parameters),
  under a ``busy_timeout`` of the batch's budget.

Both are ``ON CONFLICT DO NOTHING``: a row whose id is already there (a retry adopting its reservation) or
whose idempotency key another order holds is skipped, and the two are told apart. Only the columns of a
new reservation are written; the others take their fixed initial values.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import asyncpg
from sqlalchemy import Table, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.models import Order

Row = dict[str, Any]

#: What ``livecart.db`` sets on every SQLite connection; a batch lowers it for itself only.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_TEXT = ("id", "card_id", "room_id", "buyer_id", "referrer_id", "idempotency_key")
_INTS = ("quantity", "unit_price", "amount", "expires_ms", "created_ms")
_COLUMNS = ", ".join((*_TEXT, *_INTS))
_ARRAYS = ", ".join(
    [f"${i + 1}::text[]" for i in range(len(_TEXT))]
    + [f"${len(_TEXT) + i + 1}::bigint[]" for i in range(len(_INTS))]
)
# Built from the constant column names above; every value is a bound parameter.
_PG_INSERT = (
    f"INSERT INTO orders ({_COLUMNS}, status, restocked, late) "  # noqa: S608
    f"SELECT {_COLUMNS}, 'reserved', false, false FROM unnest({_ARRAYS}) AS u({_COLUMNS}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
_PG_PRESENT = "SELECT id FROM orders WHERE id = ANY($1::text[])"

_TABLE = Order.__table__
assert isinstance(_TABLE, Table)
_SQLITE_INSERT = sqlite_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id)


class BatchInserter(Protocol):
    async def insert(self, rows: list[Row], *, budget_ms: int) -> tuple[set[str], set[str]]:
        """Insert ``rows`` (distinct ids) in one transaction whose statements may not wait longer than
        ``budget_ms``. Returns the ids written, and the ids refused because another order holds their
        idempotency key (the rest were already there). Raises if nothing was committed."""
        ...

    async def close(self) -> None: ...


def batch_inserter(engine: AsyncEngine) -> BatchInserter:
    if engine.dialect.name == "postgresql":
        return PostgresInserter(engine)
    return SqliteInserter(engine)


def _taken(rows: list[Row], written: set[str], present: set[str]) -> set[str]:
    return {row["id"] for row in rows if row["id"] not in written and row["id"] not in present}


class PostgresInserter:
    def __init__(self, engine: AsyncEngine) -> None:
        # The engine's own address, for asyncpg itself (the pool is left to requests).
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: asyncpg.Connection | None = None

    async def insert(self, rows: list[Row], *, budget_ms: int) -> tuple[set[str], set[str]]:
        if self._conn is None:
            self._conn = await asyncpg.connect(self._dsn)
        conn = self._conn
        try:
            await conn.execute(f"BEGIN; SET LOCAL statement_timeout = {int(budget_ms)}")
            columns = [[row[c] for row in rows] for c in (*_TEXT, *_INTS)]
            written = {r[0] for r in await conn.fetch(_PG_INSERT, *columns)}
            present: set[str] = set()
            if len(written) < len(rows):
                skipped = [row["id"] for row in rows if row["id"] not in written]
                present = {r[0] for r in await conn.fetch(_PG_PRESENT, skipped)}
            await conn.execute("COMMIT")
        except BaseException:
            self._conn = None
            conn.terminate()  # whatever state it is in, it is not reused: an open transaction rolls back
            raise
        return written, _taken(rows, written, present)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


class SqliteInserter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def insert(self, rows: list[Row], *, budget_ms: int) -> tuple[set[str], set[str]]:
        if self._conn is None:
            self._conn = await self._engine.connect()
        conn = self._conn
        try:
            async with conn.begin():
                # The busy timeout belongs to the connection: put it back before it is used otherwise.
                await conn.execute(text(f"PRAGMA busy_timeout = {int(budget_ms)}"))
                try:
                    written = set((await conn.execute(_SQLITE_INSERT, rows)).scalars())
                    skipped = [row["id"] for row in rows if row["id"] not in written]
                    present: set[str] = set()
                    if skipped:
                        found = await conn.execute(select(_TABLE.c.id).where(_TABLE.c.id.in_(skipped)))
                        present = set(found.scalars())
                finally:
                    await conn.execute(text(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
        except BaseException:
            await self.close()
            raise
        return written, _taken(rows, written, present)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()
