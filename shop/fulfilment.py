"""Fulfilment (SPEC §10): a paid order on its way to its buyer — shipped (发货), delivered, received
(确认收货).

    paid ──ship──▶ shipped ──deliver──▶ delivered ──receive──▶ completed
     │              │ ▲                               ▲
     │              └─┘ ship again: carrier and        │
     │                  tracking number corrected      │
     │              shipped ──────────receive──────────┤
     └──deliver (a product that does not ship)──▶ delivered
    shipped | delivered ──after LIVECART_AUTO_COMPLETE_DAYS──▶ completed (the sweeper)

A product that does not ship (``Product.shippable`` false: a voucher, a service) goes from ``paid`` straight
to ``delivered``. An order completes by itself ``auto_complete_days`` after it was shipped (or delivered,
when it never shipped) if its buyer has not confirmed receipt.

Every one of these statuses is sold (``rules.SOLD``): the money and the units stay as a paid order's. A
partial refund leaves the fulfilment status alone; the refund that completes the order makes it
``refunded`` whatever its fulfilment (``OrderService.refund_in``).

The rules (which statuses a step starts from, when an order completes by itself, who the buyer is) are pure
and come first. The service applies each step as one guarded SQL update (``repo.transition`` with
``allowed``): of two racing steps, or a step racing a refund, one changes the order and the other finds it
changed (409). Every change is then told to the buyer (an ``order`` frame).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.events import Events
from base.settings import Settings
from identity.errors import NotPermitted
from identity.guards import require_room_owner
from identity.tokens import CustomerIdentity, HostIdentity, ViewerIdentity
from live.models import Room, Viewer
from shop.errors import OrderStateConflict, UnknownResource
from shop.inventory.rules import OrderStatus
from shop.models import Card, Product
from shop.models import Order as OrderRow
from shop.orders import repo
from shop.orders.order import Order
from shop.views import order_json

DAY_MS = 24 * 3600 * 1000

#: Who may act as an order's buyer: their viewer of the order's room, or the customer that viewer is.
BuyerIdentity = ViewerIdentity | CustomerIdentity


# -- the rules (pure) ---------------------------------------------------------------------------------------


class Step(enum.StrEnum):
    SHIP = "ship"  #: the host hands it to a carrier (again: corrects the carrier and tracking number)
    DELIVER = "deliver"  #: the host says it arrived (or, for what does not ship, that it was provided)
    RECEIVE = "receive"  #: the buyer confirms receipt
    AUTO_COMPLETE = "auto_complete"  #: nobody confirmed: the sweeper completes it


#: Where each step takes the order.
TARGET = {
    Step.SHIP: OrderStatus.SHIPPED,
    Step.DELIVER: OrderStatus.DELIVERED,
    Step.RECEIVE: OrderStatus.COMPLETED,
    Step.AUTO_COMPLETE: OrderStatus.COMPLETED,
}


def sources(step: Step, *, shippable: bool) -> tuple[OrderStatus, ...]:
    """The statuses ``step`` may start from (shipping a ``shipped`` order corrects its tracking)."""
    if step is Step.SHIP:
        return (OrderStatus.PAID, OrderStatus.SHIPPED)
    if step is Step.DELIVER:
        return (OrderStatus.SHIPPED,) if shippable else (OrderStatus.PAID, OrderStatus.SHIPPED)
    return (OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def refusal(step: Step, status: str, *, shippable: bool) -> str:
    """Why ``step`` cannot start from ``status`` (the 409's sentence)."""
    if step is Step.SHIP:
        rule = "only a paid order can be shipped (a shipped one again, to correct its tracking)"
    elif step is Step.DELIVER:
        rule = (
            "only a shipped order can be marked delivered"
            if shippable
            else "only a paid or shipped order can be marked delivered"
        )
    else:
        rule = "only a shipped or delivered order can be received"
    return f"This order is {status}; {rule}."


def auto_complete_cutoff(now_ms: int, days: float) -> int:
    """Orders shipped (or, never shipped, delivered) at or before this instant complete by themselves now."""
    return now_ms - int(days * DAY_MS)


def completes_by_itself(order: Order, *, now_ms: int, days: float) -> bool:
    """The sweeper completes this order now (what ``Fulfilment.auto_complete``'s SQL selects)."""
    if order.status not in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        return False
    started = order.shipped_ms if order.shipped_ms is not None else order.delivered_ms
    return started is not None and started <= auto_complete_cutoff(now_ms, days)


def require_order_buyer(
    who: BuyerIdentity, *, buyer_id: str, buyer_customer_id: str | None, host_id: str
) -> None:
    """``who`` is the order's buyer: the viewer who bought, or the customer that viewer is (signed in at the
    order's shop). Anyone else: 403, as for another buyer's order elsewhere."""
    if isinstance(who, ViewerIdentity):
        if who.viewer_id == buyer_id:
            return
    elif buyer_customer_id is not None and who.customer_id == buyer_customer_id and who.host_id == host_id:
        return
    raise NotPermitted("This is not your order.")


def buyer_key(who: BuyerIdentity) -> str:
    """What a buyer's rate limits count by: the customer, else (a guest) the viewer."""
    if isinstance(who, CustomerIdentity):
        return who.customer_id
    return who.customer_id or who.viewer_id


# -- reading an order with what decides who may act on it ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderContext:
    order: Order
    #: The host of the order's room: who ships it, delivers it and decides its after-sale requests.
    host_id: str
    #: The customer the buyer's viewer is (``None``: a guest of a v1 room).
    buyer_customer_id: str | None
    #: The product ships (``False``: it goes from paid straight to delivered).
    shippable: bool

    def require(self, who: HostIdentity | BuyerIdentity) -> None:
        """The order's host, or its buyer (403 otherwise)."""
        if isinstance(who, HostIdentity):
            require_room_owner(who, self.host_id, what="order")
        else:
            require_order_buyer(
                who,
                buyer_id=self.order.buyer_id,
                buyer_customer_id=self.buyer_customer_id,
                host_id=self.host_id,
            )


async def order_context(session: AsyncSession, order_id: str) -> OrderContext | None:
    stmt = (
        select(OrderRow, Room.host_id, Viewer.customer_id, Product.shippable)
        .join(Room, Room.id == OrderRow.room_id)
        .join(Viewer, Viewer.id == OrderRow.buyer_id)
        .join(Card, Card.id == OrderRow.card_id)
        .join(Product, Product.id == Card.product_id)
        .where(OrderRow.id == order_id)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    return OrderContext(Order.of_row(row[0]), row[1], row[2], bool(row[3]))


async def complete_overdue(session: AsyncSession, *, now_ms: int, days: float, limit: int) -> list[Order]:
    """Complete the orders ``completes_by_itself`` says are due; returns them (now ``completed``)."""
    open_ = [OrderStatus.SHIPPED.value, OrderStatus.DELIVERED.value]
    due = (
        select(OrderRow.id)
        .where(
            OrderRow.status.in_(open_),
            func.coalesce(OrderRow.shipped_ms, OrderRow.delivered_ms) <= auto_complete_cutoff(now_ms, days),
        )
        .limit(limit)
        .scalar_subquery()
    )
    stmt = (
        update(OrderRow)
        .where(OrderRow.id.in_(due), OrderRow.status.in_(open_))
        .values(status=OrderStatus.COMPLETED.value, completed_ms=now_ms)
        .returning(OrderRow)
        .execution_options(synchronize_session=False)
    )
    return [Order.of_row(row) for row in (await session.execute(stmt)).scalars().all()]


# -- the service --------------------------------------------------------------------------------------------


class Fulfilment:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        events: Events,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        #: told every order changed here (the realtime hub sends it to its buyer alone)
        self.events = events

    async def context(self, order_id: str) -> OrderContext:
        async with self.sessions() as session:
            found = await order_context(session, order_id)
        if found is None:
            raise UnknownResource("No such order.")
        return found

    async def ship(
        self, host: HostIdentity, order_id: str, *, tracking_number: str, carrier: str | None = None
    ) -> dict[str, Any]:
        """``paid → shipped`` with its carrier and tracking number; a ``shipped`` order gets them corrected
        (its ``shipped_ms`` stays: the auto-complete clock is not reset). ``carrier`` ``None``: left as
        it is (none on a first shipment)."""
        ctx = await self.context(order_id)
        ctx.require(host)
        values: dict[str, Any] = {"tracking_number": tracking_number}
        if carrier is not None:
            values["carrier"] = carrier
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            changed = await repo.transition(
                session,
                order_id,
                to=OrderStatus.SHIPPED,
                allowed=[OrderStatus.PAID],
                shipped_ms=now,
                **values,
            )
            if changed is None:
                changed = await repo.transition(
                    session, order_id, to=OrderStatus.SHIPPED, allowed=[OrderStatus.SHIPPED], **values
                )
            if changed is None:
                await self._refuse(session, Step.SHIP, order_id, shippable=ctx.shippable)
        return await self._tell(changed)

    async def deliver(self, host: HostIdentity, order_id: str) -> dict[str, Any]:
        """``shipped → delivered``, or ``paid → delivered`` for a product that does not ship."""
        ctx = await self.context(order_id)
        ctx.require(host)
        return await self._step(Step.DELIVER, ctx, delivered_ms=self.clock.now_ms())

    async def receive(self, buyer: BuyerIdentity, order_id: str) -> dict[str, Any]:
        """The buyer confirms receipt: ``shipped | delivered → completed``."""
        ctx = await self.context(order_id)
        ctx.require(buyer)
        return await self._step(Step.RECEIVE, ctx, completed_ms=self.clock.now_ms())

    async def auto_complete(self, *, limit: int = 500) -> int:
        """The sweeper's part: complete the orders shipped (or delivered) ``auto_complete_days`` ago that
        nobody confirmed, and tell their buyers. Returns how many."""
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            done = await complete_overdue(
                session, now_ms=now, days=self.settings.auto_complete_days, limit=limit
            )
        for order in done:
            await self._tell(order)
        return len(done)

    async def _step(self, step: Step, ctx: OrderContext, **stamps: Any) -> dict[str, Any]:
        async with self.sessions() as session, session.begin():
            changed = await repo.transition(
                session,
                ctx.order.id,
                to=TARGET[step],
                allowed=sources(step, shippable=ctx.shippable),
                **stamps,
            )
            if changed is None:
                await self._refuse(session, step, ctx.order.id, shippable=ctx.shippable)
        return await self._tell(changed)

    @staticmethod
    async def _refuse(session: AsyncSession, step: Step, order_id: str, *, shippable: bool) -> NoReturn:
        current = await repo.order(session, order_id)
        if current is None:
            raise UnknownResource("No such order.")
        raise OrderStateConflict(refusal(step, current.status, shippable=shippable))

    async def _tell(self, order: Order) -> dict[str, Any]:
        body = order_json(order, currency=self.settings.currency)
        await self.events.order_changed(body)
        return body
