"""After-sale (售后, SPEC §10): a buyer asks for their money back, the host decides, the refund runs.

    requested ──approve (the refund runs: full or partial, restock or not)──▶ approved
        ├──────reject (with the host's reason)──────────────────────────────▶ rejected
        └──────withdraw (the buyer)─────────────────────────────────────────▶ withdrawn

A request is ``refund`` (仅退款) or ``return_refund`` (退货退款: only once the order shipped), with a reason
and optionally an amount. It is refused when the order is not sold (``rules.SOLD``), outside its
after-sale window (``LIVECART_AFTER_SALE_DAYS`` from payment, ``settlement_rules.inside_after_sale``), has
nothing left to refund, or asks more than is left; an order has one open (``requested``) request at a
time — a unique partial index (``uq_after_sales_open``) decides between two sent at once.

Approval is one transaction: the request is claimed (a guarded update: still ``requested``), the order is
refunded in it (``OrderService.refund_in``: the refund row, the commission clawed back in proportion, the
order ``refunded`` when nothing is left) and the request names its refund; after the commit
``OrderService.after_refund`` moves the units in Redis, sends the refund to the provider and tells the
buyer. Two approvals at once refund once: the second finds the request decided.

A refund the provider refused or never answered stays ``pending`` with ``last_error`` and is retried by the
sweeper (``shop.payments.refunds``); the host sees every refund of the shop with where it stands and may send
a pending one again at once (``retry_refund``).

Who: the buyer asks and withdraws — their viewer token for the order's room, or as the customer that viewer
is (``fulfilment.require_order_buyer``); the host of the order's room decides and reads the shop's lists.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock, iso
from base.ids import new_id
from base.settings import Settings
from identity.guards import require_room_owner
from identity.tokens import HostIdentity
from live.models import Room
from shop.errors import (
    AfterSaleRefused,
    InvalidRefund,
    RefundStateConflict,
    UnknownResource,
)
from shop.fulfilment import BuyerIdentity, OrderContext, order_context
from shop.inventory.rules import SOLD, OrderStatus
from shop.models import AfterSale, Refund
from shop.models import Order as OrderRow
from shop.orders import repo
from shop.orders.order import Order
from shop.orders.service import OrderService
from shop.settlement_rules import inside_after_sale
from shop.views import address_json

#: The most rows a list answers (newest first).
LIST_LIMIT = 200


class AfterSaleStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


# -- the rules (pure) ---------------------------------------------------------------------------------------


def check_request(
    order: Order, *, kind: str, amount: int | None, now_ms: int, after_sale_days: float
) -> None:
    """Raise why this order cannot have this request now (``AfterSaleRefused``, ``InvalidRefund``)."""
    if order.status not in SOLD:
        raise AfterSaleRefused(f"This order is {order.status}; only a paid order has after-sale.")
    if not inside_after_sale(order.paid_ms, now_ms=now_ms, days=after_sale_days):
        raise AfterSaleRefused(
            f"The after-sale window of this order ({after_sale_days:g} days after payment) is over."
        )
    left = order.amount - order.refunded_amount
    if left <= 0:
        raise AfterSaleRefused("Nothing is left to refund of this order.")
    if kind == "return_refund" and order.status == OrderStatus.PAID:
        raise AfterSaleRefused("This order has not shipped, so there is nothing to return: ask for a refund.")
    if amount is not None and amount > left:
        raise InvalidRefund(f"amount: at most what is left to refund of this order ({left}), in minor units.")


def not_open(status: str) -> AfterSaleRefused:
    return AfterSaleRefused(
        f"This after-sale request is {status}; only a requested one can be decided or withdrawn.",
        code="after_sale_not_open",
    )


# -- JSON ---------------------------------------------------------------------------------------------------


def refund_summary_json(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "amount": r.amount,
        "status": r.status,
        "attempts": r.attempts,
        "last_error": r.last_error,
    }


def after_sale_json(a: AfterSale, refund: Refund | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "order_id": a.order_id,
        "kind": a.kind,
        "reason": a.reason,
        "amount": a.amount,
        "status": a.status,
        "host_note": a.host_note,
        "refund": refund_summary_json(refund) if refund is not None else None,
        "created_at": iso(a.created_ms),
        "decided_at": iso(a.decided_ms),
    }


def order_summary_json(o: Order) -> dict[str, Any]:
    return {
        "id": o.id,
        "room_id": o.room_id,
        "amount": o.amount,
        "refunded_amount": o.refunded_amount,
        "status": o.status,
        "address": address_json(o.address) if o.address else None,
    }


def refund_json(r: Refund) -> dict[str, Any]:
    return {
        **refund_summary_json(r),
        "order_id": r.order_id,
        "kind": r.kind,
        "next_try_at": iso(r.next_try_ms),
        "created_at": iso(r.created_ms),
    }


# -- SQL ----------------------------------------------------------------------------------------------------


def _with_refund() -> Select[AfterSale, Refund]:
    return select(AfterSale, Refund).outerjoin(Refund, Refund.id == AfterSale.refund_id)


async def _one(session: AsyncSession, after_sale_id: str) -> tuple[AfterSale, Refund | None] | None:
    row = (await session.execute(_with_refund().where(AfterSale.id == after_sale_id))).first()
    return (row[0], row[1]) if row else None


async def _claim(session: AsyncSession, after_sale_id: str, **values: Any) -> AfterSale | None:
    """Decide or withdraw a request that is still ``requested`` (``None``: it is not, or not at all)."""
    stmt = (
        update(AfterSale)
        .where(AfterSale.id == after_sale_id, AfterSale.status == AfterSaleStatus.REQUESTED.value)
        .values(**values)
        .returning(AfterSale)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# -- the service --------------------------------------------------------------------------------------------


class AfterSales:
    def __init__(
        self,
        *,
        orders: OrderService,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
    ) -> None:
        #: refunds an approved request (``refund_in``, ``after_refund``) and sends refunds (``refunder``)
        self.orders = orders
        self.settings = settings
        self.sessions = sessions
        self.clock = clock

    # -- the buyer's ----------------------------------------------------------------------------------------

    async def request(
        self, buyer: BuyerIdentity, order_id: str, *, kind: str, reason: str, amount: int | None
    ) -> dict[str, Any]:
        """File a request (``requested``). Checked once before writing (a clear refusal), and again once
        the row is written, in its transaction: an order refunded meanwhile is refused all the same."""
        days = self.settings.after_sale_days
        async with self.sessions() as session:
            ctx = await order_context(session, order_id)
            if ctx is None:
                raise UnknownResource("No such order.")
            ctx.require(buyer)
            check_request(
                ctx.order, kind=kind, amount=amount, now_ms=self.clock.now_ms(), after_sale_days=days
            )
            if await self._open_one(session, order_id):
                raise self._already_open()
        now = self.clock.now_ms()
        row = AfterSale(
            id=new_id("as"),
            order_id=order_id,
            host_id=ctx.host_id,
            kind=kind,
            reason=reason,
            amount=amount,
            status=AfterSaleStatus.REQUESTED.value,
            host_note=None,
            refund_id=None,
            created_ms=now,
            decided_ms=None,
        )
        try:
            async with self.sessions() as session, session.begin():
                session.add(row)
                await session.flush()  # the write first: SQLite's lock, PostgreSQL's unique index
                order = await repo.order(session, order_id)
                assert order is not None  # the row references it
                check_request(order, kind=kind, amount=amount, now_ms=now, after_sale_days=days)
        except IntegrityError:  # the other of two sent at once
            raise self._already_open() from None
        return after_sale_json(row, None)

    async def withdraw(self, buyer: BuyerIdentity, after_sale_id: str) -> dict[str, Any]:
        found = await self._find(after_sale_id)
        found[1].require(buyer)
        async with self.sessions() as session, session.begin():
            changed = await _claim(
                session,
                after_sale_id,
                status=AfterSaleStatus.WITHDRAWN.value,
                decided_ms=self.clock.now_ms(),
            )
            if changed is None:
                raise not_open(await self._status(session, after_sale_id))
        return after_sale_json(changed, None)

    # -- the buyer's or the host's --------------------------------------------------------------------------

    async def of_order(self, who: HostIdentity | BuyerIdentity, order_id: str) -> list[dict[str, Any]]:
        """Every request of the order, oldest first."""
        async with self.sessions() as session:
            ctx = await order_context(session, order_id)
            if ctx is None:
                raise UnknownResource("No such order.")
            ctx.require(who)
            rows = await session.execute(
                _with_refund()
                .where(AfterSale.order_id == order_id)
                .order_by(AfterSale.created_ms, AfterSale.id)
            )
            return [after_sale_json(a, r) for a, r in rows.all()]

    # -- the host's -----------------------------------------------------------------------------------------

    async def of_shop(self, host: HostIdentity, *, status: str | None) -> list[dict[str, Any]]:
        """The shop's requests, newest first (at most ``LIST_LIMIT``), each with its order."""
        stmt = (
            select(AfterSale, Refund, OrderRow)
            .outerjoin(Refund, Refund.id == AfterSale.refund_id)
            .join(OrderRow, OrderRow.id == AfterSale.order_id)
            .where(AfterSale.host_id == host.host_id)
        )
        if status is not None:
            stmt = stmt.where(AfterSale.status == status)
        stmt = stmt.order_by(AfterSale.created_ms.desc(), AfterSale.id.desc()).limit(LIST_LIMIT)
        async with self.sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [{**after_sale_json(a, r), "order": order_summary_json(Order.of_row(o))} for a, r, o in rows]

    async def approve(
        self,
        host: HostIdentity,
        after_sale_id: str,
        *,
        amount: int | None,
        restock: bool,
        note: str | None,
    ) -> dict[str, Any]:
        """Approve and refund, in one transaction (see the module's docstring). ``amount`` ``None``: what
        the buyer asked, else all that is left."""
        request, _ = await self._find(after_sale_id)
        require_room_owner(host, request.host_id, what="after-sale request")
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            claimed = await _claim(
                session,
                after_sale_id,
                status=AfterSaleStatus.APPROVED.value,
                decided_ms=now,
                host_note=note,
            )
            if claimed is None:
                raise not_open(await self._status(session, after_sale_id))
            order = await repo.order(session, claimed.order_id)
            assert order is not None  # the request references it
            done = await self.orders.refund_in(
                session,
                order,
                restock=restock,
                amount=amount if amount is not None else claimed.amount,
                reason="after_sale",
                now_ms=now,
            )
            await session.execute(
                update(AfterSale).where(AfterSale.id == after_sale_id).values(refund_id=done.refund_id)
            )
        await self.orders.after_refund(done)
        async with self.sessions() as session:
            approved = await _one(session, after_sale_id)
        assert approved is not None
        return after_sale_json(*approved)

    async def reject(self, host: HostIdentity, after_sale_id: str, *, reason: str) -> dict[str, Any]:
        request, _ = await self._find(after_sale_id)
        require_room_owner(host, request.host_id, what="after-sale request")
        async with self.sessions() as session, session.begin():
            changed = await _claim(
                session,
                after_sale_id,
                status=AfterSaleStatus.REJECTED.value,
                decided_ms=self.clock.now_ms(),
                host_note=reason,
            )
            if changed is None:
                raise not_open(await self._status(session, after_sale_id))
        return after_sale_json(changed, None)

    async def refunds(self, host: HostIdentity, *, status: str | None) -> list[dict[str, Any]]:
        """The shop's refunds, newest first (at most ``LIST_LIMIT``): where the provider is with each."""
        stmt = (
            select(Refund)
            .join(OrderRow, OrderRow.id == Refund.order_id)
            .join(Room, Room.id == OrderRow.room_id)
            .where(Room.host_id == host.host_id)
        )
        if status is not None:
            stmt = stmt.where(Refund.status == status)
        stmt = stmt.order_by(Refund.created_ms.desc(), Refund.id.desc()).limit(LIST_LIMIT)
        async with self.sessions() as session:
            return [refund_json(r) for r in (await session.execute(stmt)).scalars()]

    async def retry_refund(self, host: HostIdentity, refund_id: str) -> dict[str, Any]:
        """Send a ``pending`` refund to its provider now (its next try moved to now); a refund the provider
        took or has (``succeeded``, ``processing``) is not sent again (409)."""
        async with self.sessions() as session:
            found = (
                await session.execute(
                    select(Refund, Room.host_id)
                    .join(OrderRow, OrderRow.id == Refund.order_id)
                    .join(Room, Room.id == OrderRow.room_id)
                    .where(Refund.id == refund_id)
                )
            ).first()
        if found is None:
            raise UnknownResource("No such refund.")
        require_room_owner(host, found[1], what="refund")
        async with self.sessions() as session, session.begin():
            due = await session.execute(
                update(Refund)
                .where(Refund.id == refund_id, Refund.status == "pending")
                .values(next_try_ms=self.clock.now_ms())
                .returning(Refund.id)
            )
            if due.scalar_one_or_none() is None:
                status = await session.scalar(select(Refund.status).where(Refund.id == refund_id))
                raise RefundStateConflict(
                    f"This refund is {status}: the provider has it; it is not sent again."
                )
        await self.orders.refunder.send(refund_id)
        async with self.sessions() as session:
            refund = await session.get(Refund, refund_id)
        assert refund is not None
        return refund_json(refund)

    # -- helpers --------------------------------------------------------------------------------------------

    async def _find(self, after_sale_id: str) -> tuple[AfterSale, OrderContext]:
        async with self.sessions() as session:
            request = await session.get(AfterSale, after_sale_id)
            ctx = await order_context(session, request.order_id) if request is not None else None
        if request is None or ctx is None:
            raise UnknownResource("No such after-sale request.")
        return request, ctx

    @staticmethod
    async def _open_one(session: AsyncSession, order_id: str) -> bool:
        found = await session.scalar(
            select(AfterSale.id).where(
                AfterSale.order_id == order_id, AfterSale.status == AfterSaleStatus.REQUESTED.value
            )
        )
        return found is not None

    @staticmethod
    async def _status(session: AsyncSession, after_sale_id: str) -> str:
        status = await session.scalar(select(AfterSale.status).where(AfterSale.id == after_sale_id))
        if status is None:
            raise UnknownResource("No such after-sale request.")
        return str(status)

    @staticmethod
    def _already_open() -> AfterSaleRefused:
        return AfterSaleRefused(
            "This order already has an open after-sale request: wait for the host's answer, or withdraw it.",
            code="after_sale_open",
        )
