"""The buy path and the order lifecycle after it: reserve in Redis, commit in SQL, cancel, refund (shipping
and after-sale are ``shop.fulfilment`` and ``shop.after_sale``, which refund through ``refund_in``).

Ordering rules that keep the invariants:
- a ``201`` is sent only after the order row is committed (the writer's future resolves after COMMIT);
- a reservation whose SQL write failed is released only once SQL positively shows no row; otherwise the
  orphan sweeper returns it after the grace period, and a retry with the same key adopts it meanwhile;
- status changes are guarded SQL updates first, Redis second: a crash between them leaves Redis holding
  units that SQL says are free (undersell, healed by the sweeper or reconcile), never the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.events import Events
from base.ids import new_id
from base.limits import Limit, rate_of
from base.metrics import Metrics
from base.settings import Settings
from identity.guards import Caller, require_buyer, require_room_owner
from identity.tokens import HostIdentity, ViewerIdentity
from shop import commissions
from shop.errors import (
    IdempotencyMismatch,
    InvalidQuantity,
    InventoryUnavailable,
    OrderStateConflict,
    UnknownResource,
)
from shop.inventory.records import ReserveResult
from shop.inventory.rules import SOLD, OrderRates, OrderStatus
from shop.inventory.sale_types import SaleType, sale_type_of
from shop.inventory.store import Inventory
from shop.models import Refund
from shop.orders import repo
from shop.orders.order import Order
from shop.orders.writer import IdempotencyTaken, OrderWriter, row_of
from shop.payments.refunds import Refunder
from shop.reconcile import Reconciler
from shop.settlement_rules import plan_refund
from shop.views import order_json

log = logging.getLogger("livecart.orders")


@dataclass(frozen=True, slots=True)
class RefundDone:
    """A refund recorded by ``OrderService.refund_in``: the order after it, and the refund's id."""

    order: Order
    refund_id: str
    #: It completed the order (now ``refunded``: its units leave Redis, back on sale with ``restock``).
    completes: bool
    restock: bool


MAX_IDEMPOTENCY_KEY = 255
BUSY_RETRIES = 50  # a fenced sale (reconcile in progress) is retried for up to ~1 s


def order_rates(settings: Settings) -> OrderRates:
    """The buy's rate gate from ``LIVECART_LIMIT_ORDERS_PER_CUSTOMER`` and ``_PER_IP``, scaled."""
    buyer = rate_of(settings, Limit.ORDERS_PER_CUSTOMER)
    address = rate_of(settings, Limit.ORDERS_PER_IP)
    return OrderRates(buyer.amount, buyer.get_expiry() * 1000, address.amount, address.get_expiry() * 1000)


