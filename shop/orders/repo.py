"""SQL access for orders, cards and payments. Functions take a session and never commit.

Orders leave this module as the one order type, ``shop.orders.order.Order``, never as ORM objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from live.models import Room
from shop.inventory.rules import SOLD_VALUES, OrderStatus
from shop.models import Card, Payment, Product
from shop.models import Order as OrderRow
from shop.orders.order import Order


async def card_with_room(session: AsyncSession, card_id: str) -> tuple[Card, Room] | None:
    row = (
        await session.execute(
            select(Card, Room).join(Room, Room.id == Card.room_id).where(Card.id == card_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def order(session: AsyncSession, order_id: str) -> Order | None:
    row = await session.get(OrderRow, order_id)
    return Order.of_row(row) if row is not None else None


async def order_with_room(session: AsyncSession, order_id: str) -> tuple[Order, Room] | None:
    stmt = select(OrderRow, Room).join(Room, Room.id == OrderRow.room_id).where(OrderRow.id == order_id)
    row = (await session.execute(stmt)).first()
    return (Order.of_row(row[0]), row[1]) if row else None


async def transition(
    session: AsyncSession,
    order_id: str,
    *,
    to: OrderStatus,
    allowed: Sequence[OrderStatus],
    buyer_id: str | None = None,
    refunded_from: int | None = None,
    **values: Any,
) -> Order | None:
    """Guarded status change: applies only if the order is in one of ``allowed`` (and, if given, belongs to
    ``buyer_id`` and has ``refunded_from`` refunded so far). Returns the changed row, or ``None`` when
    nothing matched."""
    conditions = [OrderRow.id == order_id, OrderRow.status.in_([s.value for s in allowed])]
    if buyer_id is not None:
        conditions.append(OrderRow.buyer_id == buyer_id)
    if refunded_from is not None:
        conditions.append(OrderRow.refunded_amount == refunded_from)
    stmt = update(OrderRow).where(*conditions).values(status=to.value, **values).returning(OrderRow)
    row = (await session.execute(stmt)).scalar_one_or_none()
    return Order.of_row(row) if row is not None else None


async def refund_part(
    session: AsyncSession, order_id: str, *, refunded_from: int, amount: int
) -> Order | None:
    """Add a partial refund to a paid order that has ``refunded_from`` refunded so far (``None``: it changed
    meanwhile, or is no longer paid)."""
    stmt = (
        update(OrderRow)
        .where(
            OrderRow.id == order_id,
            OrderRow.status.in_(SOLD_VALUES),
            OrderRow.refunded_amount == refunded_from,
        )
        .values(refunded_amount=OrderRow.refunded_amount + amount)
        .returning(OrderRow)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    return Order.of_row(row) if row is not None else None


async def expire_overdue(session: AsyncSession, order_ids: Sequence[str], *, now_ms: int) -> list[Order]:
    """Mark these reservations expired if they are still reserved and past their window at ``now_ms``;
    returns the orders changed (now ``expired``)."""
    if not order_ids:
        return []
    stmt = (
        update(OrderRow)
        .where(
            OrderRow.id.in_(order_ids),
            OrderRow.status == OrderStatus.RESERVED.value,
            OrderRow.expires_ms < now_ms,
        )
        .values(status=OrderStatus.EXPIRED.value, closed_ms=now_ms)
        .returning(OrderRow)
        .execution_options(synchronize_session=False)
    )
    return [Order.of_row(row) for row in (await session.execute(stmt)).scalars().all()]


async def statuses(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, str]:
    if not order_ids:
        return {}
    rows = await session.execute(select(OrderRow.id, OrderRow.status).where(OrderRow.id.in_(order_ids)))
    return {i: s for i, s in rows.all()}


async def refund_outcomes(session: AsyncSession, order_ids: Sequence[str]) -> dict[str, bool]:
    """Of these orders, the refunded ones, each with whether its units went back on sale."""
    if not order_ids:
        return {}
    rows = await session.execute(
        select(OrderRow.id, OrderRow.restocked).where(
            OrderRow.id.in_(order_ids), OrderRow.status == OrderStatus.REFUNDED.value
        )
    )
    return {i: bool(r) for i, r in rows.all()}


async def card_orders(session: AsyncSession, card_id: str) -> list[Order]:
    rows = (await session.execute(select(OrderRow).where(OrderRow.card_id == card_id))).scalars()
    return [Order.of_row(o) for o in rows]


async def cards_to_reconcile(session: AsyncSession) -> list[tuple[Card, Room]]:
    """Cards whose sale state still matters: in rooms not ended, still open (an ended show's sale kept
    open for its replay), or holding live reservations."""
    with_reservations = select(OrderRow.card_id).where(OrderRow.status == OrderStatus.RESERVED.value)
    stmt = (
        select(Card, Room)
        .join(Room, Room.id == Card.room_id)
        .where((Room.status != "ended") | (Card.status == "open") | Card.id.in_(with_reservations))
    )
    return [(c, r) for c, r in (await session.execute(stmt)).all()]


async def room_orders(session: AsyncSession, room_id: str) -> list[tuple[Order, Product]]:
    stmt = (
        select(OrderRow, Product)
        .join(Card, Card.id == OrderRow.card_id)
        .join(Product, Product.id == Card.product_id)
        .where(OrderRow.room_id == room_id)
        .order_by(OrderRow.created_ms, OrderRow.id)
    )
    return [(Order.of_row(o), p) for o, p in (await session.execute(stmt)).all()]


async def refund_payments(session: AsyncSession, order_id: str, *, now_ms: int) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.order_id == order_id, Payment.status == "succeeded")
        .values(status="refunded", updated_ms=now_ms)
    )


async def pending_payment(
    session: AsyncSession, order_id: str, *, provider: str, channel: str
) -> Payment | None:
    """An open payment of this order at this provider and channel, whose checkout can be shown again."""
    stmt = (
        select(Payment)
        .where(
            Payment.order_id == order_id,
            Payment.status == "pending",
            Payment.provider == provider,
            Payment.channel == channel,
            Payment.checkout.is_not(None),
        )
        .order_by(Payment.created_ms.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_payments(session: AsyncSession, order_ids: Sequence[str]) -> list[Payment]:
    """The payments still pending of these orders."""
    if not order_ids:
        return []
    stmt = select(Payment).where(Payment.order_id.in_(order_ids), Payment.status == "pending")
    return list((await session.execute(stmt)).scalars())


async def abandoned_payments(session: AsyncSession, *, limit: int) -> list[Payment]:
    """Provider payments still open of orders that no longer wait for one (cancelled, expired with a close
    that failed, paid through another payment, refunded): oldest first."""
    stmt = (
        select(Payment)
        .join(OrderRow, OrderRow.id == Payment.order_id)
        .where(
            Payment.status == "pending",
            Payment.provider != "dev",
            OrderRow.status != OrderStatus.RESERVED.value,
        )
        .order_by(Payment.created_ms)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def taken_payment(session: AsyncSession, order_id: str) -> Payment | None:
    """The payment whose money the order took (its refunds return money from it)."""
    stmt = (
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == "succeeded")
        .order_by(Payment.updated_ms)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def overdue_reservations(session: AsyncSession, *, now_ms: int, limit: int = 500) -> list[str]:
    """Reserved orders past their window at ``now_ms``, oldest first (what ``expire_overdue`` expires)."""
    stmt = (
        select(OrderRow.id)
        .where(OrderRow.status == OrderStatus.RESERVED.value, OrderRow.expires_ms < now_ms)
        .order_by(OrderRow.expires_ms, OrderRow.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())
