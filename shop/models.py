"""SQL tables of ``shop`` — the truth that Redis inventory is rebuilt from. Times are epoch ms (UTC)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from base.db import Base


class Product(Base):
    __tablename__ = "products"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[int]
    description: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(String(2000))
    #: A shipped good: its orders need a shipping address to be paid (``False``: a voucher, a service).
    shippable: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    created_ms: Mapped[int]


class Card(Base):
    """A product put on sale in one room: price, stock and the rules of the sale."""

    __tablename__ = "cards"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    price: Mapped[int]
    stock_total: Mapped[int]
    per_user_limit: Mapped[int]
    reserve_seconds: Mapped[int]
    #: This card's commission rate for promoters (``None``: the leader's, else the shop's).
    commission_bps: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))
    opened_ms: Mapped[int | None]
    closes_ms: Mapped[int | None]
    created_ms: Mapped[int]


class CardEvent(Base):
    """A moment of a card that its show's replay shows (``shop.replay_rules.CardEventKind``), written in the
    transaction of the change itself (``sold_out``: when the stock counter first publishes 0). In order of
    ``id`` among events of the same millisecond."""

    __tablename__ = "card_events"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"))
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"))
    event: Mapped[str] = mapped_column(String(16))
    at_ms: Mapped[int]
    #: The card's price from then on (``pinned``, ``price_cut``, ``price_raised``); ``None`` otherwise.
    price: Mapped[int | None]

    __table_args__ = (Index("ix_card_events_room_at", "room_id", "at_ms"),)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    card_id: Mapped[str] = mapped_column(ForeignKey("cards.id"))
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("viewers.id"), index=True)
    referrer_id: Mapped[str | None] = mapped_column(ForeignKey("viewers.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[int]
    unit_price: Mapped[int]
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    #: Units of a refunded order that went back on sale (``False``: written off).
    restocked: Mapped[bool] = mapped_column(default=False)
    #: What has been refunded of ``amount`` so far (a partial refund leaves the order ``paid``).
    refunded_amount: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Paid after its reservation had expired (honoured: the stock was re-reserved).
    late: Mapped[bool] = mapped_column(default=False)
    refund_reason: Mapped[str | None] = mapped_column(String(40))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    carrier: Mapped[str | None] = mapped_column(String(40))
    #: Where it ships (SPEC §10), given at checkout: recipient, their phone (E.164), region, street line.
    ship_name: Mapped[str | None] = mapped_column(String(40))
    ship_phone: Mapped[str | None] = mapped_column(String(20))
    ship_region: Mapped[str | None] = mapped_column(String(100))
    ship_line: Mapped[str | None] = mapped_column(String(200))
    expires_ms: Mapped[int]
    created_ms: Mapped[int]
    paid_ms: Mapped[int | None]
    shipped_ms: Mapped[int | None]
    delivered_ms: Mapped[int | None]
    completed_ms: Mapped[int | None]
    closed_ms: Mapped[int | None]

    __table_args__ = (
        UniqueConstraint("card_id", "buyer_id", "idempotency_key"),
        Index("ix_orders_card_status", "card_id", "status"),
        Index("ix_orders_status_expires", "status", "expires_ms"),
    )


class Payment(Base):
    """One attempt to pay an order at one provider; its id is the provider's ``out_trade_no``. Status:
    ``pending`` → ``succeeded`` | ``failed`` | ``closed``; ``refunded`` once all of it is being returned."""

    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    #: What the buyer's page needs to pay it (JSON), so a repeated checkout shows the same QR code.
    checkout: Mapped[str | None] = mapped_column(Text)
    #: The provider's transaction id, once it has told us.
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    #: When it was last asked about at the provider (a lost notification, SPEC §10).
    queried_ms: Mapped[int | None]
    created_ms: Mapped[int]
    updated_ms: Mapped[int]

    __table_args__ = (Index("ix_payments_status_created", "status", "created_ms"),)


class PaymentEvent(Base):
    """Every webhook event applied, by the provider's event id: a redelivery is recognised and ignored."""

    __tablename__ = "payment_events"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    received_ms: Mapped[int]


