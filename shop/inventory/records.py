"""What the inventory scripts keep and answer, as Python reads it: Redis's own formats, parsed once at the
edge of the Redis adapter (``store.py`` and a sale type's ``result``), never passed around as raw text.

A ``Reservation`` is the record every reserve script writes into ``{card:ID}:orders`` and that release,
rereserve, refund and load read back: ``{buyer, qty, price, expires, key, created, state, ref}``. It is the
adapter's record, not the order the services pass around: that is ``shop.orders.order.Order``, built from a
fresh reservation by ``Order.reserved``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation record as the scripts keep it."""

    order_id: str
    buyer_id: str
    quantity: int
    unit_price: int
    expires_ms: int
    idempotency_key: str
    created_ms: int
    state: str
    referrer_id: str | None

    @classmethod
    def parse(cls, order_id: str, raw: str) -> Reservation:
        r = json.loads(raw)
        return cls(
            order_id=order_id,
            buyer_id=r["buyer"],
            quantity=int(r["qty"]),
            unit_price=int(r["price"]),
            expires_ms=int(r["expires"]),
            idempotency_key=r["key"],
            created_ms=int(r["created"]),
            state=r["state"],
            referrer_id=r.get("ref") or None,
        )


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """A reserve script's answer. ``outcome`` is one of the outcomes every sale type shares (``ok``,
    ``duplicate``, ``idempotency_mismatch``, ``no_sale``, ``wrong_room``, ``busy``, ``rate_limited``: see
    ``sale_types``) or
    one of the sale type's own refusals (a flash sale's ``sale_not_open``, ``limit_exceeded``,
    ``sold_out``)."""

    outcome: str
    #: ``ok``, ``duplicate``, ``idempotency_mismatch``: the order the buy is (or would have been)
    order_id: str | None = None
    #: ``ok``: the new reservation; ``duplicate``: the first attempt's, if Redis still has it
    reservation: Reservation | None = None
    #: ``ok``: what is left after it; ``sold_out``: what is left
    stock_left: int | None = None
    #: ``rate_limited``: how long until the rate gate lets this buyer (or address) try again
    wait_ms: int | None = None
