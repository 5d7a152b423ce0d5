"""Pure rules, tested without an event loop or any I/O: inventory decisions (shop/inventory/rules.py) and the
room lifecycle (live/rooms.py)."""

from __future__ import annotations

import pytest

from live.errors import RoomStateConflict
from live.rooms import RoomAction, RoomStatus, accepts_sales, transition
from livecart.edge import status_of
from shop.inventory.rules import (
    HOLDING,
    CardStatus,
    OrderStatus,
    PaymentDecision,
    StaleAction,
    card_status,
    commission_amount,
    decide_payment,
    decide_stale,
    key,
    rebuild_from_sql,
    sql_stock_left,
)
from shop.orders.order import Order

NOW = 1_800_000_000_000

# -- card_status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "stock_left", "closes_ms", "expected"),
    [
        pytest.param("open", 5, None, CardStatus.OPEN, id="open-no-window"),
        pytest.param("open", 5, NOW + 1, CardStatus.OPEN, id="open-window-not-over"),
        pytest.param("open", 5, NOW, CardStatus.CLOSED, id="open-window-ends-now"),
        pytest.param("open", 5, NOW - 1, CardStatus.CLOSED, id="open-window-over"),
        pytest.param("open", 0, None, CardStatus.SOLD_OUT, id="open-empty"),
        pytest.param("open", -1, None, CardStatus.SOLD_OUT, id="open-negative-stock-still-sold-out"),
        pytest.param("open", 0, NOW - 1, CardStatus.CLOSED, id="open-empty-and-over-is-closed"),
        pytest.param("pinned", 0, None, CardStatus.PINNED, id="pinned-stays-pinned-when-empty"),
        pytest.param("pinned", 5, NOW - 1, CardStatus.PINNED, id="pinned-ignores-window"),
        pytest.param("closed", 5, None, CardStatus.CLOSED, id="closed"),
        pytest.param("closed", 0, None, CardStatus.CLOSED, id="closed-empty-stays-closed"),
        pytest.param("sold_out", 3, None, CardStatus.SOLD_OUT, id="stored-sold-out"),
    ],
)
def test_card_status(stored: str, stock_left: int, closes_ms: int | None, expected: CardStatus) -> None:
    assert card_status(stored, stock_left=stock_left, closes_ms=closes_ms, now_ms=NOW) is expected


def test_card_status_refuses_unknown_stored_status() -> None:
    with pytest.raises(ValueError):
        card_status("deleted", stock_left=1, closes_ms=None, now_ms=NOW)


def test_card_key_is_a_cluster_hash_tag() -> None:
    assert key("crd_1") == "{card:crd_1}"


# -- decide_stale --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql_status", "pending", "expected"),
    [
        (None, False, StaleAction.RELEASE_ORPHAN),
        (None, True, StaleAction.RELEASE_ORPHAN),
        ("paid", False, StaleAction.CONFIRM),
        ("paid", True, StaleAction.CONFIRM),
        ("reserved", True, StaleAction.MARK_COMMITTED),
        ("reserved", False, StaleAction.WAIT),
        ("expired", False, StaleAction.RELEASE),
        ("expired", True, StaleAction.RELEASE),
        ("cancelled", False, StaleAction.RELEASE),
        ("cancelled", True, StaleAction.RELEASE),
        ("refunded", False, StaleAction.RELEASE),
        ("refunded", True, StaleAction.RELEASE),
    ],
    ids=lambda v: str(v),
)
def test_decide_stale(sql_status: str | None, pending: bool, expected: StaleAction) -> None:
    assert decide_stale(sql_status, pending=pending) is expected


def test_decide_stale_covers_every_order_status() -> None:
    for status in OrderStatus:
        for pending in (False, True):
            assert isinstance(decide_stale(status.value, pending=pending), StaleAction)


def test_decide_stale_refuses_unknown_status() -> None:
    with pytest.raises(ValueError):
        decide_stale("lost", pending=False)


# -- decide_payment ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expires_ms", "expected"),
    [
        pytest.param("reserved", NOW + 1, PaymentDecision.PAY, id="reserved-in-window"),
        pytest.param("reserved", NOW, PaymentDecision.PAY, id="reserved-last-millisecond"),
        pytest.param("reserved", NOW - 1, PaymentDecision.LATE, id="reserved-past-window"),
        pytest.param("expired", NOW + 60_000, PaymentDecision.LATE, id="expired-even-if-window-not-over"),
        pytest.param("expired", NOW - 1, PaymentDecision.LATE, id="expired"),
        pytest.param("cancelled", NOW + 60_000, PaymentDecision.LATE, id="cancelled"),
        pytest.param("paid", NOW + 60_000, PaymentDecision.REFUND_DUPLICATE, id="paid-in-window"),
        pytest.param("paid", NOW - 1, PaymentDecision.REFUND_DUPLICATE, id="paid-after-window"),
        pytest.param("refunded", NOW + 60_000, PaymentDecision.REFUND_DUPLICATE, id="refunded"),
    ],
)
def test_decide_payment(status: str, expires_ms: int, expected: PaymentDecision) -> None:
    assert decide_payment(status, expires_ms=expires_ms, now_ms=NOW) is expected


