"""Errors of ``shop``, each with its contract code."""

from __future__ import annotations

from livecart.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable


class SoldOut(Conflict):
    default_code = "sold_out"


class SaleNotOpen(Conflict):
    default_code = "sale_not_open"


class LimitExceeded(Conflict):
    default_code = "limit_exceeded"


class InvalidQuantity(Unprocessable):
    default_code = "invalid_quantity"


class IdempotencyMismatch(Unprocessable):
    default_code = "idempotency_key_reused"


class OrderStateConflict(Conflict):
    default_code = "invalid_order_state"


class UnknownResource(NotFound):
    default_code = "not_found"


class InventoryUnavailable(ServiceUnavailable):
    default_code = "unavailable"
