"""Rebuild Redis sale state from SQL, the truth. Idempotent; safe while a sale is live.

Per card: fence new reservations (they wait, then retry), read the card and all its orders from SQL,
derive the live reservations, idempotency map and written-off units (``rules.rebuild_from_sql``), and load
them in one atomic script that keeps reservations still being written and lifts the fence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.metrics import Metrics
from live.models import Room
from shop.inventory.rules import rebuild_from_sql
from shop.inventory.store import ACTIVE_CARDS, SENTINEL, Inventory, LoadResult
from shop.models import Card
from shop.orders import repo

log = logging.getLogger("livecart.reconcile")

FENCE_MS = 10_000


@dataclass(frozen=True, slots=True)
class CardReport:
    card_id: str
    stock_left_before: int | None
    stock_left_after: int
    kept_in_flight: int
    dropped_orphans: int
    oversold: bool

    @property
    def drift(self) -> int | None:
        return None if self.stock_left_before is None else self.stock_left_after - self.stock_left_before


class Reconciler:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        clock: Clock,
        metrics: Metrics,
        grace_ms: int,
    ) -> None:
        self.sessions = sessions
        self.inventory = inventory
        self.clock = clock
        self.metrics = metrics
        self.grace_ms = grace_ms

    async def reconcile_all(self, *, trigger: str = "manual") -> list[CardReport]:
        self.metrics.reconciles.labels(trigger=trigger).inc()
        async with self.sessions() as session:
            cards = await repo.cards_to_reconcile(session)
        reports = [await self._rebuild(card, room) for card, room in cards]
        await self.inventory.redis.set(SENTINEL, str(self.clock.now_ms()))
        return reports

    async def reconcile_card(self, card_id: str, *, trigger: str = "manual") -> CardReport | None:
        """Rebuild one card; ``None`` if SQL has no such card."""
        self.metrics.reconciles.labels(trigger=trigger).inc()
        async with self.sessions() as session:
            found = await repo.card_with_room(session, card_id)
        if found is None:
            return None
        return await self._rebuild(*found)

    async def _rebuild(self, card: Card, room: Room) -> CardReport:
        now = self.clock.now_ms()
        await self.inventory.fence(card.id, until_ms=now + FENCE_MS)
        async with self.sessions() as session:
            fresh = await repo.card_with_room(session, card.id)
            assert fresh is not None
            card = fresh[0]
            orders = await repo.card_orders(session, card.id)
        now = self.clock.now_ms()
        rebuilt = rebuild_from_sql(orders, now_ms=now)
        result: LoadResult = await self.inventory.load(
            card.id,
            sale={
                "status": card.status,
                "room_id": card.room_id,
                "closes_at": card.closes_ms or 0,
                "stock_total": card.stock_total,
                "per_user_limit": card.per_user_limit,
                "price": card.price,
                "reserve_ms": card.reserve_seconds * 1000,
            },
            live_orders=rebuilt.live_orders,
            idempotency=rebuilt.idempotency,
            written_off=rebuilt.written_off,
            now_ms=now,
            grace_ms=self.grace_ms,
        )
        await self.inventory.redis.sadd(ACTIVE_CARDS, card.id)
        report = CardReport(
            card_id=card.id,
            stock_left_before=result.stock_left_before,
            stock_left_after=result.stock_left_after,
            kept_in_flight=result.kept_in_flight,
            dropped_orphans=result.dropped_orphans,
            oversold=result.unclamped_left < 0,
        )
        if report.oversold:
            log.error("card %s: SQL holds more units than its stock (%d)", card.id, result.unclamped_left)
        elif report.drift:
            log.warning("card %s: stock_left corrected by %+d", card.id, report.drift)
        return report
