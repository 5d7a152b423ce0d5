"""Settlement (SPEC §9): every figure of the commission report summed from the ledger, and payouts.

A promoter is keyed by their customer id, or by their viewer id for a v1 guest (``promoter_key``). The
figures of one promoter over a period (ledger rows by their time):

- ``accrued``: the accruals; ``clawed_back``: the clawbacks (positive); ``net`` = accrued - clawed_back;
- ``paid_out``: the rows a payout has paid; ``owed`` = net - paid_out;
- ``payable``: the unpaid rows of orders whose after-sale window has passed (what a payout now pays);
- ``orders_paid`` / ``gmv``: the orders that accrued, and their amounts.

A payout takes every unpaid row of one promoter's orders paid up to an instant and past their after-sale
window, in one guarded ``UPDATE`` (``payout_id IS
NULL``): two payouts at once never pay a row twice (PostgreSQL re-checks the guard after the first
commits; SQLite runs one writer at a time). The same promoter and instant is the same payout (a unique
index): a repeated request answers the first one's payout and pays nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from base.clock import iso
from base.db import insert_ignoring_conflicts
from base.ids import new_id
from identity.models import Customer
from identity.phones import masked
from live.models import Leader, Viewer
from shop.errors import NothingOwed
from shop.models import Commission, Order, Payout
from shop.settlement_rules import payable_paid_before

FIGURES = ("orders_paid", "gmv", "accrued", "clawed_back", "net", "paid_out", "owed", "payable")

#: The promoter a ledger row credits: their customer, else (a v1 guest) their viewer.
promoter_key = func.coalesce(Commission.promoter_customer_id, Commission.promoter_id)


def of_promoter(promoter_id: str) -> ColumnElement[bool]:
    return or_(
        Commission.promoter_customer_id == promoter_id,
        and_(Commission.promoter_customer_id.is_(None), Commission.promoter_id == promoter_id),
    )


def zero_figures() -> dict[str, int]:
    return dict.fromkeys(FIGURES, 0)


async def figures(
    session: AsyncSession,
    host_id: str,
    *,
    now_ms: int,
    after_sale_days: float,
    from_ms: int | None = None,
    to_ms: int | None = None,
    promoter_id: str | None = None,
) -> dict[str, dict[str, int]]:
    """promoter key → their figures, from ledger rows of ``[from_ms, to_ms)`` (either end open)."""
    accrual = Commission.kind == "accrual"
    clawback = Commission.kind == "clawback"
    unpaid = Commission.payout_id.is_(None)
    past_window = Order.paid_ms <= payable_paid_before(now_ms, after_sale_days)
    conditions: list[ColumnElement[bool]] = [Commission.host_id == host_id]
    if from_ms is not None:
        conditions.append(Commission.created_ms >= from_ms)
    if to_ms is not None:
        conditions.append(Commission.created_ms < to_ms)
    if promoter_id is not None:
        conditions.append(of_promoter(promoter_id))
    rows = await session.execute(
        select(
            promoter_key,
            func.count().filter(accrual),
            func.coalesce(func.sum(case((accrual, Order.amount), else_=0)), 0),
            func.coalesce(func.sum(case((accrual, Commission.amount), else_=0)), 0),
            func.coalesce(func.sum(case((clawback, -Commission.amount), else_=0)), 0),
            func.coalesce(func.sum(case((Commission.payout_id.is_not(None), Commission.amount), else_=0)), 0),
            func.coalesce(func.sum(case((unpaid & past_window, Commission.amount), else_=0)), 0),
        )
        .join(Order, Order.id == Commission.order_id)
        .where(*conditions)
        .group_by(promoter_key)
    )
    out: dict[str, dict[str, int]] = {}
    for key, orders_paid, gmv, accrued, clawed, paid, payable in rows.all():
        accrued, clawed, paid = int(accrued), int(clawed), int(paid)  # PostgreSQL sums are Decimal
        out[str(key)] = {
            "orders_paid": int(orders_paid),
            "gmv": int(gmv),
            "accrued": accrued,
            "clawed_back": clawed,
            "net": accrued - clawed,
            "paid_out": paid,
            "owed": accrued - clawed - paid,
            "payable": int(payable),
        }
    return out


@dataclass(frozen=True, slots=True)
class PromoterName:
    name: str
    kind: str  #: ``leader``, ``customer`` or ``guest``
    leader_id: str | None
    phone: str | None


async def names(session: AsyncSession, host_id: str, keys: list[str]) -> dict[str, PromoterName]:
    """Who each promoter key is: a leader (their roster name), a customer, or a guest viewer."""
    if not keys:
        return {}
    out: dict[str, PromoterName] = {}
    customers = await session.execute(
        select(Customer, Leader)
        .outerjoin(Leader, and_(Leader.customer_id == Customer.id, Leader.host_id == host_id))
        .where(Customer.host_id == host_id, Customer.id.in_(keys))
    )
    for customer, leader in customers.all():
        if leader is not None:
            out[customer.id] = PromoterName(leader.name, "leader", leader.id, customer.phone)
        else:
            out[customer.id] = PromoterName(customer_name(customer), "customer", None, customer.phone)
    rest = [k for k in keys if k not in out]
    if rest:
        for viewer_id, name in (
            await session.execute(select(Viewer.id, Viewer.name).where(Viewer.id.in_(rest)))
        ).all():
            out[viewer_id] = PromoterName(name, "guest", None, None)
    return out


def customer_name(customer: Customer) -> str:
    """What to call a customer: the name they last joined with, else their masked phone."""
    if customer.name:
        return customer.name
    if customer.phone:
        return masked(customer.phone)
    return "微信用户"


async def report(
    session: AsyncSession,
    host_id: str,
    *,
    now_ms: int,
    after_sale_days: float,
    from_ms: int | None,
    to_ms: int | None,
) -> list[dict[str, Any]]:
    """The commission report: one line per promoter with ledger rows in the period, largest net first."""
    by_key = await figures(
        session, host_id, now_ms=now_ms, after_sale_days=after_sale_days, from_ms=from_ms, to_ms=to_ms
    )
    who = await names(session, host_id, list(by_key))
    lines: list[dict[str, Any]] = []
    for key, figs in by_key.items():
        name = who.get(key)
        lines.append(
            {
                "promoter_id": key,
                "name": name.name if name else key,
                "kind": name.kind if name else "guest",
                "leader_id": name.leader_id if name else None,
                **figs,
            }
        )
    lines.sort(key=lambda line: (-int(line["net"]), str(line["promoter_id"])))
    return lines


async def pay_out(
    session: AsyncSession,
    host_id: str,
    promoter_id: str,
    *,
    up_to_ms: int,
    now_ms: int,
    after_sale_days: float,
) -> tuple[Payout, bool]:
    """Pay the promoter every unpaid row of their orders paid up to ``up_to_ms`` and past their after-sale
    window: ``(payout, created)``; an earlier payout
    of the same promoter and instant is returned as it is (``created`` false). ``NothingOwed`` (and nothing
    written) when there is nothing to pay."""
    existing = await _payout(session, host_id, promoter_id, up_to_ms)
    if existing is not None:
        return existing, False
    payout_id = new_id("po")
    inserted = await session.execute(
        insert_ignoring_conflicts(session, Payout)
        .values(
            id=payout_id,
            host_id=host_id,
            promoter_id=promoter_id,
            amount=0,
            rows=0,
            up_to_ms=up_to_ms,
            created_ms=now_ms,
        )
        .returning(Payout.id)
    )
    if inserted.first() is None:  # the same request, concurrently: it committed first
        again = await _payout(session, host_id, promoter_id, up_to_ms)
        assert again is not None
        return again, False
    # By order, never by row: an order past its window has all the rows it will ever have (a later refund
    # claws nothing back), so its accrual and clawbacks are paid together, whenever each was written.
    payable_orders = select(Order.id).where(
        Order.paid_ms <= min(up_to_ms, payable_paid_before(now_ms, after_sale_days))
    )
    marked = await session.execute(
        update(Commission)
        .where(
            Commission.host_id == host_id,
            of_promoter(promoter_id),
            Commission.payout_id.is_(None),
            Commission.order_id.in_(payable_orders),
        )
        .values(payout_id=payout_id)
        .returning(Commission.amount)
        .execution_options(synchronize_session=False)
    )
    amounts = [int(a) for a in marked.scalars().all()]
    total = sum(amounts)
    if not amounts or total <= 0:
        raise NothingOwed(
            "Nothing to pay this promoter: no unpaid commission on orders past their after-sale window."
        )
    await session.execute(
        update(Payout).where(Payout.id == payout_id).values(amount=total, rows=len(amounts))
    )
    payout = await session.get(Payout, payout_id)
    assert payout is not None
    await session.refresh(payout)
    return payout, True


async def _payout(session: AsyncSession, host_id: str, promoter_id: str, up_to_ms: int) -> Payout | None:
    found = await session.execute(
        select(Payout).where(
            Payout.host_id == host_id, Payout.promoter_id == promoter_id, Payout.up_to_ms == up_to_ms
        )
    )
    return found.scalar_one_or_none()


def payout_json(payout: Payout, name: PromoterName | None) -> dict[str, Any]:
    return {
        "id": payout.id,
        "promoter_id": payout.promoter_id,
        "name": name.name if name else payout.promoter_id,
        "kind": name.kind if name else "guest",
        "amount": payout.amount,
        "rows": payout.rows,
        "up_to": iso(payout.up_to_ms),
        "created_at": iso(payout.created_ms),
    }


async def payouts(session: AsyncSession, host_id: str, *, limit: int = 500) -> list[Payout]:
    found = await session.execute(
        select(Payout)
        .where(Payout.host_id == host_id)
        .order_by(Payout.created_ms.desc(), Payout.id.desc())
        .limit(limit)
    )
    return list(found.scalars())


async def payout_items(session: AsyncSession, payout_id: str) -> list[dict[str, Any]]:
    found = await session.execute(
        select(Commission)
        .where(Commission.payout_id == payout_id)
        .order_by(Commission.created_ms, Commission.id)
    )
    return [
        {
            "commission_id": c.id,
            "order_id": c.order_id,
            "room_id": c.room_id,
            "kind": c.kind,
            "amount": c.amount,
            "created_at": iso(c.created_ms),
        }
        for c in found.scalars()
    ]
