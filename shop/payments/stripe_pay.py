"""Stripe Checkout as a LiveCart payment provider (SPEC §10), through Stripe's maintained SDK (``stripe``).

A payment is one Checkout Session on Stripe's hosted page: one line item (the product's name, the amount in
the currency's minor unit, quantity 1), our ``payment_id`` as its ``client_reference_id`` and in the
``metadata`` of the session and of the PaymentIntent Stripe makes when the buyer pays. The buyer is sent to
``session.url``; ``session.id`` is the ``provider_ref`` of the checkout, and the PaymentIntent's id the
``provider_ref`` of a succeeded payment (refunds name it).

**Expiry.** Stripe takes ``expires_at`` between 30 minutes and 24 hours after the session is made, and our
reservations are often shorter: the session is asked to expire at the reservation's end, raised to 30
minutes (plus a minute for clock skew and the request itself). A buyer may therefore pay after the
reservation ended. The service closes the session when the reservation expires (``close`` expires it), and
a payment that still lands late is decided by the late-payment rule (``decide_payment``: the units are
taken again or the payment is refunded), as for any provider.

**Webhook.** ``verify`` checks the ``Stripe-Signature`` header (``t=<unix time>,v1=<hex HMAC-SHA256 of
"{t}.{body}" with the endpoint's whsec_ secret>``) with the SDK's ``construct_event``. The SDK checks the
timestamp only against the wall clock and only for staleness; ``verify`` must decide with the ``now_s`` it
is given (pure, testable), so the SDK's own check is turned off (``tolerance=0``) and the signed timestamp
is checked here against ``now_s`` in both directions, within ``webhook_tolerance_seconds`` (in production
``now_s`` is the wall clock, so nothing of the SDK's check is lost, and a timestamp from the future is
refused as well). The answer is ``200 {"received": true}``. Events, by ``type``:

=======================================================  ============================================
``checkout.session.completed``, ``payment_status: paid``  ``PaymentNotice`` SUCCEEDED
``checkout.session.completed``, ``unpaid``                nothing (a delayed method: an
                                                          ``async_payment_*`` event follows)
``checkout.session.async_payment_succeeded``              SUCCEEDED
``checkout.session.async_payment_failed``                 FAILED
``checkout.session.expired``                              CLOSED
``refund.created|updated|failed``,                        ``RefundNotice`` from the refund's ``status``:
``charge.refund.updated``                                 succeeded → SUCCEEDED, pending and
                                                          requires_action → PROCESSING, failed and
                                                          canceled → FAILED (``failure_reason``)
anything else, or an object that is not ours              nothing: acknowledged and ignored
=======================================================  ============================================

A payment notice carries the session's ``amount_total``, its currency upper-cased, and the PaymentIntent
id; the ``event_id`` is Stripe's event id (``evt_...``), the same on every redelivery.

**Finding a payment by our id.** The ``Provider`` interface gives ``query`` and ``close`` only our
``payment_id``, and Stripe cannot look a Checkout Session up by ``client_reference_id`` or metadata (there
is no Checkout Session search). A session lives at most 24 hours, so every session that can still be open,
or was paid in the last day, is among those *created* in the last 25 hours: ``GET /v1/checkout/sessions``
with ``created[gte]`` is listed (newest first, 100 a page) and filtered by ``client_reference_id``. For an
older payment, the PaymentIntent that carries our ``payment_id`` in its metadata is found through the
Search API (``metadata['payment_id']:'...'``; Stripe's search lags writes by up to a minute, which cannot
matter for a payment more than a day old). With the session's id passed in (the ``provider_ref`` that
``create`` returned) both would be one ``retrieve``.

**Refunds** are ``POST /v1/refunds`` on the PaymentIntent, with our ``refund_id`` in the metadata and as
the ``Idempotency-Key``. Stripe keeps idempotency keys for 24 hours only, so before creating one the
PaymentIntent's refunds are listed and an existing refund with our ``refund_id`` is returned instead: a
retry days later cannot refund twice. ``query_refund`` (given only our ``refund_id``) lists the account's
refunds of the last 30 days and picks ours by metadata; none there is a FAILED notice, which makes the
service retry the refund, and that retry (above) finds an existing one rather than making another.

**Statement** (``statement``, for ``livecart reconcile-payments``): the balance transactions of a UTC day
(``GET /v1/balance_transactions`` with ``created[gte]``/``created[lt]``, every page, ``expand[]`` of
``data.source`` and ``data.source.payment_intent``), read by ``balance_line``: a ``charge`` (or ``payment``)
is a payment of the ``payment_id`` in its PaymentIntent's metadata (the charge's own metadata if the
PaymentIntent has none), a ``refund`` (or ``payment_refund``) a refund of the ``refund_id`` in the refund's
metadata, its status the refund's. The amount is the source's (the charge's, the refund's, positive), in
the currency we charged: the transaction's own ``amount`` is in the balance's currency, converted. Any
other type (fees, payouts, ``refund_failure``, which the refund's status already tells) moved no money of
a payment; a charge or refund that names none of our ids was made by something else on the account.

**Calls** use the SDK's async methods (``*_async``) over httpx, with ``max_network_retries=0`` (the
service retries), the HTTP client's timeout and a whole-call deadline, both
``payment_provider_timeout_seconds``. ``stripe.HTTPXClient`` sends the form body as ``data=<str>``,
which httpx deprecates with a warning on every POST (fatal where warnings are errors, as in the tests):
:class:`_HTTPXClient` sends it as ``content=`` and is otherwise the SDK's. Transport failures, timeouts,
5xx and Stripe's error answers are ``ProviderError`` with Stripe's own words (never the key).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import stripe
from stripe.checkout import Session

from base.settings import Settings
from shop.payments.provider import (
    Channel,
    Checkout,
    Notice,
    Notification,
    NotificationRejected,
    PaymentAlreadyPaid,
    PaymentNotice,
    PaymentRequest,
    PaymentState,
    ProviderError,
    RefundNotice,
    RefundRequest,
    RefundState,
    Reply,
)
from shop.payments.statements import StatementLine

#: Stripe's bounds on a Checkout Session's ``expires_at``, from its creation.
CHECKOUT_MIN_LIFETIME_S = 30 * 60
CHECKOUT_MAX_LIFETIME_S = 24 * 60 * 60
#: Added to the 30-minute floor (and taken off the 24-hour ceiling): the request's own time, clock skew.
EXPIRY_MARGIN_S = 60
#: Sessions created this long ago or less are listed to find a payment's (every one that may be open).
SESSION_WINDOW_S = CHECKOUT_MAX_LIFETIME_S + 60 * 60
#: Refunds created this long ago or less are listed to find one by our ``refund_id``.
REFUND_WINDOW_S = 30 * 24 * 60 * 60
#: Stripe's page size ceiling for lists.
PAGE = 100
#: Stripe's limit on a metadata value.
METADATA_VALUE_MAX = 500

WEBHOOK_REPLY = Reply(status=200, body=b'{"received": true}', media_type="application/json")

PAYMENT_EVENTS: dict[str, PaymentState] = {
    "checkout.session.async_payment_succeeded": PaymentState.SUCCEEDED,
    "checkout.session.async_payment_failed": PaymentState.FAILED,
    "checkout.session.expired": PaymentState.CLOSED,
}
COMPLETED = "checkout.session.completed"
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})

#: PaymentIntent statuses on the way to being paid (the buyer, a bank or Stripe still acts).
INTENT_UNDER_WAY = frozenset({"processing", "requires_action", "requires_confirmation", "requires_capture"})
#: Which of a payment's sessions speaks for it: money taken first, then one that may still be paid.
PRECEDENCE = (PaymentState.SUCCEEDED, PaymentState.PENDING, PaymentState.FAILED, PaymentState.CLOSED)


# -- pure decisions -------------------------------------------------------------------------------------


def checkout_expires_at(expires_ms: int, *, now_s: int) -> int:
    """The ``expires_at`` to ask of Stripe: the reservation's end (rounded up to the second), but no
    sooner than Stripe's 30 minutes and no later than its 24 hours, each with a margin."""
    wanted = math.ceil(expires_ms / 1000)
    earliest = now_s + CHECKOUT_MIN_LIFETIME_S + EXPIRY_MARGIN_S
    latest = now_s + CHECKOUT_MAX_LIFETIME_S - EXPIRY_MARGIN_S
    return min(max(wanted, earliest), latest)


