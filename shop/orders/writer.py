"""Group commit of new order rows.

Each buy awaits ``insert(row)``; a background flusher takes everything queued since its last commit and
writes it in one transaction (``INSERT ... ON CONFLICT DO NOTHING``: a retry adopting the same reservation
writes the same id harmlessly). The future of a row resolves only after its commit, so a ``201`` always
follows a durable row. While one commit is in flight the next batch gathers, so batches grow with load and
a single commit per order never becomes the ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecart.db import insert_ignoring
from shop.models import Order

log = logging.getLogger("livecart.orders.writer")

Row = dict[str, Any]


class WriterClosed(RuntimeError):
    pass


class IdempotencyTaken(Exception):
    """SQL already holds another order for this buyer, card and idempotency key; this row was not written."""


class OrderWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        dialect: str,
        max_batch: int = 500,
        flushers: int = 2,
        on_committed: Callable[[list[Row]], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._dialect = dialect
        # SQLite has one writer at a time: a second flusher would only wait on its lock.
        self._flushers = flushers if dialect == "postgresql" else 1
        self._max_batch = max_batch
        self._on_committed = on_committed
        self._queue: asyncio.Queue[tuple[Row, asyncio.Future[None]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"order-writer-{i}") for i in range(self._flushers)
        ]

    async def stop(self) -> None:
        """Finish every queued row, then stop."""
        self._closed = True
        await self._queue.join()  # idle flushers wait on an empty queue: safe to cancel
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def insert(self, row: Row) -> None:
        """Return once ``row`` is committed; raise if the commit failed (nothing of it was written)."""
        if self._closed:
            raise WriterClosed("the order writer is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._flush(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _flush(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        live = [(row, fut) for row, fut in batch if not fut.done()]  # skip rows whose buyer gave up
        if not live:
            return
        rows = [row for row, _ in live]
        try:
            async with self._sessions() as session, session.begin():
                stmt = insert_ignoring(self._dialect, Order).returning(Order.id)
                written = set((await session.execute(stmt, rows)).scalars())
                skipped = [row["id"] for row in rows if row["id"] not in written]
                if skipped:  # same id already there (an adopting retry) is fine; another id is not
                    present = set(
                        (await session.execute(select(Order.id).where(Order.id.in_(skipped)))).scalars()
                    )
                    taken = {i for i in skipped if i not in present}
                else:
                    taken = set()
        except Exception as exc:
            log.warning("order batch of %d failed: %s", len(rows), exc)
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(rows)
        for row, fut in live:
            if fut.done():
                continue
            if row["id"] in taken:
                fut.set_exception(IdempotencyTaken(row["id"]))
            else:
                fut.set_result(None)
        if self._on_committed is not None:
            try:
                await self._on_committed([row for row in rows if row["id"] not in taken])
            except Exception as exc:  # the sweeper clears pending marks of committed rows too
                log.warning("could not clear pending marks: %s", exc)
