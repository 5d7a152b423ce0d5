"""Request bodies and response shapes of the shop API (contract v1). Also the source of the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from base.fields import Description, Identifier, RequestBody, Title, TrackingNumber, Url

MAX_PRICE = 100_000_000_00  # 100 million in minor units
MAX_STOCK = 10_000_000


class ProductIn(RequestBody):
    name: Title
    price: int = Field(ge=0, le=MAX_PRICE)
    description: Description | None = None
    image_url: Url | None = None


class CardIn(RequestBody):
    product_id: Identifier
    price: int = Field(ge=0, le=MAX_PRICE)
    stock: int = Field(ge=0, le=MAX_STOCK)
    per_user_limit: int = Field(default=1, ge=1, le=10_000)
    reserve_seconds: int = Field(default=300, ge=1, le=86_400)


class CardOpenIn(RequestBody):
    duration_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)


class CardPatchIn(RequestBody):
    price: int | None = Field(default=None, ge=0, le=MAX_PRICE)
    add_stock: int | None = Field(default=None, ge=1, le=MAX_STOCK)


class OrderIn(RequestBody):
    quantity: int = Field(ge=1)


class RefundIn(RequestBody):
    restock: bool = False


class DevCompleteIn(RequestBody):
    outcome: Literal["paid", "failed"]


class ShipIn(RequestBody):
    tracking_number: TrackingNumber


class ProductOut(BaseModel):
    id: str
    name: str
    price: int
    description: str | None
    image_url: str | None
    created_at: str


class CardProductOut(BaseModel):
    id: str
    name: str
    image_url: str | None
    description: str | None


class CardOut(BaseModel):
    id: str
    room_id: str
    product: CardProductOut
    price: int
    stock_total: int
    stock_left: int
    per_user_limit: int
    reserve_seconds: int
    status: Literal["pinned", "open", "closed", "sold_out"]
    closes_at: str | None


class OrderOut(BaseModel):
    id: str
    card_id: str
    room_id: str
    buyer_id: str
    quantity: int
    unit_price: int
    amount: int
    currency: str
    status: Literal["reserved", "paid", "expired", "cancelled", "refunded"]
    expires_at: str
    created_at: str
    paid_at: str | None
    late_payment: bool
    refund_reason: str | None
    restocked: bool
    tracking_number: str | None
    referrer_id: str | None


class PayOut(BaseModel):
    payment_id: str
    checkout_url: str


class PaymentOut(BaseModel):
    id: str
    order_id: str
    provider: str
    status: Literal["pending", "succeeded", "failed", "refunded"]
    amount: int