def test_decide_payment_refuses_unknown_status() -> None:
    with pytest.raises(ValueError):
        decide_payment("pending", expires_ms=NOW, now_ms=NOW)


# -- commission_amount ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate_bps", "expected"),
    [
        (990, 1000, 99),  # 10 %
        (999, 1000, 99),  # 99.9 -> 99: rounded down
        (19, 1000, 1),  # 1.9 -> 1
        (9, 1000, 0),  # 0.9 -> 0
        (1, 9999, 0),  # never rounds up
        (10_000, 1, 1),
        (9_999, 1, 0),
        (1990, 0, 0),
        (1990, 10_000, 1990),  # 100 %
        (0, 1000, 0),
        (100_000_000_00, 1000, 10_000_000_00),  # the largest price, exact
        (333, 3333, 110),  # 110.9889 -> 110
    ],
)
def test_commission_amount_rounds_down(amount: int, rate_bps: int, expected: int) -> None:
    assert commission_amount(amount, rate_bps) == expected


def test_commission_never_exceeds_the_rate() -> None:
    for amount in range(0, 3000, 7):
        for rate in (1, 333, 1000, 2500, 9999, 10_000):
            got = commission_amount(amount, rate)
            assert isinstance(got, int) and got >= 0 and got * 10_000 <= amount * rate
            assert (got + 1) * 10_000 > amount * rate  # and it is the largest such integer


# -- rebuild_from_sql ----------------------------------------------------------------------------------


def order(
    oid: str,
    status: str,
    *,
    qty: int = 1,
    buyer: str = "vw_a",
    expires_ms: int = NOW + 60_000,
    restocked: bool = False,
    referrer: str | None = None,
    price: int = 990,
    was_paid: bool | None = None,
) -> Order:
    paid = status in ("paid", "refunded") if was_paid is None else was_paid
    return Order(
        id=oid,
        card_id="crd_1",
        room_id="rm_1",
        buyer_id=buyer,
        referrer_id=referrer,
        idempotency_key=f"key-{oid}",
        quantity=qty,
        unit_price=price,
        amount=qty * price,
        status=status,
        refunded_amount=qty * price if status == "refunded" else 0,
        restocked=restocked,
        late=False,
        refund_reason=None,
        tracking_number=None,
        expires_ms=expires_ms,
        created_ms=NOW - 1000,
        paid_ms=NOW - 500 if paid else None,
        closed_ms=None,
    )


def test_rebuild_from_nothing() -> None:
    rebuilt = rebuild_from_sql([], now_ms=NOW)
    assert rebuilt.live_orders == [] and rebuilt.idempotency == [] and rebuilt.written_off == 0
    assert sql_stock_left(10, [], now_ms=NOW) == 10


def test_rebuild_keeps_paid_and_unexpired_reservations_only() -> None:
    orders = [
        order("o_paid", "paid", qty=2, buyer="vw_a", referrer="vw_p"),
        order("o_res", "reserved", qty=1, buyer="vw_b"),
        order("o_res_past", "reserved", qty=3, buyer="vw_c", expires_ms=NOW - 1),
        order("o_res_now", "reserved", qty=1, buyer="vw_c", expires_ms=NOW),  # expiring this very ms
        order("o_exp", "expired", qty=4, buyer="vw_d", expires_ms=NOW - 10),
        order("o_can", "cancelled", qty=5, buyer="vw_e"),
        order("o_ref_restock", "refunded", qty=6, buyer="vw_f", restocked=True),
        order("o_ref_writeoff", "refunded", qty=7, buyer="vw_g", restocked=False),
    ]
    rebuilt = rebuild_from_sql(orders, now_ms=NOW)
    live = {o["id"]: o for o in rebuilt.live_orders}
    assert set(live) == {"o_paid", "o_res", "o_res_now"}  # on time up to and including its last ms
    assert live["o_paid"] == {
        "id": "o_paid",
        "buyer": "vw_a",
        "qty": 2,
        "price": 990,
        "expires": NOW + 60_000,
        "key": "key-o_paid",
        "created": NOW - 1000,
        "state": "paid",
        "ref": "vw_p",
    }
    assert live["o_res"]["state"] == "reserved" and live["o_res"]["ref"] == ""
    # A refund without restock keeps its units out of the sale for good; one with restock does not.
    assert rebuilt.written_off == 7
    # Every order keeps its idempotency key, whatever became of it: a retry must find the same order.
    assert sorted(rebuilt.idempotency) == sorted(
        (f"{o.buyer_id}|key-{o.id}", f"{o.id}|{o.quantity}") for o in orders
    )
    # 30 units: 2 paid + 2 reserved + 7 written off are out of the sale.
    assert sql_stock_left(30, orders, now_ms=NOW) == 19