def intent_state(status: str | None) -> PaymentState:
    """A PaymentIntent's status as a payment state (``None``: Stripe made none: nobody paid)."""
    if status == "succeeded":
        return PaymentState.SUCCEEDED
    if status in INTENT_UNDER_WAY:
        return PaymentState.PENDING
    if status == "requires_payment_method":  # its attempt failed (a delayed method's, after completion)
        return PaymentState.FAILED
    return PaymentState.CLOSED  # canceled (its session expired), or none


def session_state(status: str | None, payment_status: str | None, intent_status: str | None) -> PaymentState:
    """A Checkout Session's state: open → PENDING, expired → CLOSED, complete and paid → SUCCEEDED; complete
    and unpaid is a delayed payment method, whose PaymentIntent tells (processing → PENDING)."""
    if status == "open":
        return PaymentState.PENDING
    if status == "complete":
        if payment_status in ("paid", "no_payment_required"):
            return PaymentState.SUCCEEDED
        state = intent_state(intent_status)
        return PaymentState.FAILED if state is PaymentState.CLOSED else state
    return PaymentState.CLOSED


def refund_state(status: str | None) -> RefundState:
    """A Refund's ``status``: succeeded; pending or requires_action (the buyer must give bank details) are
    under way; failed and canceled are failed (and anything unknown is waited on, not trusted)."""
    if status == "succeeded":
        return RefundState.SUCCEEDED
    if status in ("failed", "canceled"):
        return RefundState.FAILED
    return RefundState.PROCESSING


