"""The host's customer data and a customer's own (SPEC §9), read from SQL: who each customer is, when they
were first and last seen, what they bought across every show of the host, and who brought them.

``spent`` is what a customer paid and kept: paid orders less what was refunded of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from base.clock import iso
from identity.models import Customer
from identity.phones import masked
from live.bindings import lasts
from live.models import Binding, Leader, Room, Viewer
from shop import settlement
from shop.addresses import mask
from shop.inventory.rules import SOLD_VALUES, OrderStatus
from shop.models import Card, Commission, Order, Product
from shop.orders.order import Address
from shop.settlement_rules import after_sale_ends
from shop.views import address_json

KEPT = (*SOLD_VALUES, OrderStatus.REFUNDED.value)


async def page(
    session: AsyncSession, host_id: str, *, limit: int | None, before: Customer | None
) -> list[Customer]:
    """The host's customers, newest first, after ``before`` (keyed paging, as the room list)."""
    stmt = select(Customer).where(Customer.host_id == host_id)
    if before is not None:
        stmt = stmt.where(
            or_(
                Customer.created_ms < before.created_ms,
                and_(Customer.created_ms == before.created_ms, Customer.id < before.id),
            )
        )
    stmt = stmt.order_by(Customer.created_ms.desc(), Customer.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


async def bindings_in_force(
    session: AsyncSession, host_id: str, customer_ids: Sequence[str], *, now_ms: int, days: float
) -> dict[str, Binding]:
    """customer id → the binding in force now (customers with none are left out)."""
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Binding)
        .where(Binding.host_id == host_id, Binding.customer_id.in_(customer_ids))
        .order_by(Binding.customer_id, Binding.seq)
    )
    latest: dict[str, Binding] = {}
    for binding in rows.scalars():
        latest[binding.customer_id] = binding  # ordered by seq: the last one wins
    return {c: b for c, b in latest.items() if lasts(b.bound_ms, at_ms=now_ms, days=days)}


async def purchases(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """customer id → (orders paid, spent, last order time) across every room."""
    if not customer_ids:
        return {}
    kept = Order.status.in_(KEPT) & Order.paid_ms.is_not(None)
    rows = await session.execute(
        select(
            Viewer.customer_id,
            func.count().filter(kept),
            func.coalesce(func.sum(case((kept, Order.amount - Order.refunded_amount), else_=0)), 0),
            func.max(Order.created_ms),
        )
        .join(Viewer, Viewer.id == Order.buyer_id)
        .where(Viewer.customer_id.in_(customer_ids))
        .group_by(Viewer.customer_id)
    )
    return {c: (int(n), int(spent), int(last or 0)) for c, n, spent, last in rows.all()}


async def last_joins(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, int]:
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Viewer.customer_id, func.max(Viewer.created_ms))
        .where(Viewer.customer_id.in_(customer_ids))
        .group_by(Viewer.customer_id)
    )
    return {str(c): int(t) for c, t in rows.all()}


async def customer_lines(
    session: AsyncSession, host_id: str, customers: list[Customer], *, now_ms: int, binding_days: float
) -> list[dict[str, Any]]:
    """The customer list's lines for these customers."""
    ids = [c.id for c in customers]
    bought = await purchases(session, ids)
    joined = await last_joins(session, ids)
    bound = await bindings_in_force(session, host_id, ids, now_ms=now_ms, days=binding_days)
    leaders = dict(
        (await session.execute(select(Leader.customer_id, Leader.id).where(Leader.host_id == host_id))).all()
    )
    who = await settlement.names(session, host_id, sorted({b.promoter_id for b in bound.values()}))
    lines = []
    for c in customers:
        orders_paid, spent, last_order = bought.get(c.id, (0, 0, 0))
        binding = bound.get(c.id)
        promoter = who.get(binding.promoter_id) if binding else None
        lines.append(
            {
                "id": c.id,
                "name": settlement.customer_name(c),
                "phone_masked": masked(c.phone) if c.phone else None,
                "wechat": c.wechat_openid is not None,
                "first_seen": iso(c.created_ms),
                "last_seen": iso(max(c.last_sign_in_ms, joined.get(c.id, 0), last_order)),
                "orders_paid": orders_paid,
                "spent": spent,
                "promoter_id": binding.promoter_id if binding else None,
                "promoter_name": promoter.name if promoter else None,
                "leader_id": leaders.get(binding.promoter_id) if binding else None,
                "bound_at": iso(binding.bound_ms) if binding else None,
                "is_leader": c.id in leaders,
            }
        )
    return lines


