"""The one-level commission ledger: an accrual for the referring promoter when a referred order is paid,
the matching clawback when it is refunded. Unique per (order, kind), so each happens at most once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from base.db import insert_ignoring_conflicts
from base.ids import new_id
from shop.inventory.rules import commission_amount
from shop.models import Commission
from shop.orders import repo
from shop.orders.order import Order


async def accrue(session: AsyncSession, order: Order, *, rate_bps: int, now_ms: int) -> int:
    """Credit the order's referrer; returns the amount (0 when the order was not referred)."""
    if order.referrer_id is None or order.referrer_id == order.buyer_id:
        return 0
    amount = commission_amount(order.amount, rate_bps)
    stmt = insert_ignoring_conflicts(session, Commission).values(
        id=new_id("com"),
        order_id=order.id,
        promoter_id=order.referrer_id,
        room_id=order.room_id,
        kind="accrual",
        amount=amount,
        created_ms=now_ms,
    )
    await session.execute(stmt)
    return amount


async def claw_back(session: AsyncSession, order: Order, *, now_ms: int) -> int:
    """Reverse what was accrued on this order; returns the amount taken back."""
    if order.referrer_id is None:
        return 0
    accrued = await repo.commission_total(session, order.id)
    if accrued <= 0:
        return 0
    stmt = insert_ignoring_conflicts(session, Commission).values(
        id=new_id("com"),
        order_id=order.id,
        promoter_id=order.referrer_id,
        room_id=order.room_id,
        kind="clawback",
        amount=-accrued,
        created_ms=now_ms,
    )
    await session.execute(stmt)
    return accrued
