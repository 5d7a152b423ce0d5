"""Request bodies and response shapes of the shop API (contract v1). Also the source of the OpenAPI schema."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from base.fields import Description, Identifier, RequestBody, Title, TrackingNumber, Url
from shop.addresses import AddressIn

MAX_PRICE = 100_000_000_00  # 100 million in minor units
MAX_STOCK = 10_000_000


class ProductIn(RequestBody):
    name: Title
    price: int = Field(ge=0, le=MAX_PRICE)
    description: Description | None = None
    image_url: Url | None = None
    #: A good that ships: its buyers give an address to pay (``false``: a voucher, a service, a course).
    shippable: bool = True


class CardIn(RequestBody):
    product_id: Identifier
    price: int = Field(ge=0, le=MAX_PRICE)
    stock: int = Field(ge=0, le=MAX_STOCK)
    per_user_limit: int = Field(default=1, ge=1, le=10_000)
    reserve_seconds: int = Field(default=300, ge=1, le=86_400)
    #: This card's commission rate for promoters, in basis points (``None``: the leader's, else the shop's).
    commission_bps: int | None = Field(default=None, ge=0, le=10_000)


class CardOpenIn(RequestBody):
    duration_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)


def _one_of_them_given(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON Schema of :meth:`CardPatchIn.something_to_change`: one of the fields, given and not null
    (or, for one of ``NULLABLE``, given)."""
    branches: list[dict[str, Any]] = []
    for name in model.CHANGES:  # type: ignore[attr-defined]
        if name in model.NULLABLE:  # type: ignore[attr-defined]  # null is a change too (back to the default)
            branches.append({"required": [name]})
            continue
        (given,) = [s for s in schema["properties"][name]["anyOf"] if s != {"type": "null"}]
        branches.append({"required": [name], "properties": {name: given}})
    schema["anyOf"] = branches


class CardPatchIn(RequestBody):
    """What to change: ``price``, ``add_stock``, ``commission_bps`` (at least one of them; only
    ``commission_bps`` may be null: back to the leader's or shop's rate)."""

    model_config = ConfigDict(json_schema_extra=_one_of_them_given)
    CHANGES: ClassVar[tuple[str, ...]] = ("price", "add_stock", "commission_bps")
    NULLABLE: ClassVar[tuple[str, ...]] = ("commission_bps",)

    price: int | None = Field(default=None, ge=0, le=MAX_PRICE)
    add_stock: int | None = Field(default=None, ge=1, le=MAX_STOCK)
    commission_bps: int | None = Field(default=None, ge=0, le=10_000)

    @model_validator(mode="after")
    def something_to_change(self) -> CardPatchIn:
        if self.price is None and self.add_stock is None and "commission_bps" not in self.model_fields_set:
            raise ValueError("Give price, add_stock and/or commission_bps.")
        return self


class OrderIn(RequestBody):
    #: At most ``Settings.max_order_quantity`` (the order service checks it; the schema says it).
    quantity: int = Field(ge=1)


#: ``Idempotency-Key`` as the buy takes it (``shop.api``): 1-255 printable ASCII characters, not all spaces.
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": 255,
    "pattern": "^[ -~]*[!-~][ -~]*$",
}
#: ``LiveCart-Signature`` as the provider writes it (``shop.payments.signing.sign``).
SIGNATURE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"}


class RoomOrdersQuery(BaseModel):
    """The query string of ``GET /api/rooms/{room}/orders``."""

    format: str | None = Field(
        default=None, description="csv: the orders as a CSV file (text/csv); anything else: JSON"
    )


class RefundIn(RequestBody):
    #: Put the units back on sale; only with the refund that completes the order.
    restock: bool = False
    #: How much to refund, in minor units (default: all that is left; less leaves the order ``paid``).
    amount: int | None = Field(default=None, ge=1, le=MAX_PRICE * 10_000)


class PayIn(RequestBody):
    #: Which provider (default: the shop's first that serves this browser).
    provider: Literal["wechat", "alipay", "stripe", "dev"] | None = None
    #: How to pay with it (default: the best for this browser: JSAPI in WeChat, H5/WAP on a phone, a QR
    #: code or a payment page on a desktop).
    channel: Literal["native", "jsapi", "h5", "wap", "page", "checkout", "dev"] | None = None
    #: Where it ships: required the first time for a product that ships; kept on the order.
    address: AddressIn | None = None


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
    shippable: bool
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
    commission_bps: int | None


class AddressOut(BaseModel):
    """A shipping address: recipient, phone (E.164), region (省市区), street line"""

    name: str
    phone: str
    region: str
    line: str


class OrderOut(BaseModel):
    id: str
    card_id: str
    room_id: str
    buyer_id: str
    quantity: int
    unit_price: int
    amount: int
    currency: str
    status: Literal[
        "reserved", "paid", "shipped", "delivered", "completed", "expired", "cancelled", "refunded"
    ]
    #: Refunded so far; a partially refunded order keeps its status.
    refunded_amount: int
    expires_at: str
    created_at: str
    paid_at: str | None
    late_payment: bool
    refund_reason: str | None
    restocked: bool
    tracking_number: str | None
    carrier: str | None
    shipped_at: str | None
    delivered_at: str | None
    completed_at: str | None
    #: Where it ships, as given at checkout (``null`` before, and for what does not ship).
    address: AddressOut | None
    referrer_id: str | None


class PayOut(BaseModel):
    """The payment started, and what the buyer's page needs to pay it"""

    payment_id: str
    provider: str
    channel: str
    #: ``code_url`` (WeChat Native: show it as a QR code), ``h5_url`` (open it), ``jsapi`` (the parameters
    #: of ``WeixinJSBridge.invoke('getBrandWCPayRequest')``) or ``redirect_url`` (go there).
    checkout: dict[str, Any]
    #: v1: the URL to open (``redirect_url``, ``h5_url`` or ``code_url``); ``null`` for JSAPI.
    checkout_url: str | None


class CheckoutProviderOut(BaseModel):
    provider: str
    channel: str


class CheckoutOptionsOut(BaseModel):
    """How this order can be paid here: the shop's providers (each with the channel it would use in this
    browser), whether an address is needed, and the address to offer (the order's, else the last one)"""

    order_id: str
    amount: int
    currency: str
    providers: list[CheckoutProviderOut]
    address_required: bool
    address: AddressOut | None


class PaymentOut(BaseModel):
    """A payment of the dev provider"""

    id: str
    order_id: str
    provider: str
    status: Literal["pending", "succeeded", "failed", "closed", "refunded"]
    amount: int


class WebhookOut(BaseModel):
    """Event accepted (or recognised as a redelivery), and what it did"""

    received: bool
    outcome: str


class DevEventOut(BaseModel):
    id: str
    type: str
    outcome: str


class DevCompleteOut(BaseModel):
    """The payment, the event the dev provider sent, and the order after it"""

    payment: PaymentOut
    event: DevEventOut
    order: OrderOut