def signed_at(header: str) -> int:
    """The ``t=`` of a ``Stripe-Signature`` header, read exactly as the SDK reads the one it verified (the
    first item named exactly ``t``): any other reading would let an added, unsigned ``t=`` pass for it."""
    for item in header.split(","):
        parts = item.split("=", 2)
        if parts[0] == "t":
            return int(parts[1])
    raise ValueError("no t= in the Stripe-Signature header")


def upper(currency: object) -> str | None:
    return currency.upper() if isinstance(currency, str) else None


def count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def reference(value: object) -> str | None:
    """An expandable field's id: the id itself, or the expanded object's ``id``."""
    if isinstance(value, Mapping):
        return text(value.get("id"))
    return text(value)


def ours(obj: Mapping[str, Any], key: str) -> str | None:
    """Our id in a Stripe object's ``metadata[key]`` (a session's also in ``client_reference_id``)."""
    metadata = obj.get("metadata")
    found = text(metadata.get(key)) if isinstance(metadata, Mapping) else None
    if found is None and key == "payment_id":
        found = text(obj.get("client_reference_id"))
    return found


def notices_of(event: Mapping[str, Any]) -> list[Notice]:
    """What a verified Stripe event tells LiveCart (the table in the module docstring). Raises
    ``ValueError`` for an event that has no id, type or object."""
    event_id, kind, data = event.get("id"), event.get("type"), event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if (
        not isinstance(event_id, str)
        or not event_id
        or not isinstance(kind, str)
        or not isinstance(obj, Mapping)
    ):
        raise ValueError("the event has no id, type or data.object")
    if kind == COMPLETED or kind in PAYMENT_EVENTS:
        payment_id = ours(obj, "payment_id")
        if payment_id is None:
            return []  # a session made by something else on the same account
        if kind == COMPLETED:
            if obj.get("payment_status") != "paid":
                return []  # a delayed method: checkout.session.async_payment_* tells the outcome
            state = PaymentState.SUCCEEDED
        else:
            state = PAYMENT_EVENTS[kind]
        return [
            PaymentNotice(
                payment_id=payment_id,
                state=state,
                event_id=event_id,
                amount=count(obj.get("amount_total")),
                currency=upper(obj.get("currency")),
                provider_ref=reference(obj.get("payment_intent")),
            )
        ]
    if kind in REFUND_EVENTS:
        refund_id = ours(obj, "refund_id")
        if refund_id is None:
            return []  # a refund made in the Dashboard, or by something else
        refunded = refund_state(text(obj.get("status")))
        return [
            RefundNotice(
                refund_id=refund_id,
                state=refunded,
                event_id=event_id,
                amount=count(obj.get("amount")),
                provider_ref=text(obj.get("id")),
                error=text(obj.get("failure_reason")) if refunded is RefundState.FAILED else None,
            )
        ]
    return []


