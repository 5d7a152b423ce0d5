"""The end-of-run check of the locust scenario, as pure functions: given what the host API says (each card's
stock and every order of the room) and what the load test was told (the orders it got a 200/201 for), list
every way the two disagree. ``loadtests/locustfile.py`` reads the API and fails the run on any problem.

The rules, per card:

- **Nothing oversold**: the units held by orders (reserved, paid, or refunded without restock) never exceed
  the card's ``stock_total``.
- **Stock adds up**: ``stock_left`` plus the units held is exactly ``stock_total``. Redis (the stock) and SQL
  (the orders) are read one after the other, so a reservation expiring in between can make one read
  inconsistent: the caller reads again until two agree or it runs out of time.

And per acknowledged order: it exists, on the card it was placed on, with the quantity that was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Order statuses that keep their units out of sale.
HOLDING = frozenset({"reserved", "paid"})


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """An order the server answered 200/201 for."""

    order_id: str
    card_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class CardStock:
    card_id: str
    stock_total: int
    stock_left: int


def held_units(order: Mapping[str, Any]) -> int:
    status = order["status"]
    if status in HOLDING or (status == "refunded" and not order.get("restocked")):
        return int(order["quantity"])
    return 0


def stock_problems(cards: Iterable[CardStock], orders: Iterable[Mapping[str, Any]]) -> list[str]:
    held: dict[str, int] = {}
    for order in orders:
        held[order["card_id"]] = held.get(order["card_id"], 0) + held_units(order)
    problems = []
    for card in cards:
        units = held.get(card.card_id, 0)
        if units > card.stock_total:
            problems.append(f"card {card.card_id} oversold: {units} units held of {card.stock_total}")
        elif card.stock_left + units != card.stock_total:
            problems.append(
                f"card {card.card_id}: stock_left {card.stock_left} + held {units} != stock_total "
                f"{card.stock_total}"
            )
    return problems


def lost_orders(acknowledged: Iterable[Acknowledged], orders: Iterable[Mapping[str, Any]]) -> list[str]:
    by_id = {order["id"]: order for order in orders}
    problems = []
    for ack in acknowledged:
        order = by_id.get(ack.order_id)
        if order is None:
            problems.append(f"acknowledged order {ack.order_id} (card {ack.card_id}) does not exist")
        elif order["card_id"] != ack.card_id or int(order["quantity"]) != ack.quantity:
            problems.append(
                f"order {ack.order_id} is {order['quantity']} of card {order['card_id']}, "
                f"but {ack.quantity} of card {ack.card_id} was acknowledged"
            )
    return problems


def gmv_problems(gmv: int, orders: Iterable[Mapping[str, Any]]) -> list[str]:
    paid = sum(int(order["amount"]) for order in orders if order["status"] == "paid")
    return [] if gmv == paid else [f"room stats say GMV {gmv}, the paid orders add up to {paid}"]
