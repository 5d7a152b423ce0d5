"""The locust scenario's end-of-run check (loadtests/show_check.py): each rule finds what it is for."""

from __future__ import annotations

from typing import Any

from loadtests.show_check import (
    Acknowledged,
    CardStock,
    gmv_problems,
    held_units,
    lost_orders,
    stock_problems,
)


def order(oid: str, card: str, quantity: int, status: str, amount: int = 100, **extra: Any) -> dict[str, Any]:
    return {"id": oid, "card_id": card, "quantity": quantity, "status": status, "amount": amount, **extra}


ORDERS = [
    order("o1", "c1", 2, "paid"),
    order("o2", "c1", 1, "reserved"),
    order("o3", "c1", 1, "expired"),
    order("o4", "c1", 1, "cancelled"),
    order("o5", "c1", 1, "refunded", restocked=True),
    order("o6", "c1", 1, "refunded", restocked=False),
]


def test_units_held_by_status() -> None:
    assert [held_units(o) for o in ORDERS] == [2, 1, 0, 0, 0, 1]


def test_stock_that_adds_up_passes() -> None:
    assert stock_problems([CardStock("c1", stock_total=10, stock_left=6)], ORDERS) == []


def test_stock_that_does_not_add_up_is_reported() -> None:
    assert stock_problems([CardStock("c1", 10, 7)], ORDERS) == [
        "card c1: stock_left 7 + held 4 != stock_total 10"
    ]


def test_an_oversold_card_is_reported() -> None:
    assert stock_problems([CardStock("c1", 3, 0)], ORDERS) == ["card c1 oversold: 4 units held of 3"]


def test_a_card_without_orders_must_be_full() -> None:
    assert stock_problems([CardStock("c2", 5, 5)], ORDERS) == []
    assert stock_problems([CardStock("c2", 5, 4)], ORDERS) == [
        "card c2: stock_left 4 + held 0 != stock_total 5"
    ]


def test_acknowledged_orders_must_exist_as_acknowledged() -> None:
    acks = [
        Acknowledged("o1", "c1", 2),
        Acknowledged("o2", "c1", 3),
        Acknowledged("o3", "c9", 1),
        Acknowledged("gone", "c1", 1),
    ]
    assert lost_orders(acks, ORDERS) == [
        "order o2 is 1 of card c1, but 3 of card c1 was acknowledged",
        "order o3 is 1 of card c1, but 1 of card c9 was acknowledged",
        "acknowledged order gone (card c1) does not exist",
    ]
    assert lost_orders(acks[:1], ORDERS) == []


def test_gmv_is_the_sum_of_paid_orders() -> None:
    assert gmv_problems(100, ORDERS) == []
    assert gmv_problems(200, ORDERS) == ["room stats say GMV 200, the paid orders add up to 100"]
