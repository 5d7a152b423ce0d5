"""SQL access for orders, cards and payments. Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from live.models import Room
from shop.inventory.rules import OrderStatus, SqlOrder
from shop.models import Card, Commission, Order, Payment, Product


async def card_with_room(session: AsyncSession, card_id: str) -> tuple[Card, Room] | None:
    row = (
        await session.execute(
            select(Card, Room).join(Room, Room.id == Card.room_id).where(Card.id == card_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def order(session: AsyncSession, order_id: str) -> Order | None:
    return await session.get(Order, order_id)


async def order_with_room(session: AsyncSession, order_id: str) -> tuple[Order, Room] | None:
    stmt = select(Order, Room).join(Room, Room.id == Order.room_id).where(Order.id == order_id)
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def transition(
    session: AsyncSession,
    order_id: str,
    *,
    to: OrderStatus,
    allowed: Sequence[OrderStatus],
    buyer_id: str | None = None,
    **values: Any,
) -> Order | None:
    """Guarded status change: applies only if the order is in one of ``allowed`` (and, if given, belongs to
    ``buyer_id``). Returns the changed row, or ``None`` when nothing matched."""
    conditions = [Order.id == order_id, Order.status.in_([s.value for s in allowed])]
    if buyer_id is not None:
        conditions.append(Order.buyer_id == buyer_id)
    stmt = update(Order).where(*conditions).values(status=to.value, **values).returning(Order)
    return (await session.execute(stmt)).scalar_one_or_none()


async def expire_overdue(session: AsyncSession, *, now_ms: int, limit: int = 500) -> list[Order]:
    """Mark reservations past their window as expired; returns the orders changed (now ``expired``)."""
    overdue = (
        select(Order.id)
        .where(Order.status == OrderStatus.RESERVED.value, Order.expires_ms < now_ms)
        .limit(limit)
        .scalar_subquery()
    )
    stmt = (
        update(Order)
        .where(Order.id.in_(overdue), Order.status == OrderStatus.RESERVED.value)
        .values(status=OrderStatus.EXPIRED.value, closed_ms=now_ms)
        .returning(Order)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(stmt)).scalars().all())


async def statuses(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, str]:
    if not order_ids:
        return {}
    rows = await session.execute(select(Order.id, Order.status).where(Order.id.in_(order_ids)))
    return {i: s for i, s in rows.all()}


async def refund_outcomes(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, bool]:
    """Of these orders, the refunded ones, each with whether its units went back on sale."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(Order.id, Order.restocked).where(
            Order.id.in_(order_ids), Order.status == OrderStatus.REFUNDED.value
        )
    )
    return {i: bool(r) for i, r in rows.all()}


def as_sql_order(o: Order) -> SqlOrder:
    return SqlOrder(
        id=o.id,
        buyer_id=o.buyer_id,
        quantity=o.quantity,
        unit_price=o.unit_price,
        idempotency_key=o.idempotency_key,
        status=o.status,
        expires_ms=o.expires_ms,
        created_ms=o.created_ms,
        restocked=o.restocked,
        referrer_id=o.referrer_id,
        was_paid=o.paid_ms is not None,
    )


async def card_orders(session: AsyncSession, card_id: str) -> list[SqlOrder]:
    rows = (await session.execute(select(Order).where(Order.card_id == card_id))).scalars()
    return [as_sql_order(o) for o in rows]


async def cards_to_reconcile(session: AsyncSession) -> list[tuple[Card, Room]]:
    """Cards whose sale state still matters: in rooms not ended, or holding live reservations."""
    with_reservations = select(Order.card_id).where(Order.status == OrderStatus.RESERVED.value)
    stmt = (
        select(Card, Room)
        .join(Room, Room.id == Card.room_id)
        .where((Room.status != "ended") | Card.id.in_(with_reservations))
    )
    return [(c, r) for c, r in (await session.execute(stmt)).all()]


async def room_orders(session: AsyncSession, room_id: str) -> list[tuple[Order, Product]]:
    stmt = (
        select(Order, Product)
        .join(Card, Card.id == Order.card_id)
        .join(Product, Product.id == Card.product_id)
        .where(Order.room_id == room_id)
        .order_by(Order.created_ms, Order.id)
    )
    return [(o, p) for o, p in (await session.execute(stmt)).all()]


async def refund_payments(session: AsyncSession, order_id: str, *, now_ms: int) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.order_id == order_id, Payment.status == "succeeded")
        .values(status="refunded", updated_ms=now_ms)
    )


async def pending_payment(session: AsyncSession, order_id: str) -> Payment | None:
    stmt = select(Payment).where(Payment.order_id == order_id, Payment.status == "pending").limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def commission_total(session: AsyncSession, order_id: str) -> int:
    stmt = select(func.coalesce(func.sum(Commission.amount), 0)).where(Commission.order_id == order_id)
    return int((await session.execute(stmt)).scalar_one())
