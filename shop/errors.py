"""Errors of ``shop``, each with its contract code.

ShopError
├── UnknownResource                                    (no such card, order, product, payment)
├── SoldOut, SaleNotOpen, LimitExceeded                (the sale says no)
├── OrderStateConflict, CardStateConflict              (the state does not allow it)
├── InvalidQuantity, IdempotencyMismatch, NothingToChange, InvalidRefund
├── NothingOwed, LeaderExists                          (settlement and the roster say no)
├── MissingIdempotencyKey, InvalidIdempotencyKey, InvalidSignature, InvalidWebhook
├── RejectedNotification                               (a provider notification that is not genuine)
├── UnknownProvider, AddressRequired, AfterSaleRefused (money, shipping and after-sale say no)
├── RefundStateConflict                                (a refund the provider already has)
├── ProviderFailed                                     (a payment provider failed: 502, retry)
├── WrongRoom                                          (a viewer token of another room)
├── TooManyOrders                                      (the buy's rate gate: 429, Retry-After)
└── InventoryUnavailable, CommitTimedOut               (nothing was acknowledged: retry)
"""

from __future__ import annotations

from base.errors import LiveCartError


class ShopError(LiveCartError):
    """The root of ``shop``'s errors."""


class SoldOut(ShopError):
    default_code = "sold_out"


class SaleNotOpen(ShopError):
    default_code = "sale_not_open"


class LimitExceeded(ShopError):
    default_code = "limit_exceeded"


class InvalidQuantity(ShopError):
    default_code = "invalid_quantity"


class InvalidRefund(ShopError):
    """A refund amount beyond what is left of the order, or a restock with a partial refund."""

    default_code = "invalid_refund"


class NothingOwed(ShopError):
    """A payout with nothing payable: no unpaid commission past its after-sale window (or a net ≤ 0)."""

    default_code = "nothing_owed"


class LeaderExists(ShopError):
    """The customer is already on the host's roster of leaders."""

    default_code = "leader_exists"


class IdempotencyMismatch(ShopError):
    default_code = "idempotency_key_reused"


class MissingIdempotencyKey(ShopError):
    default_code = "missing_idempotency_key"


class InvalidIdempotencyKey(ShopError):
    default_code = "invalid_idempotency_key"


class NothingToChange(ShopError):
    default_code = "invalid_request"


class OrderStateConflict(ShopError):
    default_code = "invalid_order_state"


class CardStateConflict(ShopError):
    default_code = "invalid_card_state"


class UnknownResource(ShopError):
    default_code = "not_found"


class WrongRoom(ShopError):
    """A viewer token of another room than the card's."""

    default_code = "forbidden"


class InvalidSignature(ShopError):
    """A payment webhook whose signature is missing, malformed, stale or wrong."""

    default_code = "invalid_signature"


class InvalidWebhook(ShopError):
    """A signed webhook body that is not an event this server understands."""

    default_code = "invalid_event"


class RejectedNotification(ShopError):
    """A payment provider's notification whose signature, key, timestamp or encryption does not check out
    (SPEC §10: 401, nothing changes)."""

    default_code = "invalid_signature"


class UnknownProvider(ShopError):
    """A payment provider or channel this server (or this shop) does not take."""

    default_code = "unknown_provider"


class AddressRequired(ShopError):
    """A shippable order paid without a shipping address."""

    default_code = "address_required"


class AfterSaleRefused(ShopError):
    """An after-sale request the order does not allow (outside the window, nothing left to refund); with
    the code ``after_sale_open``, the order already has an open request; with ``after_sale_not_open``, the
    request was decided or withdrawn meanwhile."""

    default_code = "after_sale_refused"


class RefundStateConflict(ShopError):
    """A refund that cannot be sent again: the provider took it (``succeeded``) or has it (``processing``)."""

    default_code = "invalid_refund_state"


class ProviderFailed(ShopError):
    """The payment provider could not be reached or refused the call; nothing was charged."""

    default_code = "provider_failed"


class InventoryUnavailable(ShopError):
    default_code = "unavailable"


class CommitTimedOut(ShopError):
    """The order row could not be committed before its deadline; it was not written and never will be."""

    default_code = "unavailable"


class TooManyOrders(ShopError):
    """More buy attempts on a card than a buyer's or an address's rate allows (the buy's own rate gate,
    ``LIVECART_LIMIT_ORDERS_PER_CUSTOMER`` / ``_PER_IP``); nothing was reserved."""

    default_code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after
