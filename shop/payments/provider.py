"""What LiveCart asks of a payment provider, and what a provider tells it back (SPEC §10).

One ``Provider`` per payment service (WeChat Pay, Alipay, Stripe, the built-in dev provider), each in its own
module and each talking to its service only through that service's maintained SDK, with the API base URL a
setting. The payment service (``shop.payments.service``) is the only caller; it decides what a notice means
for an order (``shop.inventory.rules.decide_payment``), so a provider only translates:

- ``create``: start paying ``PaymentRequest`` (our ``payment_id`` is the provider's ``out_trade_no``) and
  return what the buyer's page needs to pay (a QR ``code_url``, an H5 or redirect URL, JSAPI parameters);
- ``verify``: check a notification's signature exactly as the provider documents it and turn it into
  notices, or raise ``NotificationRejected`` (the route answers 401 and changes nothing);
- ``query``: what the provider says of a payment now (for a notification that never came);
- ``close``: stop a payment from being paid (its reservation expired); ``PaymentAlreadyPaid`` if too late;
- ``refund``: return (part of) a succeeded payment; the answer may already be final or come later as a
  ``RefundNotice`` through ``verify``.

A provider that publishes a daily statement (WeChat Pay's trade bill, Stripe's balance transactions) is
also a ``HasStatement``: ``statement`` reads one day of it as ``StatementLine`` values, which
``livecart reconcile-payments`` compares with our ledger (``shop.payments.statements``).

Amounts are integers in minor units (分, cents). Whatever a provider answers is checked by the service
against what it asked for (the amount, the ``payment_id``), never trusted.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Any, Protocol, runtime_checkable

from shop.payments.statements import StatementLine


class Channel(enum.StrEnum):
    """How the buyer pays, which decides what ``Checkout.data`` holds."""

    NATIVE = "native"  #: WeChat Pay Native: a QR ``code_url`` shown on a desktop screen
    JSAPI = "jsapi"  #: WeChat Pay inside WeChat's browser: parameters for ``WeixinJSBridge``
    H5 = "h5"  #: WeChat Pay H5 in another mobile browser: an ``h5_url`` to open
    WAP = "wap"  #: Alipay on a mobile browser: a ``redirect_url``
    PAGE = "page"  #: Alipay on a desktop browser: a ``redirect_url``
    CHECKOUT = "checkout"  #: Stripe Checkout: a ``redirect_url`` to Stripe's hosted page
    DEV = "dev"  #: the built-in dev provider's own checkout page


class PaymentState(enum.StrEnum):
    SUCCEEDED = "succeeded"  #: the money was taken
    PENDING = "pending"  #: not paid yet (the buyer may still pay)
    FAILED = "failed"  #: this attempt failed; the payment can no longer succeed as it is
    CLOSED = "closed"  #: closed or expired at the provider: it can no longer be paid


class RefundState(enum.StrEnum):
    SUCCEEDED = "succeeded"  #: the money is on its way back to the buyer
    PROCESSING = "processing"  #: accepted; the outcome comes later (a notification, or a query)
    FAILED = "failed"  #: refused or failed: the service retries it and shows it to the host


class ProviderError(Exception):
    """The provider could not be reached or refused the call (a 5xx, a timeout, an error answer). The
    message is safe to show a host; the service retries what must not be dropped."""


class PaymentAlreadyPaid(ProviderError):
    """``close`` came too late: the buyer has paid. The service queries and settles the payment."""


class NotificationRejected(Exception):
    """A notification that must change nothing: a bad or missing signature, an unknown serial or key, a
    timestamp too far from now, a body that does not decrypt or parse. The message says which."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    payment_id: str  #: our id, the provider's ``out_trade_no`` (at most 32 printable ASCII characters)
    amount: int  #: minor units
    currency: str  #: ISO 4217, e.g. ``CNY``
    description: str  #: what is bought (the product's name)
    channel: Channel
    #: When the reservation ends (epoch ms): the provider is asked to stop taking payment then.
    expires_ms: int
    notify_url: str  #: where the provider sends its notification
    return_url: str  #: where the buyer's browser goes back after paying (H5, Alipay, Stripe)
    client_ip: str  #: the buyer's address (WeChat H5 requires it)
    payer_openid: str | None = None  #: the buyer's WeChat ``openid`` (JSAPI requires it)


@dataclass(frozen=True, slots=True)
class Checkout:
    #: What the buyer's page needs: ``code_url``, ``h5_url``, ``redirect_url`` or ``jsapi`` parameters.
    data: dict[str, Any]
    #: The provider's handle of the payment when it has one now (a ``prepay_id``, a Checkout Session id).
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """What the provider says happened to one payment (from a notification or a query)."""

    payment_id: str  #: our ``out_trade_no``
    state: PaymentState
    #: Identifies this notice: a redelivered notification has the same one (it is recorded, and a second
    #: delivery changes nothing). A query's notice is ``query:<payment_id>:<state>``.
    event_id: str
    amount: int | None = None  #: what the provider says was paid (``None`` when it does not say)
    currency: str | None = None
    provider_ref: str | None = None  #: the provider's transaction id


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  #: our id, the provider's ``out_refund_no``
    payment_id: str  #: the succeeded payment it returns money from
    provider_ref: str | None  #: that payment's provider transaction id, when known
    amount: int  #: what to refund now, minor units
    payment_amount: int  #: what the payment took in all (WeChat requires it)
    currency: str
    reason: str
    notify_url: str


@dataclass(frozen=True, slots=True)
class RefundNotice:
    refund_id: str  #: our ``out_refund_no``
    state: RefundState
    event_id: str
    amount: int | None = None
    provider_ref: str | None = None  #: the provider's refund id
    #: Why it failed, in the provider's words, for the host to see.
    error: str | None = None


Notice = PaymentNotice | RefundNotice


@dataclass(frozen=True, slots=True)
class Reply:
    """What the notification route answers, in the form the provider expects."""

    status: int = 200
    body: bytes = b""
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification: what it tells, and what to answer once it is applied."""

    notices: list[Notice] = field(default_factory=list)
    reply: Reply = field(default_factory=Reply)


class Provider(Protocol):
    @property
    def name(self) -> str:
        """``wechat``, ``alipay``, ``stripe`` or ``dev``: the name in the API and in ``payments.provider``."""
        ...

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels this provider serves."""
        ...

    async def create(self, request: PaymentRequest) -> Checkout: ...

    def verify(self, headers: Mapping[str, str], body: bytes, *, now_s: int) -> Notification:
        """Check and decode a notification (raises ``NotificationRejected``). Pure CPU: no network."""
        ...

    async def query(self, payment_id: str) -> PaymentNotice: ...

    async def close(self, payment_id: str) -> None: ...

    async def refund(self, request: RefundRequest) -> RefundNotice: ...

    async def query_refund(self, refund_id: str, *, payment_id: str) -> RefundNotice:
        """What the provider says of a refund of ``payment_id`` (Alipay finds a refund only through its
        payment)."""
        ...


@runtime_checkable
class HasStatement(Protocol):
    """A provider with a daily statement of the money it moved (not every provider has one yet, so this is
    apart from ``Provider``)."""

    @property
    def name(self) -> str: ...

    @property
    def statement_zone(self) -> tzinfo:
        """The time zone the provider cuts its days in (Beijing time for WeChat Pay, UTC for Stripe)."""
        ...

    async def statement(self, day: date) -> list[StatementLine]:
        """Every payment and refund of ``day`` (in ``statement_zone``) as the provider reports it; empty
        for a day with none. ``ProviderError`` when it cannot be fetched, is not what was asked for, or
        does not parse."""
        ...
