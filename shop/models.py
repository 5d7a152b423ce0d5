"""SQL tables of ``shop`` — the truth that Redis inventory is rebuilt from. Times are epoch ms (UTC)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
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
    expires_ms: Mapped[int]
    created_ms: Mapped[int]
    paid_ms: Mapped[int | None]
    closed_ms: Mapped[int | None]

    __table_args__ = (
        UniqueConstraint("card_id", "buyer_id", "idempotency_key"),
        Index("ix_orders_card_status", "card_id", "status"),
        Index("ix_orders_status_expires", "status", "expires_ms"),
    )


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    created_ms: Mapped[int]
    updated_ms: Mapped[int]


class PaymentEvent(Base):
    """Every webhook event applied, by the provider's event id: a redelivery is recognised and ignored."""

    __tablename__ = "payment_events"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    received_ms: Mapped[int]


class Refund(Base):
    """One refund of (part of) a paid order; its clawback, if any, names it."""

    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[int]
    #: The refund that completed the order put its units back on sale.
    restocked: Mapped[bool] = mapped_column(default=False)
    created_ms: Mapped[int]


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
