"""Real money: provider payments, provider refunds, shipping addresses, fulfilment, after-sale (SPEC §10)

Existing data carries over: every payment so far was the dev provider's; every refund so far was
recorded as done (``succeeded``) and belongs to its order (``kind = 'order'``), attached to the payment it
returned money from where there was one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 22:20:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("payment_providers", sa.String(length=100), nullable=True))
    op.add_column(
        "products", sa.Column("shippable", sa.Boolean(), nullable=False, server_default=sa.text("true"))
    )
    columns: list[tuple[str, Any]] = [
        ("carrier", sa.String(length=40)),
        ("ship_name", sa.String(length=40)),
        ("ship_phone", sa.String(length=20)),
        ("ship_region", sa.String(length=100)),
        ("ship_line", sa.String(length=200)),
        ("shipped_ms", sa.BigInteger()),
        ("delivered_ms", sa.BigInteger()),
        ("completed_ms", sa.BigInteger()),
    ]
    for name, type_ in columns:
        op.add_column("orders", sa.Column(name, type_, nullable=True))
    columns = [
        ("channel", sa.String(length=16)),
        ("checkout", sa.Text()),
        ("provider_ref", sa.String(length=64)),
        ("queried_ms", sa.BigInteger()),
    ]
    for name, type_ in columns:
        op.add_column("payments", sa.Column(name, type_, nullable=True))
    op.create_index("ix_payments_status_created", "payments", ["status", "created_ms"])

    # Not batch mode: the ledger references refunds, and SQLite cannot drop a referenced table to copy it.
    if op.get_bind().dialect.name == "sqlite":  # an inline reference: SQLite cannot add a constraint
        op.execute("ALTER TABLE refunds ADD COLUMN payment_id VARCHAR(40) REFERENCES payments (id)")
    else:
        op.add_column("refunds", sa.Column("payment_id", sa.String(length=40), nullable=True))
        op.create_foreign_key(
            op.f("fk_refunds_payment_id_payments"), "refunds", "payments", ["payment_id"], ["id"]
        )
    op.add_column("refunds", sa.Column("kind", sa.String(length=16), nullable=False, server_default="order"))
    op.add_column("refunds", sa.Column("reason", sa.String(length=200), nullable=True))
    op.add_column(
        "refunds", sa.Column("status", sa.String(length=16), nullable=False, server_default="succeeded")
    )
    op.add_column("refunds", sa.Column("provider_ref", sa.String(length=64), nullable=True))
    op.add_column("refunds", sa.Column("attempts", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("refunds", sa.Column("last_error", sa.String(length=500), nullable=True))
    op.add_column("refunds", sa.Column("next_try_ms", sa.BigInteger(), nullable=True))
    op.add_column("refunds", sa.Column("updated_ms", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE refunds SET payment_id = (SELECT p.id FROM payments p WHERE p.order_id = refunds.order_id "
        "AND p.status = 'refunded' ORDER BY p.updated_ms LIMIT 1)"
    )
    op.create_index("ix_refunds_status_next_try", "refunds", ["status", "next_try_ms"])

    op.create_table(
        "after_sales",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("host_note", sa.String(length=500), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_after_sales_order_id_orders")),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_after_sales_host_id_hosts")),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_after_sales_refund_id_refunds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_after_sales")),
    )
    op.create_index(op.f("ix_after_sales_order_id"), "after_sales", ["order_id"])
    op.create_index("ix_after_sales_host_created", "after_sales", ["host_id", "created_ms"])
    op.create_index(
        "uq_after_sales_open",
        "after_sales",
        ["order_id"],
        unique=True,
        sqlite_where=sa.text("status = 'requested'"),
        postgresql_where=sa.text("status = 'requested'"),
    )
    op.create_table(
        "shipping_addresses",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("line", sa.String(length=200), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_shipping_addresses_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_shipping_addresses")),
    )


def downgrade() -> None:
    op.drop_table("shipping_addresses")
    op.drop_index("uq_after_sales_open", table_name="after_sales")
    op.drop_index("ix_after_sales_host_created", table_name="after_sales")
    op.drop_index(op.f("ix_after_sales_order_id"), table_name="after_sales")
    op.drop_table("after_sales")
    op.drop_index("ix_refunds_status_next_try", table_name="refunds")
    op.execute("DELETE FROM refunds WHERE kind = 'payment'")  # v1 refunds are always an order's
    if op.get_bind().dialect.name != "sqlite":  # SQLite drops the column's inline reference with it
        op.drop_constraint(op.f("fk_refunds_payment_id_payments"), "refunds", type_="foreignkey")
    for name in [
        "updated_ms",
        "next_try_ms",
        "last_error",
        "attempts",
        "provider_ref",
        "status",
        "reason",
        "kind",
        "payment_id",
    ]:
        op.drop_column("refunds", name)
    op.drop_index("ix_payments_status_created", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        for name in ["queried_ms", "provider_ref", "checkout", "channel"]:
            batch.drop_column(name)
    with op.batch_alter_table("orders") as batch:
        for name in [
            "completed_ms",
            "delivered_ms",
            "shipped_ms",
            "ship_line",
            "ship_region",
            "ship_phone",
            "ship_name",
            "carrier",
        ]:
            batch.drop_column(name)
    with op.batch_alter_table("products") as batch:
        batch.drop_column("shippable")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("payment_providers")
