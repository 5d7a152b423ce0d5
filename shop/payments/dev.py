"""The built-in dev provider: no money moves. Its checkout page is LiveCart's own
(``GET /api/payments/dev/{payment}``); "paying" there makes LiveCart send itself the notification a provider
would, signed with ``LIVECART_PAYMENT_WEBHOOK_SECRET`` the way Stripe signs (``shop.payments.signing``), to
``POST /api/payments/webhook``. It is on in dev and off in prod (``LIVECART_DEV_PAYMENTS``).

A notification is ``{"id", "type": "payment.succeeded"|"payment.failed", "data": {"payment_id", "amount"?}}``.
It keeps nothing of its own: a query says "pending" (its notifications are never lost: they are sent in
process), and a refund succeeds at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, StringConstraints, ValidationError

from base.http import describe
from base.settings import Settings
from shop.payments import signing
from shop.payments.provider import (
    Channel,
    Checkout,
    Notification,
    NotificationRejected,
    PaymentNotice,
    PaymentRequest,
    PaymentState,
    RefundNotice,
    RefundRequest,
    RefundState,
)

SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
PRINTABLE = r"^[\x21-\x7e]+$"  # provider ids: printable ASCII


class EventData(BaseModel):
    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=PRINTABLE)]
    #: What was paid, minor units (optional: v1 events have none).
    amount: int | None = None


class WebhookEvent(BaseModel):
    """The part of a provider event LiveCart reads. The id is kept to recognise redeliveries."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=PRINTABLE)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    data: EventData


class InvalidEvent(NotificationRejected):
    """Signed correctly but not an event this provider sends (the route answers 422, as in v1)."""


class DevProvider:
    name = "dev"
    channels = (Channel.DEV,)

    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.base_url.rstrip("/")
        self.secret = settings.webhook_secret
        self.tolerance = settings.webhook_tolerance_seconds

    def checkout_url(self, payment_id: str) -> str:
        return f"{self.base_url}/api/payments/dev/{payment_id}"

    async def create(self, request: PaymentRequest) -> Checkout:
        return Checkout(data={"redirect_url": self.checkout_url(request.payment_id)})

    def verify(self, headers: Mapping[str, str], body: bytes, *, now_s: int) -> Notification:
        try:
            signing.verify(
                body, headers.get(signing.HEADER), secret=self.secret, now=now_s, tolerance=self.tolerance
            )
        except signing.SignatureError as exc:
            raise NotificationRejected(f"Webhook rejected: {exc}.") from None
        try:
            event = WebhookEvent.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidEvent(f"The event is not a payment event: {describe(exc)}") from None
        if event.type not in (SUCCEEDED, FAILED):
            return Notification()
        state = PaymentState.SUCCEEDED if event.type == SUCCEEDED else PaymentState.FAILED
        notice = PaymentNotice(event.data.payment_id, state, event.id, amount=event.data.amount)
        return Notification(notices=[notice])

    async def query(self, payment_id: str) -> PaymentNotice:
        return PaymentNotice(payment_id, PaymentState.PENDING, f"query:{payment_id}:pending")

    async def close(self, payment_id: str) -> None:
        return None

    async def refund(self, request: RefundRequest) -> RefundNotice:
        return RefundNotice(request.refund_id, RefundState.SUCCEEDED, f"dev:{request.refund_id}")

    async def query_refund(self, refund_id: str, *, payment_id: str) -> RefundNotice:
        return RefundNotice(refund_id, RefundState.SUCCEEDED, f"dev:{refund_id}")