#: Balance transaction types that are a payment's money coming in, or going back.
CHARGE_TYPES = frozenset({"charge", "payment"})
REFUND_TYPES = frozenset({"refund", "payment_refund"})
#: What ``statement`` asks Stripe to expand on each balance transaction.
STATEMENT_EXPAND = ["data.source", "data.source.payment_intent"]


def balance_line(txn: Mapping[str, Any]) -> StatementLine | None:
    """A balance transaction (its ``source`` expanded, and the source's ``payment_intent``) as a statement
    line; ``None`` for one that is no payment or refund of ours (module docstring). ``ValueError`` when a
    charge or refund comes without its expanded source or amount."""
    kind = txn.get("type")
    if kind not in CHARGE_TYPES and kind not in REFUND_TYPES:
        return None
    source = txn.get("source")
    if not isinstance(source, Mapping):
        raise ValueError(f"balance transaction {txn.get('id')} has no expanded source")
    amount = count(source.get("amount"))
    created = count(txn.get("created"))
    if amount is None or created is None:
        raise ValueError(f"balance transaction {txn.get('id')} has no source amount or created time")
    intent = source.get("payment_intent")
    payment_id = (ours(intent, "payment_id") if isinstance(intent, Mapping) else None) or ours(
        source, "payment_id"
    )
    if kind in CHARGE_TYPES:
        if payment_id is None:
            return None
        return StatementLine(
            kind="payment",
            payment_id=payment_id,
            refund_id=None,
            amount=abs(amount),
            provider_ref=reference(intent) or text(source.get("id")),
            at_ms=created * 1000,
        )
    refund_id = ours(source, "refund_id")
    if refund_id is None:
        return None
    return StatementLine(
        kind="refund",
        payment_id=payment_id or "",
        refund_id=refund_id,
        amount=abs(amount),
        provider_ref=text(source.get("id")),
        at_ms=created * 1000,
        status=refund_state(text(source.get("status"))).value,
    )


