"""The rules of commission and settlement (SPEC §9), pure: which rate, how much a refund takes back, what
a refund may be, and when an order's commission is final.

Money is integer minor units, times epoch ms. Rounding always goes down for what a promoter gets, and a
clawback is computed on the running total so that partial refunds add up exactly: once an order is fully
refunded, exactly what was accrued has been taken back.
"""

from __future__ import annotations

from dataclasses import dataclass

from shop.errors import InvalidRefund

DAY_MS = 24 * 3600 * 1000


def choose_rate(
    *, card_bps: int | None, leader_bps: int | None, shop_bps: int | None, default_bps: int
) -> int:
    """The card's rate if set, else the leader's, else the shop's, else the server's default."""
    for rate in (card_bps, leader_bps, shop_bps):
        if rate is not None:
            return rate
    return default_bps


def clawback_due(*, accrued: int, order_amount: int, refunded_total: int, clawed_so_far: int) -> int:
    """What a refund takes back now (≥ 0): after refunds of ``refunded_total`` in all, ``floor(accrued x
    refunded_total / order_amount)`` has been taken back in all."""
    if accrued <= 0 or order_amount <= 0:
        return 0
    refunded_total = min(max(refunded_total, 0), order_amount)
    return max(accrued * refunded_total // order_amount - clawed_so_far, 0)


def after_sale_ends(paid_ms: int, days: float) -> int:
    """The first millisecond after the after-sale window of an order paid at ``paid_ms``."""
    return paid_ms + int(days * DAY_MS)


def inside_after_sale(paid_ms: int | None, *, now_ms: int, days: float) -> bool:
    """A refund now still claws back commission (after the window the commission is final)."""
    return paid_ms is not None and now_ms < after_sale_ends(paid_ms, days)


def payable_paid_before(now_ms: int, days: float) -> int:
    """Orders paid at or before this instant are past their after-sale window now: their rows are payable."""
    return now_ms - int(days * DAY_MS)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    amount: int
    #: This refund completes the order (it becomes ``refunded``; only then may its units go back on sale).
    completes: bool


def plan_refund(*, order_amount: int, refunded: int, requested: int | None, restock: bool) -> RefundPlan:
    """What a refund of ``requested`` (``None``: all that is left) of a paid order does, or why it cannot."""
    left = order_amount - refunded
    amount = left if requested is None else requested
    if amount <= 0 or amount > left:
        raise InvalidRefund(
            f"amount: between 1 and what is left to refund of this order ({left}), in minor units."
        )
    completes = amount == left
    if restock and not completes:
        raise InvalidRefund(
            "restock: only the refund that completes the order puts its units back on sale; "
            "refund the rest, or refund this part without restock."
        )
    return RefundPlan(amount=amount, completes=completes)
