"""Pure decisions about stock and reservations. No I/O: everything here is tested without an event loop."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from shop.orders.order import Order


class CardStatus(enum.StrEnum):
    PINNED = "pinned"
    OPEN = "open"
    CLOSED = "closed"
    SOLD_OUT = "sold_out"


class OrderStatus(enum.StrEnum):
    RESERVED = "reserved"
    PAID = "paid"
    #: Fulfilment after ``paid`` (SPEC §10): the money and the units stay as paid ones do.
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


#: Orders whose money was taken and not all given back: their units are sold, whatever their fulfilment.
SOLD = frozenset({OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.COMPLETED})
#: The values of ``SOLD``, for SQL ``IN`` clauses.
SOLD_VALUES = tuple(sorted(s.value for s in SOLD))
#: Orders whose units are out of the sale: held by a reservation or sold.
HOLDING = frozenset({OrderStatus.RESERVED}) | SOLD


def card_status(stored: str, *, stock_left: int, closes_ms: int | None, now_ms: int) -> CardStatus:
    """What a card is, as viewers should see it: a sale past its window is closed, an empty one sold out."""
    status = CardStatus(stored)
    if status is CardStatus.OPEN:
        if closes_ms is not None and now_ms >= closes_ms:
            return CardStatus.CLOSED
        if stock_left <= 0:
            return CardStatus.SOLD_OUT
    return status


def key(card_id: str) -> str:
    """The Redis hash tag of a card: every key of one sale lands in one Cluster slot."""
    return "{card:" + card_id + "}"


class StaleAction(enum.StrEnum):
    """What the sweeper does with a reservation in Redis that is past its expiry or still unconfirmed."""

    RELEASE = "release"  # SQL says it is over (expired, cancelled, refunded): give the units back
    RELEASE_ORPHAN = "release_orphan"  # no SQL row after the grace period: nobody was told of it
    CONFIRM = "confirm"  # SQL says paid: keep the units sold
    MARK_COMMITTED = "mark_committed"  # the row is in SQL: stop tracking it as pending
    WAIT = "wait"  # SQL still says reserved: the SQL pass expires it first


def decide_stale(sql_status: str | None, *, pending: bool) -> StaleAction:
    if sql_status is None:
        return StaleAction.RELEASE_ORPHAN
    status = OrderStatus(sql_status)
    if status in SOLD:
        return StaleAction.CONFIRM
    if status is OrderStatus.RESERVED:
        return StaleAction.MARK_COMMITTED if pending else StaleAction.WAIT
    return StaleAction.RELEASE


class PaymentDecision(enum.StrEnum):
    PAY = "pay"  # on time: the reservation still holds the units
    LATE = "late"  # too late: re-reserve if possible, else refund
    REFUND_DUPLICATE = "refund_duplicate"  # the order is already paid or refunded: give this money back


def decide_payment(order_status: str, *, expires_ms: int, now_ms: int) -> PaymentDecision:
    status = OrderStatus(order_status)
    if status is OrderStatus.RESERVED and now_ms <= expires_ms:
        return PaymentDecision.PAY
    if status in SOLD or status is OrderStatus.REFUNDED:
        return PaymentDecision.REFUND_DUPLICATE
    return PaymentDecision.LATE


def commission_amount(amount: int, rate_bps: int) -> int:
    """The promoter's share of an order, in minor units, rounded down (never pays out more than the rate)."""
    return amount * rate_bps // 10_000


@dataclass(frozen=True, slots=True)
class RebuiltSale:
    """A card's Redis state derived from SQL."""

    live_orders: list[dict[str, object]]
    idempotency: list[tuple[str, str]]
    written_off: int


def rebuild_from_sql(orders: Iterable[Order], *, now_ms: int) -> RebuiltSale:
    """Derive the live reservations, the idempotency map and written-off units of one card from its orders.

    A reservation is live up to and including the millisecond it expires (as payments and the sweeper see
    it); past that the sweeper is about to expire it in SQL. A paid order refunded without restock keeps its
    units out of the sale for good; a late payment refunded because it could not be honoured never held any.
    """
    live: list[dict[str, object]] = []
    idem: list[tuple[str, str]] = []
    written_off = 0
    for o in orders:
        idem.append((f"{o.buyer_id}|{o.idempotency_key}", f"{o.id}|{o.quantity}"))
        state = OrderStatus(o.status)
        if state is OrderStatus.REFUNDED and o.was_paid and not o.restocked:
            written_off += o.quantity
        if state in SOLD or (state is OrderStatus.RESERVED and o.expires_ms >= now_ms):
            live.append(
                {
                    "id": o.id,
                    "buyer": o.buyer_id,
                    "qty": o.quantity,
                    "price": o.unit_price,
                    "expires": o.expires_ms,
                    "key": o.idempotency_key,
                    "created": o.created_ms,
                    "state": "paid" if state in SOLD else state.value,
                    "ref": o.referrer_id or "",
                }
            )
    return RebuiltSale(live_orders=live, idempotency=idem, written_off=written_off)


def sql_stock_left(stock_total: int, orders: Iterable[Order], *, now_ms: int) -> int:
    """Stock left as SQL alone says it (for stats and drift checks)."""
    rebuilt = rebuild_from_sql(orders, now_ms=now_ms)
    held = sum(int(str(o["qty"])) for o in rebuilt.live_orders)
    return stock_total - held - rebuilt.written_off


@dataclass(frozen=True, slots=True)
class OrderRates:
    """The buy's rate gate: at most ``per_buyer`` attempts by one buyer, and ``per_address`` from one client
    address, on one card within their windows (ms). Counted by the reserve script itself, in the card's hash
    slot, so a buy stays one Redis call."""

    per_buyer: int
    buyer_window_ms: int
    per_address: int
    address_window_ms: int

    @property
    def args(self) -> tuple[int, int, int, int]:
        """The reserve script's last four ``ARGV``."""
        return (self.per_buyer, self.buyer_window_ms, self.per_address, self.address_window_ms)
