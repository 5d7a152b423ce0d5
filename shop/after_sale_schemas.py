"""Request bodies, queries and answers of fulfilment and after-sale (SPEC §10); the source of their OpenAPI
schema. Amounts are integers in minor units."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from base.fields import Identifier, OneLine, RequestBody
from shop import schemas
from shop.schemas import MAX_PRICE, AddressOut

#: The most one refund may be (an order's amount is at most its price times the most units).
MAX_AMOUNT = MAX_PRICE * 10_000

Carrier = Annotated[str, OneLine(40)]
#: A buyer's reason, or the host's (one line: it is shown in lists).
Reason = Annotated[str, OneLine(500)]
AfterSaleKind = Literal["refund", "return_refund"]
AfterSaleStatus = Literal["requested", "approved", "rejected", "withdrawn"]
RefundStatus = Literal["pending", "processing", "succeeded"]


class ShipIn(schemas.ShipIn):
    """The shipment: its tracking number and, optionally, the carrier (a v1 body, tracking only, is one)"""

    #: Who carries it (顺丰, 中通 ...); not given: left as it is.
    carrier: Carrier | None = None


class BuyerQuery(BaseModel):
    shop: Identifier | None = Field(
        default=None,
        description="the shop (host id) whose cookie signs the buyer in, without a bearer token",
    )


class AfterSaleIn(RequestBody):
    """What the buyer asks: their money back (``refund``, 仅退款) or to return the goods for it
    (``return_refund``, 退货退款)"""

    kind: AfterSaleKind
    reason: Reason
    #: How much back (default: all that is left to refund of the order).
    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)


class ApproveIn(RequestBody):
    """The host's approval: the refund runs at once"""

    #: How much to refund (default: what the buyer asked, else all that is left).
    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    #: Put the units back on sale (only with the refund that completes the order).
    restock: bool = False
    note: Reason | None = None


class RejectIn(RequestBody):
    """The host's rejection, with the reason the buyer sees"""

    reason: Reason


class AfterSalesQuery(BaseModel):
    status: AfterSaleStatus | None = Field(default=None, description="only the requests in this status")


class RefundsQuery(BaseModel):
    status: RefundStatus | None = Field(default=None, description="only the refunds in this status")


class AfterSaleRefundOut(BaseModel):
    """The refund an approval made, where the provider is with it"""

    id: str
    amount: int
    status: RefundStatus
    #: How often it was sent to the provider.
    attempts: int
    #: Why the last attempt failed (it is tried again), or ``None``.
    last_error: str | None


class AfterSaleOut(BaseModel):
    """An after-sale request"""

    id: str
    order_id: str
    kind: AfterSaleKind
    reason: str
    #: What the buyer asked back (``None``: all that was left).
    amount: int | None
    status: AfterSaleStatus
    #: The host's reason for a rejection, or note on an approval.
    host_note: str | None
    refund: AfterSaleRefundOut | None
    created_at: str
    decided_at: str | None


class AfterSaleOrderOut(BaseModel):
    id: str
    room_id: str
    amount: int
    refunded_amount: int
    status: str
    address: AddressOut | None


class ShopAfterSaleOut(AfterSaleOut):
    """An after-sale request of your shop, with its order"""

    order: AfterSaleOrderOut


class RefundOut(BaseModel):
    """Money going back to a buyer, and where the provider is with it"""

    id: str
    order_id: str
    #: ``order``: (part of) a paid order; ``payment``: a payment the order could not take.
    kind: str
    amount: int
    status: RefundStatus
    attempts: int
    last_error: str | None
    #: When it is sent (or asked about) again by itself.
    next_try_at: str | None
    created_at: str
