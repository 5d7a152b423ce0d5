"""Group commit of new order rows.

Each buy awaits ``insert(row)``; a background flusher takes everything queued since its last commit and
writes it in one transaction (``INSERT ... ON CONFLICT DO NOTHING``: a retry adopting the same reservation
writes the same id harmlessly). The future of a row resolves only after its commit, so a ``201`` always
follows a durable row. While one commit is in flight the next batch gathers, so batches grow with load and
a single commit per order never becomes the ceiling. On PostgreSQL further flushers commit in parallel, but
only while a backlog of at least half a batch is waiting: below that, one commit stream keeps up, and
splitting the rows over several would only make more, smaller commits.

Every row has a deadline, ``commit_timeout`` after it was queued: a row still queued at its deadline is
failed without being sent, and a batch's statements run under a lock/statement timeout of the time its
earliest row has left (PostgreSQL ``statement_timeout``, SQLite ``busy_timeout``). So a row either commits
within its deadline or never; this is what lets the orphan sweeper release, after its grace period (more
than twice the timeout), a reservation whose row is not in SQL, without that row landing afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from shop.errors import CommitTimedOut
from shop.orders.bulk import BatchInserter, Row, batch_inserter
from shop.orders.order import Order

log = logging.getLogger("livecart.orders.writer")


def row_of(o: Order) -> Row:
    """The row ``insert`` takes for a new order: the columns ``bulk.py`` writes (the others take their initial
    values there: reserved, nothing paid, nothing closed)."""
    return {
        "id": o.id,
        "card_id": o.card_id,
        "room_id": o.room_id,
        "buyer_id": o.buyer_id,
        "referrer_id": o.referrer_id,
        "idempotency_key": o.idempotency_key,
        "quantity": o.quantity,
        "unit_price": o.unit_price,
        "amount": o.amount,
        "expires_ms": o.expires_ms,
        "created_ms": o.created_ms,
    }


class WriterClosed(RuntimeError):
    pass


class IdempotencyTaken(Exception):
    """SQL already holds another order for this buyer, card and idempotency key; this row was not written."""


class OrderWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        commit_timeout: float = 5.0,
        max_batch: int = 500,
        flushers: int = 2,
        on_committed: Callable[[list[Row]], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        # SQLite has one writer at a time: a second flusher would only wait on its lock.
        self._flushers = flushers if engine.dialect.name == "postgresql" else 1
        self._max_batch = max_batch
        self._commit_timeout = commit_timeout
        self._on_committed = on_committed
        self._queue: asyncio.Queue[tuple[Row, asyncio.Future[bool], float]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._backlog = asyncio.Event()  # lets the extra flushers in
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(extra=i > 0), name=f"order-writer-{i}")
            for i in range(self._flushers)
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

    async def insert(self, row: Row) -> bool:
        """Return once ``row`` is committed: ``True`` if this call wrote it, ``False`` if the same order
        (same id) was already there or written by an earlier call in the same batch. Raise if the commit
        failed (nothing of it was written) or another order holds its idempotency key."""
        if self._closed:
            raise WriterClosed("the order writer is shutting down")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future, time.monotonic() + self._commit_timeout))
        if self._queue.qsize() >= self._max_batch // 2:
            self._backlog.set()
        return await future

    async def _run(self, *, extra: bool) -> None:
        inserter = batch_inserter(self._engine)
        try:
            while True:
                if extra:
                    await self._backlog.wait()
                batch = [await self._queue.get()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                if self._queue.qsize() < self._max_batch // 2:
                    self._backlog.clear()
                try:
                    await self._flush(inserter, batch)
                finally:
                    for _ in batch:
                        self._queue.task_done()
        finally:
            await inserter.close()

    @staticmethod
    def _fail(batch: list[tuple[Row, asyncio.Future[bool], float]], exc: Exception) -> None:
        log.warning("order batch of %d failed: %s", len(batch), exc)
        for _, fut, _ in batch:
            if not fut.done():
                fut.set_exception(exc)

    async def _flush(
        self, inserter: BatchInserter, batch: list[tuple[Row, asyncio.Future[bool], float]]
    ) -> None:
        """Commit one batch and settle its futures."""
        now = time.monotonic()
        live: list[tuple[Row, asyncio.Future[bool], float]] = []
        earliest = float("inf")
        for row, fut, deadline in batch:
            if fut.done():  # the buyer gave up (disconnected): the orphan sweeper returns its unit
                continue
            if deadline <= now:
                fut.set_exception(CommitTimedOut(f"order {row['id']} waited past its commit deadline"))
                continue
            live.append((row, fut, deadline))
            earliest = min(earliest, deadline)
        if not live:
            return
        rows = list({row["id"]: row for row, _, _ in reversed(live)}.values())  # one per order id
        try:
            written, taken = await inserter.insert(rows, budget_ms=max(10, int((earliest - now) * 1000)))
        except Exception as exc:
            self._fail(live, exc)
            return
        self.batches += 1
        self.rows += len(written)
        for row, fut, _ in live:
            if fut.done():
                continue
            if row["id"] in taken:
                fut.set_exception(IdempotencyTaken(row["id"]))
            else:
                fut.set_result(row["id"] in written)
                written.discard(row["id"])  # a second call for the same order in this batch wrote nothing
        if self._on_committed is not None:
            try:
                await self._on_committed([row for row in rows if row["id"] not in taken])
            except Exception as exc:  # the sweeper clears pending marks of committed rows too
                log.warning("could not clear pending marks: %s", exc)
