"""Stripe Checkout (``shop.payments.stripe_pay``): the real ``stripe`` SDK against a local server that answers
in Stripe's documented format, checks the API key, and keeps the sessions, PaymentIntents and refunds it
was asked for (``tests/fake_stripe.py``); webhooks signed as Stripe signs them, with the endpoint secret
the fake made up.

A Checkout Session carries the payment's amount, currency, name, our id (as ``client_reference_id`` and in
the session's and PaymentIntent's metadata), return URL and an expiry raised to Stripe's 30 minutes; a
signed event becomes the notice its type means and a tampered, forged, stale or future one is rejected;
query and close find the session by our id alone; refunds reach Stripe with their amounts and our id as
the idempotency key and are never made twice; a Stripe that fails, hangs or is gone is a
``ProviderError`` within the timeout; a broken set-up refuses to start.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from base.settings import Settings
from loadtests.harness import Port
from shop.payments.provider import (
    Channel,
    NotificationRejected,
    PaymentAlreadyPaid,
    PaymentNotice,
    PaymentRequest,
    PaymentState,
    ProviderError,
    RefundNotice,
    RefundRequest,
    RefundState,
)
from shop.payments.stripe_pay import CHECKOUT_MIN_LIFETIME_S, SESSION_WINDOW_S, StripePay
from tests.conftest import make_settings
from tests.fake_stripe import FakeStripe

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
RETURN_URL = "https://shop.example/orders/ord_1"


def settings_for(fake: FakeStripe, tmp_path: Path, **overrides: Any) -> Settings:
    values = {**fake.settings(tmp_path), "payment_provider_timeout_seconds": TIMEOUT, **overrides}
    return make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/6", tmp_path, **values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    stripe_fake = FakeStripe()
    async with stripe_fake.server():
        yield stripe_fake


@pytest.fixture
async def provider(fake: FakeStripe, tmp_path: Path) -> AsyncIterator[StripePay]:
    stripe_pay = StripePay(settings_for(fake, tmp_path))
    yield stripe_pay
    await stripe_pay.aclose()


def payment(payment_id: str, *, amount: int = 1999, expires_in_s: float = 300) -> PaymentRequest:
    return PaymentRequest(
        payment_id=payment_id,
        amount=amount,
        currency="USD",
        description="Jade bracelet",
        channel=Channel.CHECKOUT,
        expires_ms=int((time.time() + expires_in_s) * 1000),
        notify_url="https://shop.example/api/payments/stripe/webhook",
        return_url=RETURN_URL,
        client_ip="203.0.113.7",
    )


def refund(refund_id: str, payment_id: str, amount: int, provider_ref: str | None) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment_id,
        provider_ref=provider_ref,
        amount=amount,
        payment_amount=1999,
        currency="USD",
        reason="the bracelet arrived broken",
        notify_url="https://shop.example/api/payments/stripe/webhook",
    )


# -- create ------------------------------------------------------------------------------------------


async def test_a_checkout_session_carries_the_payment(fake: FakeStripe, provider: StripePay) -> None:
    before = int(time.time())
    checkout = await provider.create(payment("pay_1", expires_in_s=300))
    session = fake.session_for("pay_1")
    assert checkout.provider_ref == session["id"] and session["id"].startswith("cs_test_")
    assert checkout.data == {"redirect_url": session["url"]}
    params = fake.session_params[session["id"]]
    assert params["mode"] == "payment"
    (line,) = params["line_items"]
    assert line == {
        "price_data": {"currency": "usd", "unit_amount": "1999", "product_data": {"name": "Jade bracelet"}},
        "quantity": "1",
    }
    assert (session["amount_total"], session["currency"]) == (1999, "usd")
    assert params["client_reference_id"] == "pay_1"
    assert params["metadata"] == {"payment_id": "pay_1"}
    assert params["payment_intent_data"] == {"metadata": {"payment_id": "pay_1"}}
    assert params["success_url"] == params["cancel_url"] == RETURN_URL
    # a 5-minute reservation: raised to Stripe's 30 minutes (and a margin), not refused
    lifetime = session["expires_at"] - before
    assert CHECKOUT_MIN_LIFETIME_S < lifetime <= CHECKOUT_MIN_LIFETIME_S + 120
    (call,) = fake.calls("POST", "/v1/checkout/sessions")
    assert call.idempotency_key and fake.bad_auth == 0


async def test_a_long_reservation_is_the_sessions_expiry(fake: FakeStripe, provider: StripePay) -> None:
    request = payment("pay_2", expires_in_s=2 * 3600 + 0.4)
    await provider.create(request)
    assert fake.session_for("pay_2")["expires_at"] == -(-request.expires_ms // 1000)  # rounded up


async def test_a_wrong_api_key_is_a_provider_error_that_does_not_show_it(
    fake: FakeStripe, tmp_path: Path
) -> None:
    wrong = "sk_test_" + "x" * 30
    stripe_pay = StripePay(settings_for(fake, tmp_path, stripe_secret_key=wrong))
    try:
        with pytest.raises(ProviderError, match="HTTP 401") as refused:
            await stripe_pay.create(payment("pay_3"))
    finally:
        await stripe_pay.aclose()
    assert wrong not in str(refused.value) and fake.bad_auth == 1 and fake.sessions == {}


# -- verify ------------------------------------------------------------------------------------------


async def test_a_signed_paid_event_is_a_succeeded_notice(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_4"))
    intent = fake.pay("pay_4")
    headers, body = fake.payment_notification("pay_4")
    notification = provider.verify(headers, body, now_s=int(time.time()))
    event_id = json.loads(body)["id"]
    assert notification.notices == [
        PaymentNotice(
            payment_id="pay_4",
            state=PaymentState.SUCCEEDED,
            event_id=event_id,
            amount=1999,
            currency="USD",
            provider_ref=intent["id"],
        )
    ]
    assert (notification.reply.status, json.loads(notification.reply.body)) == (200, {"received": True})
    # Stripe's redelivery: the same event, signed again later: the same event id
    later = int(time.time()) + 120
    again = provider.verify(*fake.redeliver(event_id, timestamp=later), now_s=later)
    assert again.notices == notification.notices
    # a wrong amount is reported as Stripe says it (the service compares it with the order)
    headers, body = fake.payment_notification("pay_4", amount=1)
    (wrong,) = provider.verify(headers, body, now_s=int(time.time())).notices
    assert isinstance(wrong, PaymentNotice) and wrong.amount == 1


async def test_each_checkout_event_maps_to_its_state(fake: FakeStripe, provider: StripePay) -> None:
    now = int(time.time())
    await provider.create(payment("pay_5"))
    fake.pay("pay_5", delayed=True)
    # a delayed method: the session completes unpaid, and that says nothing yet
    assert provider.verify(*fake.payment_notification("pay_5"), now_s=now).notices == []
    expected = {
        "checkout.session.async_payment_succeeded": PaymentState.SUCCEEDED,
        "checkout.session.async_payment_failed": PaymentState.FAILED,
        "checkout.session.expired": PaymentState.CLOSED,
    }
    for kind, state in expected.items():
        (notice,) = provider.verify(*fake.payment_notification("pay_5", type=kind), now_s=now).notices
        assert isinstance(notice, PaymentNotice) and (notice.payment_id, notice.state) == ("pay_5", state)
    # other events are acknowledged and ignored
    ignored = provider.verify(*fake.payment_notification("pay_5", type="customer.created"), now_s=now)
    assert ignored.notices == [] and ignored.reply.status == 200


@pytest.mark.parametrize(
    "fault",
    ["tampered", "wrong_secret", "missing", "no_v1", "stale", "future", "garbage", "array", "added_t"],
)
async def test_a_notification_that_does_not_verify_is_rejected(
    fault: str, fake: FakeStripe, provider: StripePay
) -> None:
    now = int(time.time())
    await provider.create(payment("pay_6"))
    fake.pay("pay_6")
    headers, body = fake.payment_notification("pay_6", timestamp=now)
    provider.verify(headers, body, now_s=now)  # as sent, it verifies
    tolerance = 300
    if fault == "tampered":
        body = body.replace(b'"amount_total": 1999', b'"amount_total": 1')
    elif fault == "wrong_secret":
        headers, body = fake.payment_notification("pay_6", secret="whsec_" + "y" * 32)
    elif fault == "missing":
        headers = {}
    elif fault == "no_v1":
        headers = {"Stripe-Signature": headers["Stripe-Signature"].replace("v1=", "v0=")}
    elif fault == "stale":
        headers, body = fake.payment_notification("pay_6", timestamp=now - tolerance - 1)
    elif fault == "added_t":  # a fresh " t=" (which the SDK skips) in front of a stale, signed header
        headers, body = fake.payment_notification("pay_6", timestamp=now - tolerance - 1)
        headers = {"Stripe-Signature": f" t={now}," + headers["Stripe-Signature"]}
    elif fault == "future":
        headers, body = fake.payment_notification("pay_6", timestamp=now + tolerance + 1)
    elif fault == "array":  # JSON, signed, but no event
        headers, body = fake.sign(b"[1, 2]"), b"[1, 2]"
    else:
        headers, body = fake.sign(b"not json"), b"not json"
    with pytest.raises(NotificationRejected):
        provider.verify(headers, body, now_s=now)


async def test_the_timestamp_is_checked_against_now_s(fake: FakeStripe, provider: StripePay) -> None:
    """The tolerance is measured from the ``now_s`` given, not the wall clock."""
    await provider.create(payment("pay_7"))
    fake.pay("pay_7")
    signed = int(time.time()) - 3600
    headers, body = fake.payment_notification("pay_7", timestamp=signed)
    assert len(provider.verify(headers, body, now_s=signed + 10).notices) == 1
    with pytest.raises(NotificationRejected, match="stale"):
        provider.verify(headers, body, now_s=signed + 301)


# -- query and close --------------------------------------------------------------------------------


async def test_query_follows_the_payment(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_8"))
    pending = await provider.query("pay_8")
    assert (pending.state, pending.event_id) == (PaymentState.PENDING, "query:pay_8:pending")
    intent = fake.pay("pay_8")
    paid = await provider.query("pay_8")
    assert paid == PaymentNotice(
        payment_id="pay_8",
        state=PaymentState.SUCCEEDED,
        event_id="query:pay_8:succeeded",
        amount=1999,
        currency="USD",
        provider_ref=intent["id"],
    )
    await provider.create(payment("pay_9"))
    fake.expire("pay_9")
    assert (await provider.query("pay_9")).state is PaymentState.CLOSED


async def test_query_of_a_delayed_payment_reads_its_payment_intent(
    fake: FakeStripe, provider: StripePay
) -> None:
    for payment_id, succeeded in (("pay_10", True), ("pay_11", False)):
        await provider.create(payment(payment_id))
        fake.pay(payment_id, delayed=True)
        assert (await provider.query(payment_id)).state is PaymentState.PENDING
        fake.settle_delayed(payment_id, succeeded=succeeded)
        expected = PaymentState.SUCCEEDED if succeeded else PaymentState.FAILED
        assert (await provider.query(payment_id)).state is expected


async def test_query_pages_through_the_days_sessions(fake: FakeStripe, provider: StripePay) -> None:
    fake.max_page = 2
    await provider.create(payment("pay_12"))
    for n in range(5):
        await provider.create(payment(f"pay_other_{n}"))
    fake.pay("pay_12")
    assert (await provider.query("pay_12")).state is PaymentState.SUCCEEDED
    lists = fake.calls("GET", "/v1/checkout/sessions")
    assert len(lists) == 3 and lists[1].params["starting_after"]


async def test_a_payment_older_than_a_day_is_found_by_its_payment_intent(
    fake: FakeStripe, provider: StripePay
) -> None:
    await provider.create(payment("pay_13"))
    intent = fake.pay("pay_13")
    fake.backdate("pay_13", SESSION_WINDOW_S + 3600)
    paid = await provider.query("pay_13")
    assert (paid.state, paid.amount, paid.currency, paid.provider_ref) == (
        PaymentState.SUCCEEDED,
        1999,
        "USD",
        intent["id"],
    )
    (search,) = fake.calls("GET", "/v1/payment_intents/search")
    assert search.params["query"] == "metadata['payment_id']:'pay_13'"
    with pytest.raises(PaymentAlreadyPaid):
        await provider.close("pay_13")
    assert (await provider.query("pay_unknown")).state is PaymentState.CLOSED
    await provider.close("pay_unknown")  # nothing to close


async def test_close_expires_the_open_session(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_14"))
    session = fake.session_for("pay_14")
    await provider.close("pay_14")
    assert session["status"] == "expired"
    assert [c.path for c in fake.calls("POST", "/v1/checkout/sessions/")] == [
        f"/v1/checkout/sessions/{session['id']}/expire"
    ]
    with pytest.raises(ValueError, match="expired"):
        fake.pay("pay_14")  # the buyer can no longer pay
    await provider.close("pay_14")  # again: nothing left to expire, and no error
    assert len(fake.calls("POST", "/v1/checkout/sessions/")) == 1
    assert (await provider.query("pay_14")).state is PaymentState.CLOSED


async def test_close_after_paying_is_already_paid(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_15"))
    fake.pay("pay_15")
    with pytest.raises(PaymentAlreadyPaid):
        await provider.close("pay_15")
    # the buyer pays just as the session is being expired: Stripe refuses to expire a completed session
    await provider.create(payment("pay_16"))
    fake.on_expire = lambda session_id: fake.pay("pay_16")
    with pytest.raises(PaymentAlreadyPaid):
        await provider.close("pay_16")
    assert fake.session_for("pay_16")["status"] == "complete"
    # a delayed payment under way cannot be closed either; a failed one has nothing to close
    fake.on_expire = None
    await provider.create(payment("pay_17"))
    fake.pay("pay_17", delayed=True)
    with pytest.raises(PaymentAlreadyPaid):
        await provider.close("pay_17")
    fake.settle_delayed("pay_17", succeeded=False)
    await provider.close("pay_17")


# -- refunds -----------------------------------------------------------------------------------------


async def test_partial_then_full_refund(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_18"))
    intent = fake.pay("pay_18")
    fake.refund_status = "pending"
    first = await provider.refund(refund("rfd_1", "pay_18", 500, intent["id"]))
    stripe_refund = fake.refund_for("rfd_1")
    assert first == RefundNotice(
        refund_id="rfd_1",
        state=RefundState.PROCESSING,
        event_id="query:rfd_1:processing",
        amount=500,
        provider_ref=stripe_refund["id"],
    )
    (call,) = fake.calls("POST", "/v1/refunds")
    assert call.idempotency_key == "rfd_1"
    assert (call.params["payment_intent"], call.params["amount"]) == (intent["id"], "500")
    assert call.params["metadata"] == {
        "refund_id": "rfd_1",
        "payment_id": "pay_18",
        "reason": "the bracelet arrived broken",
    }
    # Stripe's refund.updated completes it
    headers, body = fake.refund_notification("rfd_1", status="succeeded")
    (notice,) = provider.verify(headers, body, now_s=int(time.time())).notices
    assert notice == RefundNotice(
        refund_id="rfd_1",
        state=RefundState.SUCCEEDED,
        event_id=json.loads(body)["id"],
        amount=500,
        provider_ref=stripe_refund["id"],
    )
    assert (await provider.query_refund("rfd_1")).state is RefundState.SUCCEEDED
    # the rest; more than is left is Stripe's refusal
    fake.refund_status = "succeeded"
    with pytest.raises(ProviderError, match="greater than unrefunded amount"):
        await provider.refund(refund("rfd_2", "pay_18", 1500, intent["id"]))
    rest = await provider.refund(refund("rfd_3", "pay_18", 1499, intent["id"]))
    assert (rest.state, rest.amount) == (RefundState.SUCCEEDED, 1499)
    assert sum(r["amount"] for r in fake.refunds.values()) == 1999


async def test_a_refund_is_never_made_twice(fake: FakeStripe, provider: StripePay) -> None:
    await provider.create(payment("pay_19"))
    fake.pay("pay_19")
    # without the PaymentIntent's id (the service lost it): found through the payment
    first = await provider.refund(refund("rfd_4", "pay_19", 700, None))
    assert fake.refund_for("rfd_4")["payment_intent"] == fake.session_for("pay_19")["payment_intent"]
    # (or with the session's id for it, the checkout's provider_ref)
    again = await provider.refund(refund("rfd_4", "pay_19", 700, fake.session_for("pay_19")["id"]))
    assert first == again and len(fake.refunds) == 1 and len(fake.calls("POST", "/v1/refunds")) == 1
    # a failed refund is reported with Stripe's reason, by webhook and by query
    headers, body = fake.refund_notification(
        "rfd_4", status="failed", failure_reason="expired_or_canceled_card"
    )
    (notice,) = provider.verify(headers, body, now_s=int(time.time())).notices
    assert isinstance(notice, RefundNotice)
    assert (notice.state, notice.error) == (RefundState.FAILED, "expired_or_canceled_card")
    assert (await provider.query_refund("rfd_4")).error == "expired_or_canceled_card"


async def test_a_refund_stripe_never_saw_is_failed_on_query(fake: FakeStripe, provider: StripePay) -> None:
    notice = await provider.query_refund("rfd_never")
    assert (notice.state, notice.event_id) == (RefundState.FAILED, "query:rfd_never:failed")
    with pytest.raises(ProviderError, match="no succeeded payment"):
        await provider.refund(refund("rfd_5", "pay_never", 100, None))


async def test_the_fake_honours_idempotency_keys(fake: FakeStripe) -> None:
    """What the provider relies on when a refund is retried within a day."""
    assert fake.api_base is not None
    intent_id = "pi_seeded"
    fake.payment_intents[intent_id] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 1000,
        "amount_received": 1000,
        "currency": "usd",
        "created": int(time.time()),
        "latest_charge": "ch_seeded",
        "metadata": {},
        "status": "succeeded",
    }
    auth = {"Authorization": f"Bearer {fake.secret_key}", "Idempotency-Key": "k1"}
    async with httpx.AsyncClient(base_url=fake.api_base) as client:
        first = await client.post(
            "/v1/refunds", data={"payment_intent": intent_id, "amount": "300"}, headers=auth
        )
        again = await client.post(
            "/v1/refunds", data={"payment_intent": intent_id, "amount": "300"}, headers=auth
        )
        other = await client.post(
            "/v1/refunds", data={"payment_intent": intent_id, "amount": "400"}, headers=auth
        )
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true" and len(fake.refunds) == 1
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"


# -- failures ----------------------------------------------------------------------------------------


async def test_a_stripe_error_is_a_provider_error(fake: FakeStripe, provider: StripePay) -> None:
    fake.fail_with = 500
    started = time.monotonic()
    with pytest.raises(ProviderError, match="HTTP 500"):
        await provider.create(payment("pay_20"))
    with pytest.raises(ProviderError, match="HTTP 500"):
        await provider.query("pay_20")
    assert time.monotonic() - started < TIMEOUT


async def test_a_stripe_that_hangs_or_is_gone_is_a_provider_error_within_the_timeout(
    fake: FakeStripe, provider: StripePay, tmp_path: Path
) -> None:
    fake.delay = 3 * TIMEOUT
    for call in (provider.create(payment("pay_21")), provider.query("pay_21"), provider.close("pay_21")):
        started = time.monotonic()
        with pytest.raises(ProviderError, match=r"within|timed out"):
            await call
        assert time.monotonic() - started < TIMEOUT + 0.5
    with Port() as gone:  # bound, never listening: every connection is refused
        stripe_pay = StripePay(settings_for(fake, tmp_path, stripe_api_base=gone.url))
        try:
            with pytest.raises(ProviderError, match="could not be reached"):
                await stripe_pay.refund(refund("rfd_6", "pay_21", 100, "pi_x"))
        finally:
            await stripe_pay.aclose()


# -- set-up ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stripe_secret_key": None}, "LIVECART_STRIPE_SECRET_KEY is not set"),
        ({"stripe_secret_key": "pk_test_abc"}, "publishable key"),
        ({"stripe_secret_key": "not-a-key"}, "must be a Stripe secret key"),
        ({"stripe_webhook_secret": None}, "LIVECART_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_webhook_secret": "secret"}, "LIVECART_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_api_base": "ftp://api.stripe.com"}, "LIVECART_STRIPE_API_BASE"),
        ({"stripe_api_base": "https://"}, "LIVECART_STRIPE_API_BASE"),
    ],
)
def test_a_broken_set_up_refuses_to_start(overrides: dict[str, Any], message: str, tmp_path: Path) -> None:
    fake = FakeStripe(api_base="https://api.stripe.com")
    with pytest.raises(ValueError, match=message):
        StripePay(settings_for(fake, tmp_path, **overrides))