def test_rebuild_counts_a_paid_order_even_long_after_its_window() -> None:
    orders = [order("o1", "paid", qty=3, expires_ms=NOW - 86_400_000)]
    assert [o["id"] for o in rebuild_from_sql(orders, now_ms=NOW).live_orders] == ["o1"]
    assert sql_stock_left(3, orders, now_ms=NOW) == 0


def test_rebuild_written_off_units_add_up() -> None:
    orders = [order(f"o{i}", "refunded", qty=i, restocked=i % 2 == 0) for i in range(1, 6)]
    rebuilt = rebuild_from_sql(orders, now_ms=NOW)
    assert rebuilt.live_orders == [] and rebuilt.written_off == 1 + 3 + 5
    assert sql_stock_left(10, orders, now_ms=NOW) == 1


def test_rebuild_expired_reservation_frees_its_units() -> None:
    res = order("o1", "reserved", qty=2, expires_ms=NOW + 1)
    assert sql_stock_left(2, [res], now_ms=NOW) == 0
    assert sql_stock_left(2, [res], now_ms=NOW + 1) == 0  # its last millisecond: still payable
    assert sql_stock_left(2, [res], now_ms=NOW + 2) == 2


def test_a_refused_late_payment_wrote_nothing_off() -> None:
    """Refunded because its late payment could not be honoured: the order never held units after its
    reservation expired, so none of them are out of the sale."""
    late = order("o1", "refunded", qty=2, expires_ms=NOW - 10, was_paid=False)
    assert rebuild_from_sql([late], now_ms=NOW).written_off == 0
    assert sql_stock_left(2, [late], now_ms=NOW) == 2


def test_rebuild_accepts_any_iterable_once() -> None:
    orders = (order(f"o{i}", "paid") for i in range(3))  # a generator: consumed exactly once
    assert len(rebuild_from_sql(orders, now_ms=NOW).live_orders) == 3


def test_rebuild_refuses_unknown_status() -> None:
    with pytest.raises(ValueError):
        rebuild_from_sql([order("o1", "lost")], now_ms=NOW)


def test_holding_statuses() -> None:
    sold = {OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.COMPLETED}
    assert sold | {OrderStatus.RESERVED} == HOLDING


@pytest.mark.parametrize("status", ["paid", "shipped", "delivered", "completed"])
def test_a_sold_order_keeps_its_units_as_paid_whatever_its_fulfilment(status: str) -> None:
    rebuilt = rebuild_from_sql([order("o1", status)], now_ms=NOW)
    assert [o["state"] for o in rebuilt.live_orders] == ["paid"]
    assert decide_stale(status, pending=False) is StaleAction.CONFIRM
    assert decide_payment(status, expires_ms=NOW + 1, now_ms=NOW) is PaymentDecision.REFUND_DUPLICATE


# -- the room lifecycle (live/rooms.py) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        ("scheduled", RoomAction.GO_LIVE, RoomStatus.LIVE),
        ("live", RoomAction.GO_LIVE, RoomStatus.LIVE),  # a retried "go live" is idempotent
        ("scheduled", RoomAction.END, RoomStatus.ENDED),
        ("live", RoomAction.END, RoomStatus.ENDED),
        ("ended", RoomAction.END, RoomStatus.ENDED),  # ending twice is idempotent
    ],
    ids=lambda v: str(v),
)
def test_room_transitions(current: str, action: RoomAction, expected: RoomStatus) -> None:
    assert transition(current, action) is expected


def test_an_ended_room_cannot_go_live_again() -> None:
    with pytest.raises(RoomStateConflict) as raised:
        transition("ended", RoomAction.GO_LIVE)
    err = raised.value
    assert status_of(type(err)) == 409 and err.code == "room_ended"
    assert err.body() == {"error": "room_ended", "detail": err.detail} and "ended" in err.detail


def test_every_status_and_action_is_decided() -> None:
    """The table is total: each pair either moves to a status or raises the 409 conflict, nothing else."""
    for status in RoomStatus:
        for action in RoomAction:
            try:
                assert isinstance(transition(status.value, action), RoomStatus)
            except RoomStateConflict:
                assert (status, action) == (RoomStatus.ENDED, RoomAction.GO_LIVE)


def test_transition_refuses_unknown_status() -> None:
    with pytest.raises(ValueError):
        transition("paused", RoomAction.GO_LIVE)


@pytest.mark.parametrize(("status", "expected"), [("scheduled", True), ("live", True), ("ended", False)])
def test_accepts_sales(status: str, expected: bool) -> None:
    assert accepts_sales(status) is expected
