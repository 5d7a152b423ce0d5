"""The one order type the services pass around, whatever it was read from.

An ``Order`` is built from an SQL row (``Order.of_row``: ``shop.models.Order``, read by ``repo`` inside a
session, which hands out nothing else) or from a fresh reservation before its row exists (``Order.reserved``).
Everything else is built from it, one mapping each: the row the order writer inserts (``writer.row_of``) and
the API's JSON (``shop.views.order_json``); the inventory rules read it too (``rules.rebuild_from_sql``).

The reservation record in Redis (``shop.inventory.records.Reservation``) stays the Redis adapter's own
format, parsed once at that adapter's edge; ``Order.reserved`` turns it into an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shop import models
    from shop.inventory.records import Reservation


@dataclass(frozen=True, slots=True)
class Address:
    """Where an order ships (SPEC §10): recipient, their phone (E.164), region (省市区), street line."""

    name: str
    phone: str
    region: str
    line: str

    @classmethod
    def of_row(cls, row: models.Order) -> Address | None:
        if row.ship_name is None or row.ship_phone is None:
            return None
        return cls(row.ship_name, row.ship_phone, row.ship_region or "", row.ship_line or "")


@dataclass(frozen=True, slots=True)
class Order:
    """An order as SQL has it (times in epoch ms, UTC); the columns of ``shop.models.Order``."""

    id: str
    card_id: str
    room_id: str
    buyer_id: str
    referrer_id: str | None
    idempotency_key: str
    quantity: int
    unit_price: int
    amount: int
    status: str
    #: What has been refunded of ``amount`` so far (all of it once ``refunded``; part of a ``paid`` one).
    refunded_amount: int
    #: Units of a refunded order that went back on sale (``False``: written off).
    restocked: bool
    #: Paid after its reservation had expired (honoured: the stock was re-reserved).
    late: bool
    refund_reason: str | None
    tracking_number: str | None
    expires_ms: int
    created_ms: int
    paid_ms: int | None
    closed_ms: int | None
    carrier: str | None = None
    #: The shipping address given at checkout (``None`` until then, and for what does not ship).
    address: Address | None = None
    shipped_ms: int | None = None
    delivered_ms: int | None = None
    completed_ms: int | None = None

    @property
    def was_paid(self) -> bool:
        """The order was paid at some point (a refunded order that never was held no units)."""
        return self.paid_ms is not None

    @classmethod
    def of_row(cls, row: models.Order) -> Order:
        return cls(
            id=row.id,
            card_id=row.card_id,
            room_id=row.room_id,
            buyer_id=row.buyer_id,
            referrer_id=row.referrer_id,
            idempotency_key=row.idempotency_key,
            quantity=row.quantity,
            unit_price=row.unit_price,
            amount=row.amount,
            status=row.status,
            refunded_amount=row.refunded_amount,
            restocked=row.restocked,
            late=row.late,
            refund_reason=row.refund_reason,
            tracking_number=row.tracking_number,
            expires_ms=row.expires_ms,
            created_ms=row.created_ms,
            paid_ms=row.paid_ms,
            closed_ms=row.closed_ms,
            carrier=row.carrier,
            address=Address.of_row(row),
            shipped_ms=row.shipped_ms,
            delivered_ms=row.delivered_ms,
            completed_ms=row.completed_ms,
        )

    @classmethod
    def reserved(cls, card_id: str, room_id: str, r: Reservation) -> Order:
        """The order of a reservation its buy made (or adopts): reserved, nothing paid, nothing closed."""
        return cls(
            id=r.order_id,
            card_id=card_id,
            room_id=room_id,
            buyer_id=r.buyer_id,
            referrer_id=r.referrer_id,
            idempotency_key=r.idempotency_key,
            quantity=r.quantity,
            unit_price=r.unit_price,
            amount=r.unit_price * r.quantity,
            status="reserved",
            refunded_amount=0,
            restocked=False,
            late=False,
            refund_reason=None,
            tracking_number=None,
            expires_ms=r.expires_ms,
            created_ms=r.created_ms,
            paid_ms=None,
            closed_ms=None,
        )
