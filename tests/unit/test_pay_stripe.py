"""The pure decisions of the Stripe provider (``shop.payments.stripe_pay``): the Checkout Session's expiry
within Stripe's bounds, Stripe's states as LiveCart's, a verified event as notices, the signed timestamp
read as the SDK reads it."""

from __future__ import annotations

from typing import Any

import pytest

from shop.payments.provider import PaymentNotice, PaymentState, RefundNotice, RefundState
from shop.payments.stripe_pay import (
    checkout_expires_at,
    intent_state,
    notices_of,
    refund_state,
    search_literal,
    session_state,
    signed_at,
)

NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("expires_in_ms", "expected_in_s"),
    [
        (5 * 60_000, 31 * 60),  # shorter than Stripe's 30 minutes: raised, with a minute's margin
        (2 * 3_600_000 + 1, 2 * 3600 + 1),  # within the bounds: the reservation's end, rounded up
        (-60_000, 31 * 60),  # already over (the service closes it): still a valid request
        (48 * 3_600_000, 24 * 3600 - 60),  # past Stripe's 24 hours: lowered
    ],
)
def test_the_expiry_is_the_reservations_within_stripes_bounds(expires_in_ms: int, expected_in_s: int) -> None:
    assert checkout_expires_at(NOW * 1000 + expires_in_ms, now_s=NOW) == NOW + expected_in_s


@pytest.mark.parametrize(
    ("status", "payment_status", "intent_status", "state"),
    [
        ("open", "unpaid", None, PaymentState.PENDING),
        ("expired", "unpaid", None, PaymentState.CLOSED),
        ("complete", "paid", "succeeded", PaymentState.SUCCEEDED),
        ("complete", "paid", None, PaymentState.SUCCEEDED),
        ("complete", "unpaid", "processing", PaymentState.PENDING),  # a bank debit under way
        ("complete", "unpaid", "succeeded", PaymentState.SUCCEEDED),  # the session not updated yet
        ("complete", "unpaid", "requires_payment_method", PaymentState.FAILED),  # the debit failed
        ("complete", "unpaid", None, PaymentState.FAILED),
    ],
)
def test_a_sessions_state(
    status: str, payment_status: str, intent_status: str | None, state: PaymentState
) -> None:
    assert session_state(status, payment_status, intent_status) is state


def test_a_payment_intents_state() -> None:
    assert intent_state("succeeded") is PaymentState.SUCCEEDED
    assert intent_state("processing") is PaymentState.PENDING
    assert intent_state("requires_payment_method") is PaymentState.FAILED
    assert intent_state("canceled") is PaymentState.CLOSED
    assert intent_state(None) is PaymentState.CLOSED


def test_a_refunds_state() -> None:
    assert refund_state("succeeded") is RefundState.SUCCEEDED
    assert refund_state("pending") is RefundState.PROCESSING
    assert refund_state("requires_action") is RefundState.PROCESSING
    assert refund_state("failed") is RefundState.FAILED
    assert refund_state("canceled") is RefundState.FAILED


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": "evt_1", "object": "event", "type": kind, "data": {"object": obj}}


SESSION = {
    "id": "cs_1",
    "object": "checkout.session",
    "amount_total": 1999,
    "currency": "usd",
    "client_reference_id": "pay_1",
    "metadata": {"payment_id": "pay_1"},
    "payment_intent": "pi_1",
    "payment_status": "paid",
    "status": "complete",
}


def test_a_paid_session_event_is_a_succeeded_notice() -> None:
    assert notices_of(event("checkout.session.completed", SESSION)) == [
        PaymentNotice(
            payment_id="pay_1",
            state=PaymentState.SUCCEEDED,
            event_id="evt_1",
            amount=1999,
            currency="USD",
            provider_ref="pi_1",
        )
    ]
    unpaid = {**SESSION, "payment_status": "unpaid"}
    assert notices_of(event("checkout.session.completed", unpaid)) == []
    (expired,) = notices_of(event("checkout.session.expired", {**SESSION, "payment_intent": None}))
    assert isinstance(expired, PaymentNotice)
    assert (expired.state, expired.provider_ref) == (PaymentState.CLOSED, None)
    # not ours: no payment_id anywhere
    foreign = {**SESSION, "client_reference_id": None, "metadata": {}}
    assert notices_of(event("checkout.session.completed", foreign)) == []
    # ours by client_reference_id alone
    (by_reference,) = notices_of(event("checkout.session.completed", {**SESSION, "metadata": {}}))
    assert isinstance(by_reference, PaymentNotice) and by_reference.payment_id == "pay_1"


def test_a_refund_event_is_a_refund_notice() -> None:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "status": "failed",
        "failure_reason": "lost_or_stolen_card",
        "metadata": {"refund_id": "rfd_1"},
    }
    for kind in ("refund.updated", "charge.refund.updated", "refund.failed"):
        assert notices_of(event(kind, refund)) == [
            RefundNotice(
                refund_id="rfd_1",
                state=RefundState.FAILED,
                event_id="evt_1",
                amount=500,
                provider_ref="re_1",
                error="lost_or_stolen_card",
            )
        ]
    assert notices_of(event("refund.updated", {**refund, "metadata": {}})) == []  # a Dashboard refund


def test_other_events_say_nothing_and_a_shapeless_one_is_refused() -> None:
    assert (
        notices_of(event("payment_intent.succeeded", {"id": "pi_1", "metadata": {"payment_id": "p"}})) == []
    )
    with pytest.raises(ValueError):
        notices_of({"id": "evt_1", "type": "checkout.session.completed", "data": {}})


def test_the_signed_timestamp_is_the_one_the_sdk_verified() -> None:
    assert signed_at("t=123,v1=abc,v0=def") == 123
    assert signed_at(" t=999,t=123,v1=abc") == 123  # the SDK skips " t": so does this
    with pytest.raises(ValueError):
        signed_at("v1=abc")


def test_a_search_literal_escapes_quotes() -> None:
    assert search_literal("pay_1") == "'pay_1'"
    assert search_literal("a'b\\c") == "'a\\'b\\\\c'"