class OrderService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        writer: OrderWriter,
        reconciler: Reconciler,
        clock: Clock,
        metrics: Metrics,
        events: Events,
        refunder: Refunder,
    ) -> None:
        self.settings = settings
        #: sends refunds to the payment providers, and retries them until they are taken
        self.refunder = refunder
        self.sessions = sessions
        self.inventory = inventory
        self.writer = writer
        self.reconciler = reconciler
        self.clock = clock
        self.metrics = metrics
        #: told each order a buyer should see change (the realtime hub sends it to them alone)
        self.events = events
        # The buy counter of each result, looked up once: ``labels()`` costs more than the count itself.
        self._buys: dict[str, Counter] = {}
        self.rates = order_rates(settings)

    # -- buy -------------------------------------------------------------------------------------------

    async def place(
        self,
        viewer: ViewerIdentity,
        card_id: str,
        *,
        quantity: int,
        idempotency_key: str,
        address: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Reserve and persist an order. Returns ``(order, created)``; ``created`` is False for a replay.
        ``address`` is the client's, which the buy's rate gate counts besides the customer."""
        started = time.perf_counter()
        result = "error"
        try:
            order, created, result = await self._place(viewer, card_id, quantity, idempotency_key, address)
            if created:
                await self.tell(order)
            return order, created
        except Exception as exc:
            result = getattr(exc, "code", "error")
            raise
        finally:
            counter = self._buys.get(result)
            if counter is None:
                counter = self._buys[result] = self.metrics.buys.labels(result=result)
            counter.inc()
            self.metrics.buy_seconds.observe(time.perf_counter() - started)

    async def _place(
        self, viewer: ViewerIdentity, card_id: str, quantity: int, key: str, address: str
    ) -> tuple[dict[str, Any], bool, str]:
        if quantity < 1 or quantity > self.settings.max_order_quantity:
            raise InvalidQuantity(f"quantity must be between 1 and {self.settings.max_order_quantity}.")
        sale = sale_type_of(card_id)
        reloaded = False
        for _ in range(BUSY_RETRIES):
            res = await self.inventory.reserve(
                card_id,
                sale=sale,
                buyer_id=viewer.viewer_id,
                room_id=viewer.room_id,
                idempotency_key=key,
                quantity=quantity,
                order_id=new_id("ord"),
                referrer_id=viewer.referrer_id,
                now_ms=self.clock.now_ms(),
                rates=self.rates,
                buyer_key=viewer.buyer_key,
                address=address,
            )
            if res.outcome == "busy":
                await asyncio.sleep(0.02)
                continue
            if res.outcome == "no_sale" and not reloaded:
                # Redis lost this sale (restart without persistence, eviction): rebuild it from SQL.
                reloaded = True
                if not await self.reconciler.reconcile_card(card_id, trigger="missing"):
                    raise UnknownResource("No such card.")
                continue
            return await self._settle(viewer, card_id, sale, res)
        raise InventoryUnavailable("The sale is being rebuilt; retry with the same Idempotency-Key.")

    async def _settle(
        self, viewer: ViewerIdentity, card_id: str, sale: SaleType, res: ReserveResult
    ) -> tuple[dict[str, Any], bool, str]:
        """A reservation becomes a committed order; a refusal, its sale type's error."""
        currency = self.settings.currency
        if res.outcome == "ok":
            assert res.reservation is not None
            order = Order.reserved(card_id, viewer.room_id, res.reservation)
            wrote = await self._persist(order)
            return order_json(order, currency=currency), wrote, "ok"
        if res.outcome == "duplicate":
            assert res.order_id is not None
            async with self.sessions() as session:
                existing = await repo.order(session, res.order_id)
            if existing is not None:
                return order_json(existing, currency=currency), False, "duplicate"
            if res.reservation is None:
                raise InventoryUnavailable(
                    "This order is being settled; retry with the same Idempotency-Key."
                )
            # The first attempt reserved but its row is not known to be committed (a crash, a timeout, or
            # it is being written right now): this retry writes it too. Whichever write lands first is the
            # one whose answer is the 201; the other is a replay (200).
            order = Order.reserved(card_id, viewer.room_id, res.reservation)
            wrote = await self._persist(order)
            return order_json(order, currency=currency), wrote, "adopted" if wrote else "duplicate"
        raise sale.refusal(res)

    async def _persist(self, order: Order) -> bool:
        """Commit the row of a reservation; ``True`` if this call wrote it (see ``OrderWriter.insert``)."""
        try:
            return await self.writer.insert(row_of(order))
        except IdempotencyTaken:
            await self.inventory.release(order.card_id, order.id, mode="abort", now_ms=self.clock.now_ms())
            raise IdempotencyMismatch(
                "This Idempotency-Key already belongs to another order of yours; use a new key."
            ) from None
        except Exception as exc:
            log.warning("order %s not committed: %s", order.id, exc)
            await self._release_unwritten(order.card_id, order.id)
            raise InventoryUnavailable(
                "The order could not be saved; nothing was charged. Retry with the same Idempotency-Key."
            ) from exc

    async def _release_unwritten(self, card_id: str, order_id: str) -> None:
        try:
            async with self.sessions() as session:
                if await repo.order(session, order_id) is not None:
                    return
            await self.inventory.release(card_id, order_id, mode="abort", now_ms=self.clock.now_ms())
        except Exception as exc:  # SQL or Redis still down: the orphan sweeper releases it after the grace
            log.warning("reservation %s left to the orphan sweeper: %s", order_id, exc)

    async def tell(self, order: dict[str, Any]) -> dict[str, Any]:
        """Send the order to its buyer's sockets (a notice: it never fails the operation)."""
        await self.events.order_changed(order)
        return order

    # -- after the buy ---------------------------------------------------------------------------------

    async def get(self, who: Caller, order_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            found = await repo.order_with_room(session, order_id)
        if found is None:
            raise UnknownResource("No such order.")
        order, room = found
        if isinstance(who, ViewerIdentity):
            require_buyer(who, order.buyer_id)
        else:
            require_room_owner(who, room.host_id, what="order")
        return order_json(order, currency=self.settings.currency)

    async def cancel(self, viewer: ViewerIdentity, order_id: str) -> dict[str, Any]:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            changed = await repo.transition(
                session,
                order_id,
                to=OrderStatus.CANCELLED,
                allowed=[OrderStatus.RESERVED],
                buyer_id=viewer.viewer_id,
                closed_ms=now,
            )
            if changed is None:
                self._explain(
                    await repo.order(session, order_id), viewer, "only a reserved order can be cancelled"
                )
        await self.inventory.release(changed.card_id, order_id, mode="cancel", now_ms=now)
        return await self.tell(order_json(changed, currency=self.settings.currency))

    async def refund(
        self,
        host: HostIdentity,
        order_id: str,
        *,
        restock: bool,
        amount: int | None = None,
        reason: str = "host_refund",
    ) -> dict[str, Any]:
        """Refund ``amount`` (``None``: all that is left) of a sold order, as its host: see ``refund_in``."""
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            found = await repo.order_with_room(session, order_id)
            if found is None:
                raise UnknownResource("No such order.")
            order, room = found
            require_room_owner(host, room.host_id, what="order")
            done = await self.refund_in(
                session, order, restock=restock, amount=amount, reason=reason, now_ms=now
            )
        return await self.after_refund(done)

    async def refund_in(
        self,
        session: AsyncSession,
        order: Order,
        *,
        restock: bool,
        amount: int | None,
        reason: str,
        now_ms: int,
    ) -> RefundDone:
        """Record a refund of a sold order in the caller's transaction (whoever may refund it was checked).

        The refund that completes it makes it ``refunded``, with a note taken in Redis before the commit
        that lets the sweeper release its units if this process never does (``Inventory.begin_refund``); a
        partial refund leaves its status alone. Either claws back its share of the commission
        (``commissions.claw_back``) and writes a ``pending`` refund row naming the payment the money came
        from: ``after_refund`` (after the commit) sends it to the provider, and the refunder retries it
        until the provider takes it (``shop.payments.refunds``)."""
        if order.status not in SOLD:
            raise OrderStateConflict(f"Only a paid order can be refunded; this one is {order.status}.")
        plan = plan_refund(
            order_amount=order.amount, refunded=order.refunded_amount, requested=amount, restock=restock
        )
        if plan.completes:
            await self.inventory.begin_refund(order.card_id, order.id, now_ms=now_ms)
            changed = await repo.transition(
                session,
                order.id,
                to=OrderStatus.REFUNDED,
                allowed=list(SOLD),
                refunded_from=order.refunded_amount,
                closed_ms=now_ms,
                restocked=restock,
                refund_reason=reason[:40],
                refunded_amount=order.amount,
            )
        else:
            changed = await repo.refund_part(
                session, order.id, refunded_from=order.refunded_amount, amount=plan.amount
            )
        if changed is None:  # refunded meanwhile by another request (whose note the sweeper settles)
            raise OrderStateConflict(
                "This order was refunded meanwhile by another request; reload it and try again."
            )
        payment = await repo.taken_payment(session, order.id)
        refund_id = new_id("rfd")
        session.add(
            Refund(
                id=refund_id,
                order_id=order.id,
                payment_id=payment.id if payment else None,
                kind="order",
                amount=plan.amount,
                restocked=restock and plan.completes,
                reason=reason,
                # An order paid without a payment row (v1 data) has nothing to send anywhere.
                status="pending" if payment else "succeeded",
                attempts=0,
                next_try_ms=now_ms,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
        )
        await session.flush()
        await commissions.claw_back(
            session, changed, refund_id=refund_id, terms=commissions.Terms.of(self.settings), now_ms=now_ms
        )
        if plan.completes:
            await repo.refund_payments(session, order.id, now_ms=now_ms)
        return RefundDone(order=changed, refund_id=refund_id, completes=plan.completes, restock=restock)

    async def after_refund(self, done: RefundDone) -> dict[str, Any]:
        """What follows a committed refund: its units in Redis, the provider's refund, the buyer's frame."""
        if done.completes:
            await self.inventory.refund(done.order.card_id, done.order.id, restock=done.restock)
        await self.refunder.send(done.refund_id)
        return await self.tell(order_json(done.order, currency=self.settings.currency))

    @staticmethod
    def _explain(current: Order | None, viewer: ViewerIdentity, rule: str) -> NoReturn:
        if current is None:
            raise UnknownResource("No such order.")
        require_buyer(viewer, current.buyer_id)
        raise OrderStateConflict(f"This order is {current.status}; {rule}.")
