"""Room statistics, every figure derived from SQL (the live viewer counts now come from the realtime hub)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from live.bindings import DAY_MS
from live.models import Binding, Viewer
from realtime.models import RoomViewer, ViewerSample
from shop.inventory.rules import SOLD_VALUES, OrderStatus
from shop.models import Card, Commission, Order, Product
from shop.settlement import names, promoter_key


async def room_stats(
    session: AsyncSession,
    room_id: str,
    *,
    host_id: str,
    stock_left: dict[str, int | None],
    now_ms: int,
    currency: str,
    binding_days: float,
) -> dict[str, Any]:
    paid = Order.status.in_(SOLD_VALUES)
    active = (Order.status == OrderStatus.RESERVED.value) & (Order.expires_ms >= now_ms)
    totals = (
        await session.execute(
            select(
                func.count().filter(active),
                func.count().filter(paid),
                func.count().filter(Order.status == OrderStatus.REFUNDED.value),
                func.count(func.distinct(case((paid, Order.buyer_id)))),
                func.coalesce(func.sum(case((paid, Order.amount), else_=0)), 0),
            ).where(Order.room_id == room_id)
        )
    ).one()
    joined = (await session.execute(select(func.count()).where(Viewer.room_id == room_id))).scalar_one()
    watched = (await session.execute(select(func.count()).where(RoomViewer.room_id == room_id))).scalar_one()
    peak = (
        await session.execute(
            select(func.coalesce(func.max(ViewerSample.viewers), 0)).where(ViewerSample.room_id == room_id)
        )
    ).scalar_one()

    per_card = await session.execute(
        select(
            Card.id,
            Product.name,
            Card.price,
            Card.stock_total,
            func.coalesce(func.sum(case((active, Order.quantity), else_=0)), 0),
            func.coalesce(func.sum(case((paid, Order.quantity), else_=0)), 0),
            func.coalesce(func.sum(case((paid, Order.amount), else_=0)), 0),
        )
        .join(Product, Product.id == Card.product_id)
        .outerjoin(Order, Order.card_id == Card.id)
        .where(Card.room_id == room_id)
        .group_by(Card.id, Product.name, Card.price, Card.stock_total, Card.created_ms)
        .order_by(Card.created_ms, Card.id)
    )
    cards = []
    for card_id, name, price, total, reserved_sum, sold_sum, gmv in per_card.all():
        reserved, sold = int(reserved_sum), int(sold_sum)  # PostgreSQL sums are Decimal
        left = stock_left.get(card_id)
        cards.append(
            {
                "card_id": card_id,
                "product_name": name,
                "price": price,
                "stock_total": total,
                "stock_left": left if left is not None else max(total - reserved - sold, 0),
                "reserved": reserved,
                "sold": sold,
                "sell_through": round(sold / total, 4) if total else 0.0,
                "gmv": int(gmv),
            }
        )

    promoters = await room_promoters(
        session, room_id, host_id=host_id, now_ms=now_ms, binding_days=binding_days
    )
    orders_reserved, orders_paid, orders_refunded, buyers_paid, gmv = (int(x) for x in totals)
    return {
        # Live presence is counted by the realtime hub across processes; the endpoint fills these in.
        "viewers_now": 0,
        "connections_now": 0,
        # Recorded by the hub in SQL: the largest count it saw, and every viewer who had a live connection.
        "viewers_peak": int(peak),
        "viewers_unique": int(watched),
        "viewers_joined": int(joined),
        "orders_reserved": orders_reserved,
        "orders_paid": orders_paid,
        "orders_refunded": orders_refunded,
        "buyers_paid": buyers_paid,
        "gmv": gmv,
        "currency": currency,
        "conversion": round(buyers_paid / joined, 4) if joined else 0.0,
        "cards": cards,
        "promoters": promoters,
    }


async def room_promoters(
    session: AsyncSession, room_id: str, *, host_id: str, now_ms: int, binding_days: float
) -> list[dict[str, Any]]:
    """The show's promoter leaderboard: per promoter, the room's viewers they brought (a customer: bound
    to them at this host now; a v1 guest: brought into the room by their share link), the paid orders that
    earned them commission here, their amount, and the commission's net (the ledger's rows of the room)."""
    referrer = aliased(Viewer)
    in_force = [Binding.customer_id == Viewer.customer_id, Binding.host_id == host_id]
    if binding_days:
        in_force.append(Binding.bound_ms > now_ms - int(binding_days * DAY_MS))
    key = func.coalesce(Binding.promoter_id, referrer.customer_id, referrer.id)
    brought = await session.execute(
        select(key, func.count())
        .select_from(Viewer)
        .outerjoin(Binding, and_(*in_force))
        .outerjoin(referrer, and_(referrer.id == Viewer.referrer_id, Viewer.customer_id.is_(None)))
        .where(Viewer.room_id == room_id, key.is_not(None))
        .group_by(key)
    )
    viewers = {str(k): int(n) for k, n in brought.all()}
    earning = (Commission.kind == "accrual") & Order.status.in_(SOLD_VALUES)
    sold = await session.execute(
        select(
            promoter_key,
            func.count().filter(earning),
            func.coalesce(func.sum(case((earning, Order.amount), else_=0)), 0),
            func.coalesce(func.sum(Commission.amount), 0),
        )
        .join(Order, Order.id == Commission.order_id)
        .where(Commission.room_id == room_id)
        .group_by(promoter_key)
    )
    sales = {str(k): (int(o), int(g), int(m)) for k, o, g, m in sold.all()}
    keys = sorted(set(viewers) | set(sales))
    who = await names(session, host_id, keys)
    own_viewers = dict(
        (
            await session.execute(
                select(Viewer.customer_id, Viewer.id).where(
                    Viewer.room_id == room_id, Viewer.customer_id.in_(keys)
                )
            )
        ).all()
    )
    promoters: list[dict[str, Any]] = []
    for k in keys:
        orders, gmv, commission = sales.get(k, (0, 0, 0))
        name = who.get(k)
        promoters.append(
            {
                "promoter_id": k,
                "kind": name.kind if name else "guest",
                "name": name.name if name else k,
                "leader_id": name.leader_id if name else None,
                "viewer_id": own_viewers.get(k) or (k if name and name.kind == "guest" else None),
                "viewers": viewers.get(k, 0),
                "orders_paid": orders,
                "gmv": gmv,
                "commission": commission,
            }
        )
    promoters.sort(key=lambda p: (-int(p["gmv"]), -int(p["viewers"]), str(p["promoter_id"])))
    return promoters
