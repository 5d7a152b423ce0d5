"""Sale types: what a buy does to a card's stock, decided in one place per type. Pure: no I/O here; the Redis
adapter (``Inventory.reserve``) runs the type's script and ``OrderService`` raises the type's errors.

A new sale type (a group buy, a coupon-gated sale) is a class with these five members, registered in
``SALE_TYPES``, plus its Lua script:

- ``name``: its key in ``SALE_TYPES``, what a card's sale type says (every card is a flash sale today:
  ``sale_type_of``; a second type stores each card's type and makes ``sale_type_of`` read it without I/O);
- ``script``: the name of its reserve script, ``lua/<script>.lua``, which names its ``KEYS``/``ARGV`` at the
  top, takes the seven keys of ``store.card_keys`` in that order and then the rate gate's two
  (``store.rate_keys``), answers the shared outcomes as ``reserve.lua`` does (``no_sale`` when the sale hash
  is gone, ``wrong_room``, ``busy`` while fenced, the idempotency replay ``duplicate id record-or-''`` /
  ``idempotency_mismatch id``, the rate gate's ``rate_limited wait_ms``, and ``ok id record stock_left``),
  and on ``ok`` writes the same reservation record and marks (orders, expiry, pending, buyers, idem) that
  release, rereserve, refund, load and the sweeper rely on;
- ``reserve_args(...)``: one buy as the script's ``ARGV`` (the rate gate's four, ``OrderRates.args``, last);
- ``result(reply)``: the script's reply (text) as a ``ReserveResult`` (``shared_result`` reads the shared
  outcomes);
- ``refusal(result)``: the ``ShopError`` an outcome other than ``ok``, ``duplicate`` or ``busy`` raises
  (``shared_refusal`` for the shared ones); a new error class gets its HTTP status in ``livecart/edge.py``.

Not behind this seam yet: a late payment takes its units again through ``rereserve.lua``, which applies a
flash sale's rules (the buyer's limit, the stock); a type whose late payments differ adds that here too.
"""

from __future__ import annotations

import math
from typing import Protocol

from shop.errors import (
    IdempotencyMismatch,
    InventoryUnavailable,
    LimitExceeded,
    SaleNotOpen,
    ShopError,
    SoldOut,
    TooManyOrders,
    UnknownResource,
    WrongRoom,
)
from shop.inventory.records import Reservation, ReserveResult
from shop.inventory.rules import OrderRates


class SaleType(Protocol):
    @property
    def name(self) -> str:
        """Its key in ``SALE_TYPES``."""

    @property
    def script(self) -> str:
        """Its reserve script: ``lua/<script>.lua``."""

    def reserve_args(
        self,
        *,
        buyer_id: str,
        room_id: str,
        idempotency_key: str,
        quantity: int,
        order_id: str,
        referrer_id: str | None,
        now_ms: int,
        rates: OrderRates,
    ) -> tuple[str | int, ...]:
        """One buy as the script's ``ARGV`` (``order_id``: the id of the order should it be reserved)."""

    def result(self, reply: list[str]) -> ReserveResult:
        """The script's reply as a result."""

    def refusal(self, result: ReserveResult) -> ShopError:
        """The error a refused buy raises (any outcome but ``ok``, ``duplicate`` and ``busy``)."""


def shared_result(reply: list[str]) -> ReserveResult:
    """The reply of a shared outcome; any other outcome with nothing but its name."""
    outcome = reply[0]
    if outcome == "ok":
        order_id = reply[1]
        return ReserveResult(outcome, order_id, Reservation.parse(order_id, reply[2]), int(reply[3]))
    if outcome == "duplicate":
        order_id = reply[1]
        return ReserveResult(outcome, order_id, Reservation.parse(order_id, reply[2]) if reply[2] else None)
    if outcome == "idempotency_mismatch":
        return ReserveResult(outcome, reply[1])
    if outcome == "rate_limited":
        return ReserveResult(outcome, wait_ms=int(reply[1]))
    return ReserveResult(outcome)


def shared_refusal(result: ReserveResult) -> ShopError:
    """The error of a shared refusal; ``InventoryUnavailable`` for an outcome no one knows."""
    outcome = result.outcome
    if outcome == "idempotency_mismatch":
        return IdempotencyMismatch("This Idempotency-Key was already used for a different quantity.")
    if outcome == "wrong_room":
        return WrongRoom("Your viewer token is for another room.")
    if outcome == "no_sale":
        return UnknownResource("No such card.")
    if outcome == "rate_limited":
        retry_after = max(1, math.ceil((result.wait_ms or 1) / 1000))
        return TooManyOrders(f"Too many orders; try again in {retry_after} s.", retry_after=retry_after)
    return InventoryUnavailable(f"unexpected inventory outcome {outcome}")


class FlashSale:
    """A fixed stock at a fixed price, first come first served while the card is open, up to a per-buyer
    limit. ``reserve.lua`` checks, in this order: the sale exists and is in the buyer's room, the
    idempotency replay, the fence, the rate gate, the sale is open and its window not past, the buyer's
    limit, the stock.
    Its own refusals: ``sale_not_open``, ``limit_exceeded held``, ``sold_out stock_left``."""

    name = "flash"
    script = "reserve"

    def reserve_args(
        self,
        *,
        buyer_id: str,
        room_id: str,
        idempotency_key: str,
        quantity: int,
        order_id: str,
        referrer_id: str | None,
        now_ms: int,
        rates: OrderRates,
    ) -> tuple[str | int, ...]:
        # The order of reserve.lua's ARGV.
        own = (buyer_id, idempotency_key, quantity, now_ms, order_id, room_id, referrer_id or "")
        return own + rates.args

    def result(self, reply: list[str]) -> ReserveResult:
        if reply[0] == "sold_out":
            return ReserveResult("sold_out", stock_left=int(reply[1]))
        return shared_result(reply)

    def refusal(self, result: ReserveResult) -> ShopError:
        outcome = result.outcome
        if outcome == "sale_not_open":
            return SaleNotOpen("This card is not on sale right now.")
        if outcome == "limit_exceeded":
            return LimitExceeded("You have reached the per-buyer limit for this card.")
        if outcome == "sold_out":
            return SoldOut("Sold out.", extra={"stock_left": result.stock_left or 0})
        return shared_refusal(result)


FLASH_SALE = FlashSale()

#: Every sale type, by name: ``Inventory`` registers each one's script.
SALE_TYPES: dict[str, SaleType] = {FLASH_SALE.name: FLASH_SALE}


def sale_type_of(card_id: str) -> SaleType:
    """The sale type of a card. Every card is a flash sale today: nothing stores another type. A second type
    stores each card's (kept where the buy path reads it without I/O) and looks it up here."""
    return FLASH_SALE