def search_literal(value: str) -> str:
    """A string as a Stripe Search query literal: single-quoted, ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_settings(settings: Settings) -> tuple[str, str, str]:
    """``(secret key, webhook secret, API base)``, or ``ValueError`` naming what is wrong."""
    key = secret_text(settings.stripe_secret_key)
    if not key:
        raise ValueError("LIVECART_STRIPE_SECRET_KEY is not set")
    if key.startswith("pk_"):
        raise ValueError(
            "LIVECART_STRIPE_SECRET_KEY holds a publishable key (pk_...); the server needs the secret key "
            "(sk_live_.../sk_test_...) or a restricted key (rk_...)"
        )
    if not key.startswith(("sk_", "rk_")) or any(c.isspace() for c in key):
        raise ValueError(
            "LIVECART_STRIPE_SECRET_KEY must be a Stripe secret key (sk_live_.../sk_test_...) or a "
            "restricted key (rk_...)"
        )
    webhook_secret = secret_text(settings.stripe_webhook_secret)
    if not webhook_secret.startswith("whsec_") or len(webhook_secret) <= len("whsec_"):
        raise ValueError(
            "LIVECART_STRIPE_WEBHOOK_SECRET must be the webhook endpoint's signing secret (whsec_...)"
        )
    base = settings.stripe_api_base.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"LIVECART_STRIPE_API_BASE must be an http(s) URL, not {settings.stripe_api_base!r}")
    return key, webhook_secret, base


def secret_text(value: object) -> str:
    if value is None:
        return ""
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if reveal else value).strip()


# -- the SDK's HTTP client, fixed -----------------------------------------------------------------------


class _HTTPXClient(stripe.HTTPXClient):
    """``stripe.HTTPXClient`` with its request body passed to httpx as ``content=`` (the SDK passes the
    encoded form as ``data=<str>``, deprecated by httpx since 0.18: a ``DeprecationWarning`` each time)."""

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._client_async.request(
                method, url, headers=headers, content=post_data, timeout=self._timeout
            )
        except Exception as exc:  # the SDK's own: any transport failure is an APIConnectionError
            self._handle_request_error(exc)
        return response.content, response.status_code, response.headers


# -- the provider -----------------------------------------------------------------------------------------


class StripePay:
    """Stripe Checkout (see the module docstring). One instance per process, used from one event loop (its
    httpx connections belong to the loop that opened them); ``aclose`` at shutdown."""

    name = "stripe"
    channels: tuple[Channel, ...] = (Channel.CHECKOUT,)

    def __init__(self, settings: Settings) -> None:
        key, self._webhook_secret, base = check_settings(settings)
        self._key = key
        self._timeout = settings.payment_provider_timeout_seconds
        self._tolerance = settings.webhook_tolerance_seconds
        self._http = _HTTPXClient(timeout=self._timeout)
        self._stripe = stripe.StripeClient(
            key, base_addresses={"api": base}, http_client=self._http, max_network_retries=0
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- create ------------------------------------------------------------------------------------

    async def create(self, request: PaymentRequest) -> Checkout:
        if request.channel is not Channel.CHECKOUT:
            raise ValueError(f"Stripe serves the checkout channel only, not {request.channel}")
        expires_at = checkout_expires_at(request.expires_ms, now_s=int(time.time()))
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount,
                        "product_data": {"name": request.description or request.payment_id},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": request.payment_id,
            "metadata": {"payment_id": request.payment_id},
            "payment_intent_data": {"metadata": {"payment_id": request.payment_id}},
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "expires_at": expires_at,
        }
        async with self._talking("creating the Checkout Session"):
            session = await self._stripe.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
        if not session.url:
            raise ProviderError("Stripe made a Checkout Session without a URL to send the buyer to")
        return Checkout(data={"redirect_url": session.url}, provider_ref=session.id)

    # -- verify ------------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes, *, now_s: int) -> Notification:
        header = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        if not header:
            raise NotificationRejected("no Stripe-Signature header")
        try:
            # tolerance=0: the SDK would check the timestamp against the wall clock; it is checked below
            # against now_s instead (module docstring).
            event = self._stripe.construct_event(body, header, self._webhook_secret, tolerance=0)
        except stripe.SignatureVerificationError as exc:
            raise NotificationRejected(f"the Stripe signature does not verify: {exc.user_message}") from None
        except (ValueError, TypeError, AttributeError) as exc:  # not UTF-8, JSON, an object, a v1 event
            raise NotificationRejected(f"the body is not a Stripe event: {type(exc).__name__}") from None
        try:
            age = now_s - signed_at(header)  # (the SDK has parsed it already)
        except (ValueError, IndexError):
            raise NotificationRejected("the Stripe-Signature header has no timestamp") from None
        if age > self._tolerance:
            raise NotificationRejected(f"the signature is stale: signed {age} s ago")
        if -age > self._tolerance:
            raise NotificationRejected(f"the signature is from the future: {-age} s ahead")
        try:
            notices = notices_of(event.to_dict())
        except ValueError as exc:
            raise NotificationRejected(f"the Stripe event does not parse: {exc}") from None
        return Notification(notices=notices, reply=WEBHOOK_REPLY)

    # -- query and close ---------------------------------------------------------------------------

    async def query(self, payment_id: str) -> PaymentNotice:
        async with self._talking("looking up the payment"):
            sessions = await self._sessions_of(payment_id)
            if sessions:
                session, state = await self._deciding(sessions)
                return PaymentNotice(
                    payment_id=payment_id,
                    state=state,
                    event_id=f"query:{payment_id}:{state}",
                    amount=session.amount_total,
                    currency=upper(session.currency),
                    provider_ref=reference(session.payment_intent),
                )
            return await self._query_intent(payment_id)

    async def close(self, payment_id: str) -> None:
        async with self._talking("expiring the Checkout Session"):
            sessions = await self._sessions_of(payment_id)
            if not sessions:
                notice = await self._query_intent(payment_id)
                if notice.state in (PaymentState.SUCCEEDED, PaymentState.PENDING):
                    raise PaymentAlreadyPaid(f"payment {payment_id} was paid at Stripe ({notice.state})")
                return
            for session in sessions:
                await self._refuse_if_paid(payment_id, session)
            for session in sessions:
                if session.status != "open":
                    continue
                try:
                    await self._stripe.v1.checkout.sessions.expire_async(session.id)
                except stripe.InvalidRequestError:
                    # no longer open: completed (or expired) since it was listed
                    fresh = await self._stripe.v1.checkout.sessions.retrieve_async(session.id)
                    await self._refuse_if_paid(payment_id, fresh)
                    if fresh.status == "open":
                        raise

    async def _refuse_if_paid(self, payment_id: str, session: Session) -> None:
        """``PaymentAlreadyPaid`` for a completed session that took or is taking the money."""
        if session.status != "complete":
            return
        state = await self._state_of(session)
        if state in (PaymentState.SUCCEEDED, PaymentState.PENDING):
            raise PaymentAlreadyPaid(f"payment {payment_id} was paid at Stripe ({state})")

    async def _sessions_of(self, payment_id: str) -> list[Session]:
        since = int(time.time()) - SESSION_WINDOW_S
        page = await self._stripe.v1.checkout.sessions.list_async({"created": {"gte": since}, "limit": PAGE})
        return [s async for s in page.auto_paging_iter() if s.client_reference_id == payment_id]

    async def _state_of(self, session: Session) -> PaymentState:
        intent_status = None
        intent_id = reference(session.payment_intent)
        if session.status == "complete" and session.payment_status == "unpaid" and intent_id:
            intent = await self._stripe.v1.payment_intents.retrieve_async(intent_id)
            intent_status = intent.status
        return session_state(session.status, session.payment_status, intent_status)

    async def _deciding(self, sessions: list[Session]) -> tuple[Session, PaymentState]:
        """The session that speaks for a payment (``PRECEDENCE``; the newest among equals) and its state."""
        states = [(await self._state_of(s), s) for s in sessions]
        state, session = min(states, key=lambda pair: PRECEDENCE.index(pair[0]))
        return session, state

    async def _query_intent(self, payment_id: str) -> PaymentNotice:
        """A payment with no session in the last day, from the PaymentIntent that names it."""
        found = await self._stripe.v1.payment_intents.search_async(
            {"query": f"metadata['payment_id']:{search_literal(payment_id)}", "limit": PAGE}
        )
        intents = [i async for i in found.auto_paging_iter()]
        if not intents:
            state = PaymentState.CLOSED  # no session can be open after a day; none was paid
            return PaymentNotice(payment_id=payment_id, state=state, event_id=f"query:{payment_id}:{state}")
        intent = min(intents, key=lambda i: PRECEDENCE.index(intent_state(i.status)))
        state = intent_state(intent.status)
        return PaymentNotice(
            payment_id=payment_id,
            state=state,
            event_id=f"query:{payment_id}:{state}",
            amount=intent.amount_received if state is PaymentState.SUCCEEDED else intent.amount,
            currency=upper(intent.currency),
            provider_ref=intent.id,
        )

    # -- refunds -----------------------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundNotice:
        async with self._talking("refunding"):
            intent_id = request.provider_ref
            if intent_id is None or not intent_id.startswith("pi_"):  # unknown, or the session's id
                paid = await self.query(request.payment_id)
                intent_id = paid.provider_ref if paid.state is PaymentState.SUCCEEDED else None
            if intent_id is None:
                raise ProviderError(f"payment {request.payment_id} has no succeeded payment at Stripe")
            existing = await self._stripe.v1.refunds.list_async({"payment_intent": intent_id, "limit": PAGE})
            async for refund in existing.auto_paging_iter():
                if ours(refund.to_dict(), "refund_id") == request.refund_id:
                    return self._refund_notice(request.refund_id, refund)
            refund = await self._stripe.v1.refunds.create_async(
                {
                    "payment_intent": intent_id,
                    "amount": request.amount,
                    "metadata": {
                        "refund_id": request.refund_id,
                        "payment_id": request.payment_id,
                        "reason": request.reason[:METADATA_VALUE_MAX],
                    },
                },
                {"idempotency_key": request.refund_id},
            )
            return self._refund_notice(request.refund_id, refund)

    async def query_refund(self, refund_id: str, *, payment_id: str | None = None) -> RefundNotice:
        async with self._talking("looking up the refund"):
            since = int(time.time()) - REFUND_WINDOW_S
            page = await self._stripe.v1.refunds.list_async({"created": {"gte": since}, "limit": PAGE})
            async for refund in page.auto_paging_iter():
                if ours(refund.to_dict(), "refund_id") == refund_id:
                    return self._refund_notice(refund_id, refund)
        state = RefundState.FAILED
        return RefundNotice(
            refund_id=refund_id,
            state=state,
            event_id=f"query:{refund_id}:{state}",
            error="Stripe has no refund with this refund_id (made in the last 30 days)",
        )

    @staticmethod
    def _refund_notice(refund_id: str, refund: stripe.Refund) -> RefundNotice:
        state = refund_state(refund.status)
        return RefundNotice(
            refund_id=refund_id,
            state=state,
            event_id=f"query:{refund_id}:{state}",
            amount=refund.amount,
            provider_ref=refund.id,
            error=refund.failure_reason if state is RefundState.FAILED else None,
        )

    # -- statement ---------------------------------------------------------------------------------

    statement_zone = UTC

    async def statement(self, day: date) -> list[StatementLine]:
        """The balance transactions of ``day`` (UTC) that are our payments and refunds (module docstring)."""
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        end = int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp())
        params: dict[str, Any] = {
            "created": {"gte": start, "lt": end},
            "limit": PAGE,
            "expand": STATEMENT_EXPAND,
        }
        lines: list[StatementLine] = []
        while True:  # page by page, each within the timeout (a busy day has many)
            async with self._talking(f"listing the balance transactions of {day.isoformat()}"):
                page = await self._stripe.v1.balance_transactions.list_async(params)  # type: ignore[arg-type]
            for txn in page.data:
                try:
                    line = balance_line(txn.to_dict())
                except ValueError as exc:
                    raise ProviderError(f"Stripe's balance transaction does not read: {exc}") from None
                if line is not None:
                    lines.append(line)
            if not page.has_more or not page.data:
                return lines
            params["starting_after"] = page.data[-1].id

    # -- errors ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _talking(self, what: str) -> AsyncIterator[None]:
        """One call to Stripe, however many requests: within the timeout, its failures ``ProviderError``."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError:
            raise ProviderError(f"Stripe did not answer {what} within {self._timeout:g} s") from None
        except stripe.APIConnectionError as exc:
            cause = exc.__cause__
            if cause is not None and "timeout" in type(cause).__name__.lower():
                reason = f"timed out ({type(cause).__name__})"
            else:
                reason = type(cause).__name__ if cause is not None else "connection failed"
            raise ProviderError(f"Stripe could not be reached {what}: {reason}") from None
        except stripe.StripeError as exc:
            raise ProviderError(self._scrub(f"Stripe refused {what}: {describe(exc)}")) from None

    def _scrub(self, message: str) -> str:
        for secret in (self._key, self._webhook_secret):
            message = message.replace(secret, "***")
        return message[:300]


def describe(exc: stripe.StripeError) -> str:
    """Stripe's error in a few words: HTTP status, type or code, message."""
    kind = exc.code or (exc.error.type if exc.error is not None else None)
    words = [f"HTTP {exc.http_status}" if exc.http_status else None, kind or type(exc).__name__]
    return ", ".join(w for w in words if w) + f": {exc.user_message or 'no message'}"
