"""Bulk insert of new order rows in one short transaction, the fastest way each database offers.

One ``BatchInserter`` per flusher of the order writer, each holding one connection for its whole life (no
pool checkout and liveness ping per batch; a batch that fails drops the connection and the next one
connects afresh):

- PostgreSQL: the asyncpg connection is driven directly, three round trips a batch: ``BEGIN; SET LOCAL
  statement_timeout``, one prepared ``INSERT ... SELECT FROM unnest(arrays)`` whatever the batch size (the
  arrays are encoded by asyncpg in C), ``COMMIT``;
- SQLite: a connection of its own, and the whole batch in one hand-off to a worker thread: a multi-row
  ``INSERT ... RETURNING`` (SQLite has no array parameters) under a ``busy_timeout`` of the batch's budget.

Both are ``ON CONFLICT DO NOTHING``: a row whose id is already there (a retry adopting its reservation) or
whose idempotency key another order holds is skipped, and the two are told apart. Only the columns of a
new reservation are written; the others take their fixed initial values.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from base.db import SQLITE_BUSY_TIMEOUT_MS, SQLITE_PRAGMAS

Row = dict[str, Any]

_TEXT = ("id", "card_id", "room_id", "buyer_id", "referrer_id", "idempotency_key")
_INTS = ("quantity", "unit_price", "amount", "expires_ms", "created_ms")
#: The columns of a new order the writer's rows carry (``writer.row_of``), in the order they are sent.
COLUMNS = (*_TEXT, *_INTS)
_COLUMNS = ", ".join(COLUMNS)
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

_SQLITE_INSERT = f"INSERT INTO orders ({_COLUMNS}, status, restocked, late) VALUES"
_SQLITE_ROW = "(" + ", ".join("?" * (len(_TEXT) + len(_INTS))) + ", 'reserved', 0, 0)"


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
            columns = [[row[c] for row in rows] for c in COLUMNS]
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
    """Its own ``sqlite3`` connection, used from one worker thread at a time: a whole batch (busy timeout,
    insert, lookup, commit) is one hand-off to that thread, not one per statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        database = engine.url.database
        assert database and database != ":memory:", "the order writer needs a SQLite file"
        self._path = database
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return conn

    async def insert(self, rows: list[Row], *, budget_ms: int) -> tuple[set[str], set[str]]:
        return await asyncio.to_thread(self._insert, rows, budget_ms)

    def _insert(self, rows: list[Row], budget_ms: int) -> tuple[set[str], set[str]]:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        values = ", ".join([_SQLITE_ROW] * len(rows))
        params = [row[c] for row in rows for c in COLUMNS]
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(budget_ms)}")  # this batch's budget, then back
            try:
                conn.execute("BEGIN IMMEDIATE")
                sql = f"{_SQLITE_INSERT} {values} ON CONFLICT DO NOTHING RETURNING id"
                written = {r[0] for r in conn.execute(sql, params)}
                present: set[str] = set()
                if len(written) < len(rows):
                    skipped = [row["id"] for row in rows if row["id"] not in written]
                    marks = ", ".join("?" * len(skipped))
                    lookup = f"SELECT id FROM orders WHERE id IN ({marks})"  # noqa: S608
                    present = {r[0] for r in conn.execute(lookup, skipped)}
                conn.execute("COMMIT")
            finally:
                conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()  # an open transaction rolls back
            raise
        return written, _taken(rows, written, present)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)
