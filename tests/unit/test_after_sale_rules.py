"""The pure rules of fulfilment and after-sale (no I/O): which status each fulfilment step starts from, when
an order completes by itself, who is an order's buyer, when a buyer may ask for their money back; and the
JSON of a request and a refund against the models that document it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from identity.errors import NotPermitted
from identity.tokens import CustomerIdentity, ViewerIdentity
from shop.after_sale import after_sale_json, check_request, order_summary_json, refund_json
from shop.after_sale_schemas import AfterSaleOrderOut, AfterSaleOut, RefundOut
from shop.errors import AfterSaleRefused, InvalidRefund
from shop.fulfilment import (
    DAY_MS,
    Step,
    buyer_key,
    completes_by_itself,
    refusal,
    require_order_buyer,
    sources,
)
from shop.inventory.rules import OrderStatus
from shop.models import AfterSale, Refund
from shop.orders.order import Address, Order

NOW = 1_800_000_000_000

PAID = Order(
    id="ord_1",
    card_id="crd_1",
    room_id="rm_1",
    buyer_id="vw_1",
    referrer_id=None,
    idempotency_key="k",
    quantity=1,
    unit_price=1000,
    amount=1000,
    status="paid",
    refunded_amount=0,
    restocked=False,
    late=False,
    refund_reason=None,
    tracking_number=None,
    expires_ms=NOW,
    created_ms=NOW - DAY_MS,
    paid_ms=NOW - DAY_MS,
    closed_ms=None,
)


def test_each_step_starts_only_where_it_may() -> None:
    assert sources(Step.SHIP, shippable=True) == (OrderStatus.PAID, OrderStatus.SHIPPED)
    assert sources(Step.DELIVER, shippable=True) == (OrderStatus.SHIPPED,)
    assert sources(Step.DELIVER, shippable=False) == (OrderStatus.PAID, OrderStatus.SHIPPED)
    for step in (Step.RECEIVE, Step.AUTO_COMPLETE):
        assert sources(step, shippable=True) == (OrderStatus.SHIPPED, OrderStatus.DELIVERED)
    for step in Step:  # nothing starts from an order not (or no longer) on its way
        for shippable in (True, False):
            for closed in ("reserved", "expired", "cancelled", "refunded", "completed"):
                assert OrderStatus(closed) not in sources(step, shippable=shippable)
    assert "refunded" in refusal(Step.RECEIVE, "refunded", shippable=True)


def test_an_order_completes_by_itself_days_after_it_shipped_or_was_delivered() -> None:
    days = 10.0
    shipped = replace(PAID, status="shipped", shipped_ms=NOW - 10 * DAY_MS)
    assert completes_by_itself(shipped, now_ms=NOW, days=days)
    assert not completes_by_itself(replace(shipped, shipped_ms=NOW - 10 * DAY_MS + 1), now_ms=NOW, days=days)
    # Delivered after shipping: the clock started when it shipped.
    delivered = replace(shipped, status="delivered", delivered_ms=NOW)
    assert completes_by_itself(delivered, now_ms=NOW, days=days)
    # Never shipped (it does not ship): from its delivery.
    voucher = replace(PAID, status="delivered", delivered_ms=NOW - 9 * DAY_MS)
    assert not completes_by_itself(voucher, now_ms=NOW, days=days)
    assert completes_by_itself(voucher, now_ms=NOW + DAY_MS, days=days)
    for status in ("paid", "completed", "refunded"):
        assert not completes_by_itself(replace(shipped, status=status), now_ms=NOW, days=days)


def test_the_buyer_is_their_viewer_or_the_customer_it_is() -> None:
    rule = {"buyer_id": "vw_1", "buyer_customer_id": "cus_1", "host_id": "hst_1"}
    require_order_buyer(ViewerIdentity("vw_1", "rm_1", None), **rule)
    require_order_buyer(CustomerIdentity("cus_1", "hst_1"), **rule)
    for stranger in (
        ViewerIdentity("vw_2", "rm_1", None, "cus_1"),  # another viewer, even of the same customer's name
        CustomerIdentity("cus_2", "hst_1"),
        CustomerIdentity("cus_1", "hst_2"),  # a token of another shop
    ):
        with pytest.raises(NotPermitted):
            require_order_buyer(stranger, **rule)
    with pytest.raises(NotPermitted):  # a guest's order has no customer
        require_order_buyer(CustomerIdentity("cus_1", "hst_1"), **{**rule, "buyer_customer_id": None})
    assert buyer_key(ViewerIdentity("vw_1", "rm_1", None, "cus_1")) == "cus_1"
    assert buyer_key(ViewerIdentity("vw_1", "rm_1", None)) == "vw_1"


def test_a_request_inside_the_window_of_a_sold_order_with_something_left() -> None:
    def check(order: Order, kind: str = "refund", amount: int | None = None, now: int = NOW) -> None:
        check_request(order, kind=kind, amount=amount, now_ms=now, after_sale_days=7)

    check(PAID)
    check(PAID, amount=1000)
    check(replace(PAID, status="shipped"), kind="return_refund")
    check(replace(PAID, status="completed", refunded_amount=999), amount=1)
    refused = [
        (replace(PAID, status="reserved", paid_ms=None), "refund", None, NOW),
        (replace(PAID, status="refunded", refunded_amount=1000), "refund", None, NOW),
        (PAID, "refund", None, PAID.paid_ms + 7 * DAY_MS),  # the window is over
        (PAID, "return_refund", None, NOW),  # nothing shipped, nothing to return
    ]
    for order, kind, amount, now in refused:
        with pytest.raises(AfterSaleRefused):
            check(order, kind, amount, now)
    with pytest.raises(InvalidRefund):
        check(replace(PAID, refunded_amount=400), amount=601)


def test_the_json_is_what_the_models_document() -> None:
    refund = Refund(
        id="rfd_1",
        order_id="ord_1",
        payment_id="pay_1",
        kind="order",
        amount=400,
        restocked=False,
        reason="after_sale",
        status="pending",
        attempts=2,
        last_error="down",
        next_try_ms=NOW,
        created_ms=NOW,
        updated_ms=NOW,
    )
    request = AfterSale(
        id="as_1",
        order_id="ord_1",
        host_id="hst_1",
        kind="refund",
        reason="坏了",
        amount=400,
        status="approved",
        host_note=None,
        refund_id="rfd_1",
        created_ms=NOW,
        decided_ms=NOW,
    )
    for body, model in (
        (after_sale_json(request, refund), AfterSaleOut),
        (after_sale_json(request, None), AfterSaleOut),
        (refund_json(refund), RefundOut),
        (
            order_summary_json(replace(PAID, address=Address("王", "+8613800138000", "上海", "1号"))),
            AfterSaleOrderOut,
        ),
    ):
        assert model.model_validate(body).model_dump() == body
