"""Checkout and payment confirmation.

A webhook event is applied in one transaction that starts by recording its id (a redelivery changes
nothing). A succeeded payment then holds the order's units as paid through ``rereserve`` — which confirms
the reservation if Redis still has it, or takes the units again for a late payment — and only then marks
the order paid; if the units cannot be had, the order and payment are refunded automatically (SPEC
invariant 6). Payment for an order already paid or refunded is refunded as a duplicate.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints, ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.db import insert_ignoring_conflicts
from base.events import Events
from base.http import describe
from base.ids import new_id
from base.metrics import Metrics
from base.settings import Settings
from identity.guards import require_buyer
from identity.tokens import ViewerIdentity
from shop import commissions
from shop.errors import InvalidSignature, InvalidWebhook, OrderStateConflict, UnknownResource
from shop.inventory.rules import OrderStatus, PaymentDecision, decide_payment
from shop.inventory.store import Inventory
from shop.models import Payment, PaymentEvent
from shop.orders import repo
from shop.orders.order import Order
from shop.payments import signing
from shop.reconcile import Reconciler
from shop.views import order_json

log = logging.getLogger("livecart.payments")

SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"


MAX_PAYMENT_ID = 40  # the length of ``payments.id``
PRINTABLE = r"^[\x21-\x7e]+$"  # provider ids: printable ASCII


class EventData(BaseModel):
    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=PRINTABLE)]


class WebhookEvent(BaseModel):
    """The part of a provider event LiveCart reads. The id is kept to recognise redeliveries."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=PRINTABLE)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    data: EventData


def payment_json(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "order_id": p.order_id,
        "provider": p.provider,
        "status": p.status,
        "amount": p.amount,
    }


