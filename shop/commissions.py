"""The one-level commission ledger (SPEC §9): an accrual for the order's promoter when it is paid, a
clawback in proportion for each refund inside the after-sale window.

Who earns on an order: the promoter its buyer (a customer) was bound to at this host when the order was
placed (``live.bindings``); for a guest buyer of a v1 room, the viewer whose share link brought them into
the room. Nobody earns on their own orders, nobody on a second level (only the buyer's own promoter), a
suspended leader on nothing paid while suspended. At most one accrual per order and one clawback per
refund (unique indexes), so a redelivered payment or a retried refund writes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from base.db import insert_ignoring_conflicts
from base.ids import new_id
from base.settings import Settings
from live import bindings
from live.models import Host, Leader, Room, Viewer
from shop import settlement_rules as rules
from shop.inventory.rules import commission_amount
from shop.models import Card, Commission
from shop.orders.order import Order


@dataclass(frozen=True, slots=True)
class Terms:
    """The settings the ledger follows."""

    default_bps: int
    binding_days: float
    after_sale_days: float

    @classmethod
    def of(cls, settings: Settings) -> Terms:
        return cls(
            default_bps=settings.commission_rate_bps,
            binding_days=settings.binding_days,
            after_sale_days=settings.after_sale_days,
        )


@dataclass(frozen=True, slots=True)
class Promoter:
    customer_id: str | None  #: ``None``: a guest viewer of a v1 room
    viewer_id: str | None  #: their viewer in the order's room, if any
    leader: Leader | None


async def promoter_of(
    session: AsyncSession, order: Order, host_id: str, *, binding_days: float
) -> Promoter | None:
    """Who earns on this order (``None``: nobody)."""
    buyer = await session.get(Viewer, order.buyer_id)
    if buyer is None:
        return None
    if buyer.customer_id is not None:
        bound = await bindings.in_force(
            session, host_id, buyer.customer_id, at_ms=order.created_ms, days=binding_days
        )
        if bound is None or bound.promoter_id == buyer.customer_id:
            return None
        viewer_id = (
            await session.execute(
                select(Viewer.id).where(
                    Viewer.room_id == order.room_id, Viewer.customer_id == bound.promoter_id
                )
            )
        ).scalar_one_or_none()
        return Promoter(bound.promoter_id, viewer_id, await _leader(session, host_id, bound.promoter_id))
    if order.referrer_id is None or order.referrer_id == order.buyer_id:
        return None
    referrer = await session.get(Viewer, order.referrer_id)
    if referrer is None:
        return None
    leader = await _leader(session, host_id, referrer.customer_id) if referrer.customer_id else None
    return Promoter(referrer.customer_id, referrer.id, leader)


async def _leader(session: AsyncSession, host_id: str, customer_id: str) -> Leader | None:
    found = await session.execute(
        select(Leader).where(Leader.host_id == host_id, Leader.customer_id == customer_id)
    )
    return found.scalar_one_or_none()


async def accrue(session: AsyncSession, order: Order, *, terms: Terms, now_ms: int) -> int:
    """Credit the promoter of this (just paid) order at its rate; returns the amount (0: nobody earns)."""
    room = await session.get(Room, order.room_id)
    assert room is not None
    who = await promoter_of(session, order, room.host_id, binding_days=terms.binding_days)
    if who is None or (who.leader is not None and who.leader.suspended):
        return 0
    card = await session.get(Card, order.card_id)
    host = await session.get(Host, room.host_id)
    rate = rules.choose_rate(
        card_bps=card.commission_bps if card else None,
        leader_bps=who.leader.commission_bps if who.leader else None,
        shop_bps=host.commission_bps if host else None,
        default_bps=terms.default_bps,
    )
    amount = commission_amount(order.amount, rate)
    await session.execute(
        insert_ignoring_conflicts(session, Commission).values(
            id=new_id("com"),
            order_id=order.id,
            host_id=room.host_id,
            promoter_customer_id=who.customer_id,
            promoter_id=who.viewer_id,
            room_id=order.room_id,
            kind="accrual",
            amount=amount,
            rate_bps=rate,
            created_ms=now_ms,
        )
    )
    return amount


async def claw_back(session: AsyncSession, order: Order, *, refund_id: str, terms: Terms, now_ms: int) -> int:
    """Take back, for this refund, the part of the accrual that the refunds so far make due (the order
    row carries the new ``refunded_amount``); returns the amount taken back. Nothing after the order's
    after-sale window: its commission is final."""
    if not rules.inside_after_sale(order.paid_ms, now_ms=now_ms, days=terms.after_sale_days):
        return 0
    accrued = (
        await session.execute(
            select(Commission).where(Commission.order_id == order.id, Commission.kind == "accrual")
        )
    ).scalar_one_or_none()
    if accrued is None:
        return 0
    clawed = -int(
        (
            await session.execute(
                select(func.coalesce(func.sum(Commission.amount), 0)).where(
                    Commission.order_id == order.id, Commission.kind == "clawback"
                )
            )
        ).scalar_one()
    )
    due = rules.clawback_due(
        accrued=accrued.amount,
        order_amount=order.amount,
        refunded_total=order.refunded_amount,
        clawed_so_far=clawed,
    )
    if due <= 0:
        return 0
    await session.execute(
        insert_ignoring_conflicts(session, Commission).values(
            id=new_id("com"),
            order_id=order.id,
            host_id=accrued.host_id,
            promoter_customer_id=accrued.promoter_customer_id,
            promoter_id=accrued.promoter_id,
            room_id=order.room_id,
            kind="clawback",
            amount=-due,
            rate_bps=None,
            refund_id=refund_id,
            created_ms=now_ms,
        )
    )
    return due
