"""Room statistics, every figure derived from SQL (the live viewer counts now come from the realtime hub)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from live.models import Viewer
from realtime.models import RoomViewer, ViewerSample
from shop.inventory.rules import OrderStatus
from shop.models import Card, Commission, Order, Product


async def room_stats(
    session: AsyncSession, room_id: str, *, stock_left: dict[str, int | None], now_ms: int, currency: str
) -> dict[str, Any]:
    paid = Order.status == OrderStatus.PAID.value
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

    referred = (
        select(Viewer.referrer_id, func.count().label("n"))
        .where(Viewer.room_id == room_id, Viewer.referrer_id.is_not(None))
        .group_by(Viewer.referrer_id)
        .subquery()
    )
    sales = (
        select(
            Order.referrer_id,
            func.count().filter(paid).label("orders"),
            func.coalesce(func.sum(case((paid, Order.amount), else_=0)), 0).label("gmv"),
        )
        .where(Order.room_id == room_id, Order.referrer_id.is_not(None))
        .group_by(Order.referrer_id)
        .subquery()
    )
    earned = (
        select(Commission.promoter_id, func.sum(Commission.amount).label("amount"))
        .where(Commission.room_id == room_id)
        .group_by(Commission.promoter_id)
        .subquery()
    )
    promoters_rows = await session.execute(
        select(
            Viewer.id,
            Viewer.name,
            func.coalesce(referred.c.n, 0),
            func.coalesce(sales.c.orders, 0),
            func.coalesce(sales.c.gmv, 0),
            func.coalesce(earned.c.amount, 0),
        )
        .outerjoin(referred, referred.c.referrer_id == Viewer.id)
        .outerjoin(sales, sales.c.referrer_id == Viewer.id)
        .outerjoin(earned, earned.c.promoter_id == Viewer.id)
        .where(Viewer.room_id == room_id, (referred.c.n.is_not(None)) | (sales.c.orders.is_not(None)))
    )
    promoters = [
        {
            "viewer_id": v,
            "name": n,
            "viewers": int(c),
            "orders_paid": int(o),
            "gmv": int(g),
            "commission": int(m),
        }
        for v, n, c, o, g, m in promoters_rows.all()
    ]
    promoters.sort(key=lambda p: (-p["gmv"], -p["viewers"], p["viewer_id"]))
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