class PaymentService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        reconciler: Reconciler,
        clock: Clock,
        metrics: Metrics,
        events: Events,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.inventory = inventory
        self.reconciler = reconciler
        #: told each order whose payment settled (the realtime hub sends it to its buyer)
        self.events = events
        self.clock = clock
        self.metrics = metrics

    async def start_checkout(self, viewer: ViewerIdentity, order_id: str) -> dict[str, str]:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            order = await repo.order(session, order_id)
            if order is None:
                raise UnknownResource("No such order.")
            require_buyer(viewer, order.buyer_id)
            if order.status != OrderStatus.RESERVED:
                raise OrderStateConflict(
                    f"This order is {order.status}; only a reserved order can be paid.",
                    code="order_not_payable",
                )
            if order.expires_ms < now:
                raise OrderStateConflict("The reservation has expired.", code="order_expired")
            payment = await repo.pending_payment(session, order_id)
            if payment is None:
                payment = Payment(
                    id=new_id("pay"),
                    order_id=order_id,
                    provider="dev",
                    status="pending",
                    amount=order.amount,
                    created_ms=now,
                    updated_ms=now,
                )
                session.add(payment)
        base = self.settings.base_url.rstrip("/")
        return {"payment_id": payment.id, "checkout_url": f"{base}/api/payments/dev/{payment.id}"}

    async def get_payment(self, payment_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            payment = await session.get(Payment, payment_id)
        if payment is None:
            raise UnknownResource("No such payment.")
        return payment_json(payment)

    # -- the webhook -----------------------------------------------------------------------------------

    async def receive_webhook(self, body: bytes, signature: str | None) -> dict[str, Any]:
        try:
            signing.verify(
                body,
                signature,
                secret=self.settings.webhook_secret,
                now=int(self.clock.now_ms() / 1000),
                tolerance=self.settings.webhook_tolerance_seconds,
            )
        except signing.SignatureError as exc:
            self.metrics.payments.labels(outcome="bad_signature").inc()
            raise InvalidSignature(f"Webhook rejected: {exc}.") from None
        try:
            event = WebhookEvent.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidWebhook(f"The event is not a payment event: {describe(exc)}") from None
        if event.type not in (SUCCEEDED, FAILED):
            self.metrics.payments.labels(outcome="ignored").inc()
            return {"received": True, "outcome": "ignored"}
        payment_id = event.data.payment_id
        if len(payment_id) > MAX_PAYMENT_ID:  # not one of ours: nothing to apply, nothing to retry
            self.metrics.payments.labels(outcome="unknown_payment").inc()
            return {"received": True, "outcome": "unknown_payment"}
        outcome = await self._apply(event.id, event.type, payment_id)
        self.metrics.payments.labels(outcome=outcome).inc()
        if outcome in ("paid", "paid_late", "refunded_late"):
            async with self.sessions() as session:
                payment = await session.get(Payment, payment_id)
                order = await repo.order(session, payment.order_id) if payment else None
            if order is not None:
                await self.events.order_changed(order_json(order, currency=self.settings.currency))
        return {"received": True, "outcome": outcome}

    async def _apply(self, event_id: str, kind: str, payment_id: str) -> str:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            recorded = await session.execute(
                insert_ignoring_conflicts(session, PaymentEvent)
                .values(id=event_id, payment_id=payment_id, type=kind, received_ms=now)
                .returning(PaymentEvent.id)
            )
            if recorded.scalar_one_or_none() is None:
                return "duplicate_event"
            if kind == FAILED:
                failed = await session.execute(
                    update(Payment)
                    .where(Payment.id == payment_id, Payment.status == "pending")
                    .values(status="failed", updated_ms=now)
                    .returning(Payment.id)
                )
                return "failed" if failed.scalar_one_or_none() else "stale_event"
            succeeded = await session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.status.in_(["pending", "failed"]))
                .values(status="succeeded", updated_ms=now)
                .returning(Payment.order_id)
            )
            order_id = succeeded.scalar_one_or_none()
            if order_id is None:
                return "stale_event"
            order = await repo.order(session, order_id)
            assert order is not None
            return await self._settle_success(session, order, payment_id, now)

    async def _settle_success(self, session: AsyncSession, order: Order, payment_id: str, now: int) -> str:
        decision = decide_payment(order.status, expires_ms=order.expires_ms, now_ms=now)
        if decision is PaymentDecision.REFUND_DUPLICATE:
            await self._refund_payment(session, payment_id, now)
            return "refunded_duplicate"
        if decision is PaymentDecision.LATE and order.status == OrderStatus.RESERVED:
            # The sweeper has not expired it yet: do its work first, so the units are taken afresh below.
            await repo.transition(
                session, order.id, to=OrderStatus.EXPIRED, allowed=[OrderStatus.RESERVED], closed_ms=now
            )
            await self.inventory.release(order.card_id, order.id, mode="expire", now_ms=now)
        held = await self._hold_as_paid(order, now)
        if held == "no_sale":
            # Redis lost the sale (restart without persistence): rebuild it from SQL, which still holds
            # this order's units if it is on time, then decide against that.
            await self.reconciler.reconcile_card(order.card_id, trigger="missing")
            held = await self._hold_as_paid(order, now)
        late = decision is PaymentDecision.LATE
        if held in ("paid", "already_paid"):
            paid = await repo.transition(
                session,
                order.id,
                to=OrderStatus.PAID,
                allowed=[OrderStatus.RESERVED, OrderStatus.EXPIRED, OrderStatus.CANCELLED],
                paid_ms=now,
                late=late,
                closed_ms=None,
            )
            assert paid is not None
            await commissions.accrue(session, paid, terms=commissions.Terms.of(self.settings), now_ms=now)
            return "paid_late" if late else "paid"
        log.info("order %s: payment could not be honoured (%s); refunding", order.id, held)
        await repo.transition(
            session,
            order.id,
            to=OrderStatus.REFUNDED,
            allowed=[OrderStatus.RESERVED, OrderStatus.EXPIRED, OrderStatus.CANCELLED],
            closed_ms=now,
            refund_reason=f"late_payment_{held}",
        )
        await self._refund_payment(session, payment_id, now)
        return "refunded_late"

    async def _hold_as_paid(self, order: Order, now: int) -> str:
        return await self.inventory.rereserve(
            order.card_id,
            order_id=order.id,
            buyer_id=order.buyer_id,
            quantity=order.quantity,
            unit_price=order.unit_price,
            idempotency_key=order.idempotency_key,
            referrer_id=order.referrer_id,
            now_ms=now,
        )

    async def _refund_payment(self, session: AsyncSession, payment_id: str, now: int) -> None:
        await session.execute(
            update(Payment).where(Payment.id == payment_id).values(status="refunded", updated_ms=now)
        )

    # -- the built-in dev provider ---------------------------------------------------------------------

    async def dev_complete(self, payment_id: str, outcome: str) -> dict[str, Any]:
        """Simulate the provider: the customer paid (or failed); the provider calls the signed webhook."""
        async with self.sessions() as session:
            payment = await session.get(Payment, payment_id)
        if payment is None:
            raise UnknownResource("No such payment.")
        if payment.status != "pending":
            raise OrderStateConflict(f"This payment is already {payment.status}.", code="payment_not_pending")
        event = {
            "id": new_id("evt"),
            "type": SUCCEEDED if outcome == "paid" else FAILED,
            "created": int(time.time()),
            "data": {"payment_id": payment_id},
        }
        body = json.dumps(event).encode()
        header = signing.sign(
            body, secret=self.settings.webhook_secret, timestamp=int(self.clock.now_ms() / 1000)
        )
        result = await self.receive_webhook(body, header)
        async with self.sessions() as session:
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            order = await repo.order(session, payment.order_id)
            assert order is not None
        return {
            "payment": payment_json(payment),
            "event": {"id": event["id"], "type": event["type"], "outcome": result["outcome"]},
            "order": order_json(order, currency=self.settings.currency),
        }
