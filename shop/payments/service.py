"""Checkout and payment confirmation, for every provider (SPEC §10).

A checkout writes a ``pending`` payment first, then asks the provider for what the buyer's page needs; a
repeated checkout at the same provider and channel shows the same one again.

A notification is checked by its provider (``Provider.verify``; a forgery changes nothing: 401), then each
notice is applied in one transaction that starts by recording its id (a redelivery changes nothing). A
succeeded payment whose amount or currency is not what we asked for changes nothing either. A succeeded
payment then holds the order's units as paid through ``rereserve`` — which confirms the reservation if
Redis still has it, or takes the units again for a late payment — and only then marks the order paid; if
the units cannot be had, the order is refunded automatically (SPEC invariant 6). Payment for an order
already paid or refunded is refunded as a duplicate. Either refund is a refund row sent to the provider
after the commit (``shop.payments.refunds``).

Notifications get lost: a payment still pending after ``LIVECART_PAYMENT_QUERY_AFTER_SECONDS`` is asked
about at its provider and settled from the answer (``query_overdue``), and before a reservation expires its
open payments are closed at their providers (``close_expiring``) — a payment that made it first is settled
then, under the late-payment rule — and a payment left open by an order that no longer waits for it (the
buyer cancelled, paid another way, or the close failed while the provider was down) is closed by the next
pass (``close_abandoned``), tried again until the provider takes the close.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.db import insert_ignoring_conflicts
from base.events import Events
from base.ids import new_id
from base.metrics import Metrics
from base.settings import Settings
from identity.guards import require_buyer
from identity.models import Customer
from identity.tokens import ViewerIdentity
from live.models import Host, Room
from shop import addresses, commissions
from shop.errors import (
    AddressRequired,
    InvalidSignature,
    InvalidWebhook,
    OrderStateConflict,
    ProviderFailed,
    RejectedNotification,
    UnknownProvider,
    UnknownResource,
)
from shop.inventory.rules import OrderStatus, PaymentDecision, decide_payment
from shop.inventory.store import Inventory
from shop.models import Card, Payment, PaymentEvent, Product, Refund
from shop.models import Order as OrderRow
from shop.orders import repo
from shop.orders.order import Order
from shop.payments import signing
from shop.payments.channels import choose_channel
from shop.payments.dev import FAILED, SUCCEEDED, InvalidEvent
from shop.payments.provider import (
    Channel,
    NotificationRejected,
    PaymentAlreadyPaid,
    PaymentNotice,
    PaymentRequest,
    PaymentState,
    ProviderError,
    RefundNotice,
    Reply,
)
from shop.payments.refunds import Refunder
from shop.payments.registry import Providers
from shop.reconcile import Reconciler
from shop.schemas import PayIn
from shop.views import address_json, order_json

log = logging.getLogger("livecart.payments")

MAX_PAYMENT_ID = 40  # the length of ``payments.id``
#: Provider payments closed at once when reservations expire (a show's wave of expiries).
CLOSING_AT_ONCE = 16
#: Where each provider sends its notifications (the dev provider keeps its v1 webhook).
NOTIFY_PATHS = {
    "wechat": "/api/payments/wechat/notify",
    "alipay": "/api/payments/alipay/notify",
    "stripe": "/api/payments/stripe/webhook",
    "dev": "/api/payments/webhook",
}


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
        providers: Providers,
        refunder: Refunder,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.inventory = inventory
        self.reconciler = reconciler
        #: told each order whose payment settled (the realtime hub sends it to its buyer)
        self.events = events
        self.clock = clock
        self.metrics = metrics
        self.providers = providers
        self.refunder = refunder
        self.base_url = settings.base_url.rstrip("/")
        self.query_after_ms = int(settings.payment_query_after_seconds * 1000)

    def notify_url(self, provider: str) -> str:
        return self.base_url + NOTIFY_PATHS[provider]

    # -- checkout --------------------------------------------------------------------------------------

    async def checkout_options(
        self, viewer: ViewerIdentity, order_id: str, *, user_agent: str
    ) -> dict[str, Any]:
        """What the buyer's page offers before paying: the shop's providers with the channel each would use
        here, whether an address is needed, and the address to offer (the order's, else their last)."""
        async with self.sessions() as session:
            order, _room, product, host = await self._checkout_rows(session, viewer, order_id)
            openid = await self._openid(session, viewer)
            last = order.address
            if last is None and viewer.customer_id is not None:
                last = await addresses.last(session, viewer.customer_id)
        options = []
        for name in self.providers.for_shop(host.payment_providers):
            provider = self.providers.get(name)
            channel = choose_channel(
                provider.channels, user_agent=user_agent, requested=None, has_openid=openid is not None
            )
            if channel is not None:
                options.append({"provider": name, "channel": channel.value})
        return {
            "order_id": order.id,
            "amount": order.amount,
            "currency": self.settings.currency,
            "providers": options,
            "address_required": product.shippable,
            "address": address_json(last) if last else None,
        }

    async def start_checkout(
        self,
        viewer: ViewerIdentity,
        order_id: str,
        body: PayIn | None = None,
        *,
        user_agent: str = "",
        client_ip: str = "127.0.0.1",
    ) -> dict[str, Any]:
        body = body or PayIn()
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            order, room, product, host = await self._checkout_rows(session, viewer, order_id)
            offered = self.providers.for_shop(host.payment_providers)
            name = body.provider or (offered[0] if offered else None)
            if name is None or name not in offered:
                raise UnknownProvider(
                    f"This shop does not take {name!r} here; it takes: {', '.join(offered) or 'nothing yet'}."
                    if name
                    else "This shop takes no payment provider on this server yet."
                )
            provider = self.providers.get(name)
            openid = await self._openid(session, viewer)
            channel = choose_channel(
                provider.channels,
                user_agent=user_agent,
                requested=Channel(body.channel) if body.channel else None,
                has_openid=openid is not None,
            )
            if channel is None:
                raise UnknownProvider(
                    f"{name} cannot take this payment"
                    + (f" by {body.channel}" if body.channel else " in this browser")
                    + (" (JSAPI needs a buyer signed in with WeChat)." if body.channel == "jsapi" else ".")
                )
            if body.address is not None:
                address = body.address.checked(default_region=self.settings.default_phone_region)
                await session.execute(
                    update(OrderRow)
                    .where(OrderRow.id == order.id)
                    .values(
                        ship_name=address.name,
                        ship_phone=address.phone,
                        ship_region=address.region,
                        ship_line=address.line,
                    )
                )
                if viewer.customer_id is not None:
                    await addresses.remember(session, viewer.customer_id, address, now_ms=now)
            elif product.shippable and order.address is None:
                raise AddressRequired(
                    "This product ships: give a shipping address (name, phone, region, line)."
                )
            existing = await repo.pending_payment(session, order.id, provider=name, channel=channel.value)
            if existing is not None and existing.checkout is not None:
                return self._checkout_json(existing, json.loads(existing.checkout))
            payment = Payment(
                id=new_id("pay"),
                order_id=order.id,
                provider=name,
                channel=channel.value,
                status="pending",
                amount=order.amount,
                created_ms=now,
                updated_ms=now,
            )
            session.add(payment)
        request = PaymentRequest(
            payment_id=payment.id,
            amount=payment.amount,
            currency=self.settings.currency,
            description=product.name[:120],
            channel=channel,
            expires_ms=order.expires_ms,
            notify_url=self.notify_url(name),
            return_url=f"{self.base_url}/r/{room.id}?order={order.id}",
            client_ip=client_ip,
            payer_openid=openid,
        )
        try:
            checkout = await provider.create(request)
        except ProviderError as exc:
            await self._set_payment(payment.id, status="failed")
            self.metrics.payments.labels(outcome="create_failed").inc()
            raise ProviderFailed(f"{name} could not start this payment: {exc} Nothing was charged.") from None
        await self._set_payment(
            payment.id, checkout=json.dumps(checkout.data), provider_ref=checkout.provider_ref
        )
        return self._checkout_json(payment, checkout.data)

    def _checkout_json(self, payment: Payment, checkout: dict[str, Any]) -> dict[str, Any]:
        url = checkout.get("redirect_url") or checkout.get("h5_url") or checkout.get("code_url")
        return {
            "payment_id": payment.id,
            "provider": payment.provider,
            "channel": payment.channel,
            "checkout": checkout,
            "checkout_url": url,
        }

    async def _checkout_rows(
        self, session: AsyncSession, viewer: ViewerIdentity, order_id: str
    ) -> tuple[Order, Room, Product, Host]:
        found = await repo.order_with_room(session, order_id)
        if found is None:
            raise UnknownResource("No such order.")
        order, room = found
        require_buyer(viewer, order.buyer_id)
        if order.status != OrderStatus.RESERVED:
            raise OrderStateConflict(
                f"This order is {order.status}; only a reserved order can be paid.", code="order_not_payable"
            )
        if order.expires_ms < self.clock.now_ms():
            raise OrderStateConflict("The reservation has expired.", code="order_expired")
        product = (
            await session.execute(
                select(Product).join(Card, Card.product_id == Product.id).where(Card.id == order.card_id)
            )
        ).scalar_one()
        host = await session.get(Host, room.host_id)
        assert host is not None
        return order, room, product, host

    async def _openid(self, session: AsyncSession, viewer: ViewerIdentity) -> str | None:
        if viewer.customer_id is None:
            return None
        customer = await session.get(Customer, viewer.customer_id)
        return customer.wechat_openid if customer else None

    async def _set_payment(self, payment_id: str, **values: Any) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.status == "pending")
                .values(updated_ms=self.clock.now_ms(), **values)
            )

    async def get_payment(self, payment_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            payment = await session.get(Payment, payment_id)
        if payment is None:
            raise UnknownResource("No such payment.")
        return payment_json(payment)

    # -- notifications ---------------------------------------------------------------------------------

    async def notify(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """A provider's notification: verified by the provider, then every notice in it applied."""
        provider = self.providers.get(provider_name)
        try:
            notification = provider.verify(headers, body, now_s=int(self.clock.now_ms() / 1000))
        except NotificationRejected as exc:
            self.metrics.payments.labels(outcome="bad_signature").inc()
            log.warning("%s notification rejected: %s", provider_name, exc)
            raise RejectedNotification(f"Notification rejected: {exc}") from None
        for notice in notification.notices:
            if isinstance(notice, RefundNotice):
                outcome = await self.refunder.apply(notice)
            else:
                outcome = await self.apply(provider_name, notice)
            self.metrics.payments.labels(outcome=outcome).inc()
        return notification.reply

    async def receive_webhook(self, body: bytes, signature: str | None) -> dict[str, Any]:
        """The dev provider's v1 webhook (``LiveCart-Signature``): 400 for a bad signature, as in v1."""
        provider = self.providers.get("dev")
        try:
            notification = provider.verify(
                {signing.HEADER: signature or ""}, body, now_s=int(self.clock.now_ms() / 1000)
            )
        except InvalidEvent as exc:
            raise InvalidWebhook(str(exc)) from None
        except NotificationRejected as exc:
            self.metrics.payments.labels(outcome="bad_signature").inc()
            raise InvalidSignature(str(exc)) from None
        if not notification.notices:
            self.metrics.payments.labels(outcome="ignored").inc()
            return {"received": True, "outcome": "ignored"}
        notice = notification.notices[0]
        assert isinstance(notice, PaymentNotice)
        outcome = await self.apply("dev", notice)
        self.metrics.payments.labels(outcome=outcome).inc()
        return {"received": True, "outcome": outcome}

    async def apply(self, provider_name: str, notice: PaymentNotice) -> str:
        """Apply what a provider says of one of its payments (a notification or a query); the outcome."""
        if notice.state is PaymentState.PENDING:
            return "pending"
        if len(notice.payment_id) > MAX_PAYMENT_ID:  # not one of ours: nothing to apply, nothing to retry
            return "unknown_payment"
        event_id = notice.event_id if provider_name == "dev" else f"{provider_name}:{notice.event_id}"
        now = self.clock.now_ms()
        to_send: list[str] = []
        async with self.sessions() as session, session.begin():
            payment = await session.get(Payment, notice.payment_id)
            if payment is None or payment.provider != provider_name:
                return "unknown_payment"
            if notice.state is PaymentState.SUCCEEDED:
                if notice.amount is not None and notice.amount != payment.amount:
                    log.error(
                        "payment %s: %s says %s was paid, we asked %s; not applied",
                        payment.id,
                        provider_name,
                        notice.amount,
                        payment.amount,
                    )
                    return "amount_mismatch"
                if notice.currency is not None and notice.currency.upper() != self.settings.currency.upper():
                    log.error(
                        "payment %s: paid in %s, not %s", payment.id, notice.currency, self.settings.currency
                    )
                    return "amount_mismatch"
            recorded = await session.execute(
                insert_ignoring_conflicts(session, PaymentEvent)
                .values(id=event_id[:80], payment_id=payment.id, type=notice.state.value, received_ms=now)
                .returning(PaymentEvent.id)
            )
            if recorded.scalar_one_or_none() is None:
                return "duplicate_event"
            if notice.state is not PaymentState.SUCCEEDED:
                ended = await session.execute(
                    update(Payment)
                    .where(Payment.id == payment.id, Payment.status == "pending")
                    .values(status=notice.state.value, updated_ms=now)
                    .returning(Payment.id)
                )
                return notice.state.value if ended.scalar_one_or_none() else "stale_event"
            values: dict[str, Any] = {"status": "succeeded", "updated_ms": now}
            if notice.provider_ref:
                values["provider_ref"] = notice.provider_ref[:64]
            succeeded = await session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status.in_(["pending", "failed", "closed"]))
                .values(**values)
                .returning(Payment.order_id)
            )
            order_id = succeeded.scalar_one_or_none()
            if order_id is None:
                return "stale_event"
            order = await repo.order(session, order_id)
            assert order is not None
            outcome = await self._settle_success(session, order, payment.id, now, to_send)
        for refund_id in to_send:
            await self.refunder.send(refund_id)
        if outcome in ("paid", "paid_late", "refunded_late"):
            async with self.sessions() as session:
                changed = await repo.order(session, order_id)
            if changed is not None:
                await self.events.order_changed(order_json(changed, currency=self.settings.currency))
        return outcome

    async def _settle_success(
        self, session: AsyncSession, order: Order, payment_id: str, now: int, to_send: list[str]
    ) -> str:
        decision = decide_payment(order.status, expires_ms=order.expires_ms, now_ms=now)
        if decision is PaymentDecision.REFUND_DUPLICATE:
            to_send.append(await self._refund_payment(session, payment_id, now, reason="duplicate_payment"))
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
        to_send.append(await self._refund_payment(session, payment_id, now, reason=f"late_payment_{held}"))
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

    async def _refund_payment(self, session: AsyncSession, payment_id: str, now: int, *, reason: str) -> str:
        """Give back a whole payment the order could not take: a refund row the refunder sends."""
        refunded = await session.execute(
            update(Payment)
            .where(Payment.id == payment_id)
            .values(status="refunded", updated_ms=now)
            .returning(Payment.order_id, Payment.amount)
        )
        order_id, amount = refunded.one()
        refund_id = new_id("rfd")
        session.add(
            Refund(
                id=refund_id,
                order_id=order_id,
                payment_id=payment_id,
                kind="payment",
                amount=amount,
                restocked=False,
                reason=reason,
                status="pending",
                attempts=0,
                next_try_ms=now,
                created_ms=now,
                updated_ms=now,
            )
        )
        return refund_id

    # -- lost notifications and expiring reservations (the sweeper calls these) --------------------------

    async def query_overdue(self, *, limit: int = 50) -> int:
        """Ask the providers about payments pending longer than ``payment_query_after_seconds`` (again
        every as long) and settle them from the answers. Returns how many were asked about."""
        now = self.clock.now_ms()
        cutoff = now - self.query_after_ms
        async with self.sessions() as session, session.begin():
            due = list(
                (
                    await session.execute(
                        select(Payment.id, Payment.provider)
                        .where(
                            Payment.status == "pending",
                            Payment.provider != "dev",
                            Payment.created_ms <= cutoff,
                            or_(Payment.queried_ms.is_(None), Payment.queried_ms <= cutoff),
                        )
                        .order_by(Payment.created_ms)
                        .limit(limit)
                    )
                ).all()
            )
            if due:
                await session.execute(
                    update(Payment).where(Payment.id.in_([p for p, _ in due])).values(queried_ms=now)
                )
        for payment_id, name in due:
            await self._query_and_apply(payment_id, name)
        return len(due)

    async def close_abandoned(self, *, limit: int = 50) -> int:
        """Close the provider payments still open of orders that no longer wait for one: the buyer cancelled,
        paid through another payment, or the reservation expired while the provider could not be reached.
        One the buyer paid meanwhile is settled (the late-payment rule, or refunded as a duplicate); one the
        provider cannot close now is tried again next pass. Returns how many were closed or settled."""
        async with self.sessions() as session:
            payments = await repo.abandoned_payments(session, limit=limit)
        return await self._close_all(payments)

    async def close_expiring(self, order_ids: list[str]) -> int:
        """Before the sweeper expires these overdue reservations: close their open provider payments, so
        nobody pays for stock that goes back on sale; one already paid is settled now (the late-payment rule
        decides). A provider that cannot be reached does not hold the expiry up: its payment stays pending,
        and the query settles it later under the same rule. At most ``CLOSING_AT_ONCE`` calls at a time.
        Returns how many payments were closed or settled."""
        async with self.sessions() as session:
            payments = [p for p in await repo.open_payments(session, order_ids) if p.provider != "dev"]
        return await self._close_all(payments)

    async def _close_all(self, payments: list[Payment]) -> int:
        if not payments:
            return 0
        gate = asyncio.Semaphore(CLOSING_AT_ONCE)

        async def close(payment: Payment) -> bool:
            async with gate:
                return await self._close(payment)

        return sum(await asyncio.gather(*(close(p) for p in payments)))

    async def _close(self, payment: Payment) -> bool:
        provider = self.providers.find(payment.provider)
        if provider is None:
            return False
        try:
            await provider.close(payment.id)
        except PaymentAlreadyPaid:
            await self._query_and_apply(payment.id, payment.provider)
            return True
        except ProviderError as exc:
            log.warning("payment %s: close at %s failed: %s", payment.id, payment.provider, exc)
            return False
        await self._set_payment(payment.id, status="closed")
        return True

    async def _query_and_apply(self, payment_id: str, name: str) -> str:
        provider = self.providers.find(name)
        if provider is None:
            return "unknown_provider"
        try:
            notice = await provider.query(payment_id)
        except ProviderError as exc:
            log.warning("payment %s: query at %s failed: %s", payment_id, name, exc)
            return "query_failed"
        if notice.payment_id != payment_id:
            log.error("payment %s: %s answered about %s", payment_id, name, notice.payment_id)
            return "unknown_payment"
        outcome = await self.apply(name, notice)
        self.metrics.payments.labels(outcome=f"query_{outcome}").inc()
        return outcome

    # -- the built-in dev provider ---------------------------------------------------------------------

    async def dev_complete(self, payment_id: str, outcome: str) -> dict[str, Any]:
        """Simulate the provider: the customer paid (or failed); the provider calls the signed webhook."""
        async with self.sessions() as session:
            payment = await session.get(Payment, payment_id)
        if payment is None or payment.provider != "dev":
            raise UnknownResource("No such payment.")
        if payment.status != "pending":
            raise OrderStateConflict(f"This payment is already {payment.status}.", code="payment_not_pending")
        event = {
            "id": new_id("evt"),
            "type": SUCCEEDED if outcome == "paid" else FAILED,
            "created": int(time.time()),
            "data": {"payment_id": payment_id, "amount": payment.amount},
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
