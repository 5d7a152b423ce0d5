"""The sweeper: returns expired and orphaned reservations to the sale, and notices when Redis lost its data.

One process at a time sweeps (a short Redis lease); every step is idempotent, so overlapping or repeated
passes do no harm. Each pass:

1. if the sentinel key is gone, Redis lost its data: rebuild every sale from SQL (reconcile);
2. SQL first: reservations past their window become ``expired``; their units go back in Redis;
3. Redis second, per active card: reservations past expiry or still unconfirmed after the grace period are
   checked against SQL and released, confirmed or marked committed (``rules.decide_stale``); refunds
   begun longer than the grace period ago that Redis never applied are applied as SQL says;
4. shipped (or delivered) orders nobody confirmed within ``LIVECART_AUTO_COMPLETE_DAYS`` are completed
   (``Fulfilment.auto_complete``), their buyers told;
5. the replays kept long enough (the shop's ``replay_keep_days``, else ``LIVECART_REPLAY_KEEP_DAYS``), and
   those their host deleted during the show, are deleted (``Replays.sweep``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.events import Events
from base.metrics import Metrics
from shop.fulfilment import Fulfilment
from shop.inventory.rules import StaleAction, decide_stale
from shop.inventory.store import SENTINEL, Inventory
from shop.orders import repo
from shop.orders.order import Order
from shop.payments.service import PaymentService
from shop.reconcile import Reconciler
from shop.replay import Replays
from shop.views import order_json

log = logging.getLogger("livecart.sweeper")

LEASE_KEY = "livecart:sweeper:lease"


class Sweeper:
    def __init__(
        self,
        *,
        payments: PaymentService,
        fulfilment: Fulfilment,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        reconciler: Reconciler,
        clock: Clock,
        metrics: Metrics,
        interval: float,
        grace_ms: int,
        events: Events,
        currency: str,
        replays: Replays | None = None,
    ) -> None:
        self.sessions = sessions
        #: closes expiring provider payments, asks about silent ones, sends refunds not yet taken
        self.payments = payments
        self.inventory = inventory
        self.reconciler = reconciler
        self.clock = clock
        self.metrics = metrics
        self.interval = interval
        self.grace_ms = grace_ms
        self._owner = f"{os.getpid()}:{id(self)}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: told of every order this sweeper expired (the buyer's ``order`` frame)
        self.events = events
        self.currency = currency
        #: completes what was shipped long enough ago
        self.fulfilment = fulfilment
        #: deletes the replays kept long enough (``None``: a sweeper that keeps every recording)
        self.replays = replays

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sweeper")

    async def stop(self) -> None:
        """Stop at once, whatever the pass is doing (every step is idempotent; the next leader redoes it).

        A cancellation can be swallowed inside a driver's cleanup (a connection being closed while it is
        cancelled), so it is repeated until the task has ended, and the loop also checks a flag."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.2)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                if await self._lead():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dependency is down: try again next interval
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def _lead(self) -> bool:
        lease_ms = int(self.interval * 3000) + 1000
        redis = self.inventory.redis
        if await redis.set(LEASE_KEY, self._owner, nx=True, px=lease_ms):
            return True
        current = await redis.get(LEASE_KEY)
        if (
            current is not None
            and (current.decode() if isinstance(current, bytes) else current) == self._owner
        ):
            await redis.pexpire(LEASE_KEY, lease_ms)
            return True
        return False

    async def sweep(self) -> dict[str, int]:
        """One full pass. Returns counts by what was done."""
        self.metrics.sweeps.inc()
        counts = {"expired": 0, "released": 0, "orphans": 0, "confirmed": 0, "committed": 0, "refunds": 0}
        if not await self.inventory.redis.exists(SENTINEL):
            log.warning("Redis has no sentinel: it lost its data; rebuilding every sale from SQL")
            await self.reconciler.reconcile_all(trigger="redis_data_lost")
        # One instant for the pass: the reservations whose payments are closed are the ones expired after.
        now = self.clock.now_ms()
        async with self.sessions() as session:
            due = await repo.overdue_reservations(session, now_ms=now)
        await self._money(counts, due)
        async with self.sessions() as session, session.begin():
            overdue = await repo.expire_overdue(session, due, now_ms=now)
        for order in overdue:
            if await self.inventory.release(order.card_id, order.id, mode="expire", now_ms=now) == "released":
                counts["expired"] += 1
            await self._tell(order)
        self.metrics.swept.labels(reason="expired").inc(counts["expired"])

        cards = await self.inventory.active_cards()
        for card_id in cards:
            await self._sweep_card(card_id, now, counts)
        self.metrics.active_reservations.set(await self.inventory.active_reservations(cards))
        await self._fulfilment(counts)
        await self._replays(counts)
        return counts

    async def _money(self, counts: dict[str, int], due: list[str]) -> None:
        """The payment providers' part of a pass: the open payments of the reservations about to expire
        (``due``) are closed first. A provider that fails is logged and skipped: the stock's part of the pass
        goes on regardless."""
        try:
            counts["closed_payments"] = await self.payments.close_expiring(due)
            counts["closed_payments"] += await self.payments.close_abandoned()
            counts["queried_payments"] = await self.payments.query_overdue()
            sent = await self.payments.refunder.retry_due()
            counts["refunds_sent"] = sent["sent"] + sent["queried"]
        except Exception as exc:
            log.warning("sweep: payment providers' part failed: %s", exc)

    async def _fulfilment(self, counts: dict[str, int]) -> None:
        """Orders that complete by themselves. A failure is logged: the rest of the pass is done already."""
        try:
            counts["completed"] = await self.fulfilment.auto_complete()
        except Exception as exc:
            log.warning("sweep: auto-completing orders failed: %s", exc)

    async def _replays(self, counts: dict[str, int]) -> None:
        """Recordings past their keeping time. A failure is logged: the rest of the pass is done already."""
        if self.replays is None:
            return
        try:
            counts["replays_deleted"] = await self.replays.sweep()
        except Exception as exc:
            log.warning("sweep: deleting replays failed: %s", exc)

    async def _tell(self, order: Order) -> None:
        await self.events.order_changed(order_json(order, currency=self.currency))

    async def _sweep_card(self, card_id: str, now: int, counts: dict[str, int]) -> None:
        stale = await self.inventory.stale(card_id, now_ms=now, grace_ms=self.grace_ms)
        pending = stale.pending
        ids = sorted(set(stale.expired) | pending)
        if not ids and not stale.refunding:
            await self.inventory.retire_if_settled(card_id)
            return
        async with self.sessions() as session:
            statuses = await repo.statuses(session, ids)
            refunds = await repo.refund_outcomes(session, stale.refunding)
        for order_id in stale.refunding:
            # A refund whose Redis half never ran (a crash or a timeout after its SQL commit).
            restocked = refunds.get(order_id)
            if restocked is None:  # not refunded in SQL: its transaction never committed
                await self.inventory.abandon_refund(card_id, order_id)
            elif await self.inventory.refund(card_id, order_id, restock=restocked) == "refunded":
                counts["refunds"] += 1
                self.metrics.swept.labels(reason="refund").inc()
                log.warning("card %s: applied refund of %s that Redis had missed", card_id, order_id)
        committed: list[tuple[str, str]] = []
        for order_id in ids:
            action = decide_stale(statuses.get(order_id), pending=order_id in pending)
            if action is StaleAction.RELEASE:
                if await self.inventory.release(card_id, order_id, mode="expire", now_ms=now) == "released":
                    counts["released"] += 1
                    self.metrics.swept.labels(reason="closed_in_sql").inc()
            elif action is StaleAction.RELEASE_ORPHAN:
                outcome = await self.inventory.release(
                    card_id, order_id, mode="orphan", now_ms=now, grace_ms=self.grace_ms
                )
                if outcome == "released":
                    counts["orphans"] += 1
                    self.metrics.swept.labels(reason="orphan").inc()
                    log.warning("card %s: released orphaned reservation %s (no SQL row)", card_id, order_id)
            elif action is StaleAction.CONFIRM:
                await self._confirm(card_id, order_id, now)
                counts["confirmed"] += 1
            elif action is StaleAction.MARK_COMMITTED:
                committed.append((card_id, order_id))
        await self.inventory.mark_committed(committed)
        counts["committed"] += len(committed)

    async def _confirm(self, card_id: str, order_id: str, now: int) -> None:
        reservation = await self.inventory.reservation(card_id, order_id)
        if reservation is None:
            return
        await self.inventory.rereserve(
            card_id,
            order_id=order_id,
            buyer_id=reservation.buyer_id,
            quantity=reservation.quantity,
            unit_price=reservation.unit_price,
            idempotency_key=reservation.idempotency_key,
            referrer_id=reservation.referrer_id,
            now_ms=now,
        )
