"""Rows to contract-v1 JSON objects: the shapes of ``shop.schemas``' ``*Out`` models (tests/unit/test_views.py
checks each against its model). An order's JSON is built from the one order type, ``orders.order.Order``."""

from __future__ import annotations

from typing import Any

from base.clock import iso
from shop.inventory.rules import card_status
from shop.models import Card, Product
from shop.orders.order import Address, Order


def product_json(p: Product) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "price": p.price,
        "description": p.description,
        "image_url": p.image_url,
        "shippable": p.shippable,
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
        "commission_bps": card.commission_bps,
    }


def order_json(o: Order, *, currency: str) -> dict[str, Any]:
    return {
        "id": o.id,
        "card_id": o.card_id,
        "room_id": o.room_id,
        "buyer_id": o.buyer_id,
        "quantity": o.quantity,
        "unit_price": o.unit_price,
        "amount": o.amount,
        "currency": currency,
        "status": o.status,
        "refunded_amount": o.refunded_amount,
        "expires_at": iso(o.expires_ms),
        "created_at": iso(o.created_ms),
        "paid_at": iso(o.paid_ms),
        "late_payment": o.late,
        "refund_reason": o.refund_reason,
        "restocked": o.restocked,
        "tracking_number": o.tracking_number,
        "carrier": o.carrier,
        "shipped_at": iso(o.shipped_ms),
        "delivered_at": iso(o.delivered_ms),
        "completed_at": iso(o.completed_ms),
        "address": address_json(o.address) if o.address else None,
        "referrer_id": o.referrer_id,
    }


def address_json(a: Address) -> dict[str, str]:
    return {"name": a.name, "phone": a.phone, "region": a.region, "line": a.line}