class Refund(Base):
    """Money going back to a buyer; its id is the provider's ``out_refund_no``. ``kind``: ``order``, (part
    of) a paid order (its clawback, if any, names it); ``payment``, a payment the order could not take (a
    duplicate, or a late one whose stock was gone), which the order's figures never count.

    ``status`` is where the provider is with it: ``pending`` (not yet sent, or to be sent again at
    ``next_try_ms`` after a failure, ``last_error`` saying why), ``processing`` (accepted), ``succeeded``.
    The order's ledger counts it from the moment it is written; the money moves when the provider says."""

    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    kind: Mapped[str] = mapped_column(String(16), default="order", server_default="order")
    amount: Mapped[int]
    #: The refund that completed the order put its units back on sale.
    restocked: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="succeeded")
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_try_ms: Mapped[int | None]
    created_ms: Mapped[int]
    updated_ms: Mapped[int | None]

    __table_args__ = (Index("ix_refunds_status_next_try", "status", "next_try_ms"),)


class AfterSale(Base):
    """A buyer's after-sale request (SPEC §10): ``requested`` → ``approved`` (its refund named) or
    ``rejected`` (with the host's reason) or ``withdrawn`` by the buyer. One open request per order."""

    __tablename__ = "after_sales"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    #: ``refund`` (仅退款) or ``return_refund`` (退货退款).
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    #: What the buyer asks back (``None``: all that is left); the host may approve less.
    amount: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16))
    #: The host's reason for a rejection (or note on an approval).
    host_note: Mapped[str | None] = mapped_column(String(500))
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    created_ms: Mapped[int]
    decided_ms: Mapped[int | None]

    __table_args__ = (
        Index(
            "uq_after_sales_open",
            "order_id",
            unique=True,
            sqlite_where=text("status = 'requested'"),
            postgresql_where=text("status = 'requested'"),
        ),
        Index("ix_after_sales_host_created", "host_id", "created_ms"),
    )


class ShippingAddress(Base):
    """A customer's last shipping address at a host, offered again at their next checkout."""

    __tablename__ = "shipping_addresses"
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(200))
    updated_ms: Mapped[int]


class Payout(Base):
    """A payment to one promoter of every payable ledger row up to ``up_to_ms`` (the rows name it). The same
    promoter and ``up_to_ms`` is the same payout: a repeated request finds it."""

    __tablename__ = "payouts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    #: A customer id, or a guest viewer's id (v1 rooms).
    promoter_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int]
    rows: Mapped[int]
    up_to_ms: Mapped[int]
    created_ms: Mapped[int]

    __table_args__ = (
        UniqueConstraint("host_id", "promoter_id", "up_to_ms"),
        Index("ix_payouts_host_created", "host_id", "created_ms"),
    )


class Commission(Base):
    """The one-level commission ledger: an accrual when a referred order is paid, a clawback per refund
    inside the after-sale window. Append-only but for ``payout_id``, which the payout that pays a row sets
    (once)."""

    __tablename__ = "commissions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    #: Who earns: a customer (bound promoter), or ``None`` for a guest viewer of a v1 room.
    promoter_customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    #: The promoter's viewer in the order's room, when they have one (a v1 guest promoter always has).
    promoter_id: Mapped[str | None] = mapped_column(ForeignKey("viewers.id"), index=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    #: The rate the accrual was made at (``None`` on a clawback and on v1 rows).
    rate_bps: Mapped[int | None]
    #: The refund a clawback takes back for (``None`` on an accrual and on v1 clawbacks).
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    payout_id: Mapped[str | None] = mapped_column(ForeignKey("payouts.id"), index=True)
    created_ms: Mapped[int]

    __table_args__ = (
        Index(
            "uq_commissions_accrual",
            "order_id",
            unique=True,
            sqlite_where=text("kind = 'accrual'"),
            postgresql_where=text("kind = 'accrual'"),
        ),
        Index("uq_commissions_refund", "refund_id", unique=True),
        Index("ix_commissions_host_created", "host_id", "created_ms"),
        Index("ix_commissions_host_promoter", "host_id", "promoter_customer_id"),
    )