async def orders_of(
    session: AsyncSession, customer_id: str, *, currency: str, limit: int = 500
) -> list[dict[str, Any]]:
    """A customer's orders across every show of their host, newest first."""
    rows = await session.execute(
        select(Order, Room.title, Product.name)
        .join(Viewer, Viewer.id == Order.buyer_id)
        .join(Room, Room.id == Order.room_id)
        .join(Card, Card.id == Order.card_id)
        .join(Product, Product.id == Card.product_id)
        .where(Viewer.customer_id == customer_id)
        .order_by(Order.created_ms.desc(), Order.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": o.id,
            "room_id": o.room_id,
            "room_title": title,
            "card_id": o.card_id,
            "product_name": product,
            "quantity": o.quantity,
            "amount": o.amount,
            "refunded_amount": o.refunded_amount,
            "currency": currency,
            "status": o.status,
            "created_at": iso(o.created_ms),
            "paid_at": iso(o.paid_ms),
            "carrier": o.carrier,
            "tracking_number": o.tracking_number,
            "shipped_at": iso(o.shipped_ms),
        }
        for o, title, product in rows.all()
    ]


async def referred(
    session: AsyncSession, host_id: str, promoter_id: str, *, now_ms: int, days: float
) -> list[Binding]:
    """The bindings in force now that bind customers to this promoter."""
    rows = await session.execute(
        select(Binding).where(Binding.host_id == host_id, Binding.promoter_id == promoter_id)
    )
    return [b for b in rows.scalars() if lasts(b.bound_ms, at_ms=now_ms, days=days)]


async def my_customers(
    session: AsyncSession, host_id: str, promoter_id: str, *, now_ms: int, days: float
) -> list[dict[str, Any]]:
    """The customers bound to this promoter now, with what they bought and what it earned the promoter."""
    bound = await referred(session, host_id, promoter_id, now_ms=now_ms, days=days)
    ids = [b.customer_id for b in bound]
    if not ids:
        return []
    people = {
        c.id: c for c in (await session.execute(select(Customer).where(Customer.id.in_(ids)))).scalars()
    }
    bought = await purchases(session, ids)
    earned = dict(
        (
            await session.execute(
                select(Viewer.customer_id, func.sum(Commission.amount))
                .join(Order, Order.id == Commission.order_id)
                .join(Viewer, Viewer.id == Order.buyer_id)
                .where(settlement.of_promoter(promoter_id), Viewer.customer_id.in_(ids))
                .group_by(Viewer.customer_id)
            )
        ).all()
    )
    lines = []
    for b in sorted(bound, key=lambda b: (-b.bound_ms, b.customer_id)):
        c = people[b.customer_id]
        orders_paid, spent, _ = bought.get(c.id, (0, 0, 0))
        lines.append(
            {
                "id": c.id,
                "name": settlement.customer_name(c),
                "phone_masked": masked(c.phone) if c.phone else None,
                "bound_at": iso(b.bound_ms),
                "orders_paid": orders_paid,
                "spent": spent,
                "commission": int(earned.get(c.id) or 0),
            }
        )
    return lines


async def my_commissions(
    session: AsyncSession, promoter_id: str, host_id: str, *, after_sale_days: float, limit: int = 1000
) -> list[dict[str, Any]]:
    """The promoter's ledger rows, newest first, each with when it becomes payable."""
    rows = await session.execute(
        select(Commission, Room.title, Order)
        .join(Order, Order.id == Commission.order_id)
        .join(Room, Room.id == Commission.room_id)
        .where(Commission.host_id == host_id, settlement.of_promoter(promoter_id))
        .order_by(Commission.created_ms.desc(), Commission.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": c.id,
            "order_id": c.order_id,
            "room_id": c.room_id,
            "room_title": title,
            "kind": c.kind,
            "amount": c.amount,
            "rate_bps": c.rate_bps,
            "created_at": iso(c.created_ms),
            "payable_at": iso(after_sale_ends(o.paid_ms, after_sale_days)) if o.paid_ms else None,
            "payout_id": c.payout_id,
            "order_status": o.status,
            # A leader recognises the order, never finds the person: the address masked.
            "ship_to": address_json(mask(a)) if (a := Address.of_row(o)) else None,
        }
        for c, title, o in rows.all()
    ]
