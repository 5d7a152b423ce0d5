"""Rows to contract-v1 JSON objects."""

from __future__ import annotations

from typing import Any

from base.clock import iso
from shop.inventory.rules import card_status
from shop.inventory.store import Reservation
from shop.models import Card, Order, Product


def product_json(p: Product) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "price": p.price,
        "description": p.description,
        "image_url": p.image_url,
        "created_at": iso(p.created_ms),
    }


def card_json(
    card: Card, product: Product, *, stock_left: int, stock_total: int, price: int, now_ms: int
) -> dict[str, Any]:
    return {
        "id": card.id,
        "room_id": card.room_id,
        "product": {
            "id": product.id,
            "name": product.name,
            "image_url": product.image_url,
            "description": product.description,
        },
        "price": price,
        "stock_total": stock_total,
        "stock_left": stock_left,
        "per_user_limit": card.per_user_limit,
        "reserve_seconds": card.reserve_seconds,
        "status": card_status(
            card.status, stock_left=stock_left, closes_ms=card.closes_ms, now_ms=now_ms
        ).value,
        "closes_at": iso(card.closes_ms),
    }


_ORDER_FIELDS = (
    "id", "card_id", "room_id", "buyer_id", "quantity", "unit_price", "amount", "status", "expires_ms",
    "created_ms", "paid_ms", "late", "refund_reason", "restocked", "tracking_number", "referrer_id",
)  # fmt: skip


def order_json(o: Order, *, currency: str) -> dict[str, Any]:
    return _order_json({f: getattr(o, f) for f in _ORDER_FIELDS}, currency=currency)


def _order_json(o: dict[str, Any], *, currency: str) -> dict[str, Any]:
    return {
        "id": o["id"],
        "card_id": o["card_id"],
        "room_id": o["room_id"],
        "buyer_id": o["buyer_id"],
        "quantity": o["quantity"],
        "unit_price": o["unit_price"],
        "amount": o["amount"],
        "currency": currency,
        "status": o["status"],
        "expires_at": iso(o["expires_ms"]),
        "created_at": iso(o["created_ms"]),
        "paid_at": iso(o["paid_ms"]),
        "late_payment": o["late"],
        "refund_reason": o["refund_reason"],
        "restocked": o["restocked"],
        "tracking_number": o["tracking_number"],
        "referrer_id": o["referrer_id"],
    }


def order_row(card_id: str, room_id: str, r: Reservation) -> dict[str, Any]:
    """The SQL row of a fresh reservation (what the group-commit writer inserts)."""
    return {
        "id": r.order_id,
        "card_id": card_id,
        "room_id": room_id,
        "buyer_id": r.buyer_id,
        "referrer_id": r.referrer_id,
        "idempotency_key": r.idempotency_key,
        "quantity": r.quantity,
        "unit_price": r.unit_price,
        "amount": r.unit_price * r.quantity,
        "status": "reserved",
        "restocked": False,
        "late": False,
        "expires_ms": r.expires_ms,
        "created_ms": r.created_ms,
        "paid_ms": None,
        "closed_ms": None,
        "refund_reason": None,
        "tracking_number": None,
    }


def order_json_from_row(row: dict[str, Any], *, currency: str) -> dict[str, Any]:
    """The order of a row the writer just committed (``order_row``), without building an ORM object."""
    return _order_json(row, currency=currency)
