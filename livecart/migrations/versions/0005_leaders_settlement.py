"""团长 across shows: leaders, bindings, partial refunds, payouts; the ledger per host and customer

v1 data carries over: every signed-in viewer a promoter's share link brought is bound, at that host, to the
promoter's customer (the earliest such join per host and customer: first touch); every refunded order gets
its refund row; every ledger row its host, its promoter's customer (where the promoter viewer had one)
and, for a clawback, the refund it belongs to.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leaders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("commission_bps", sa.BigInteger(), nullable=True),
        sa.Column("suspended", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_leaders_host_id_hosts")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_leaders_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leaders")),
        sa.UniqueConstraint("code", name=op.f("uq_leaders_code")),
        sa.UniqueConstraint("host_id", "customer_id", name=op.f("uq_leaders_host_id_customer_id")),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("promoter_id", sa.String(length=40), nullable=False),
        sa.Column("room_id", sa.String(length=40), nullable=True),
        sa.Column("bound_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("promoter_id <> customer_id", name=op.f("ck_bindings_never_oneself")),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_bindings_host_id_hosts")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_bindings_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["promoter_id"], ["customers.id"], name=op.f("fk_bindings_promoter_id_customers")
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_bindings_room_id_rooms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bindings")),
        sa.UniqueConstraint(
            "host_id", "customer_id", "seq", name=op.f("uq_bindings_host_id_customer_id_seq")
        ),
    )
    op.create_index("ix_bindings_promoter", "bindings", ["host_id", "promoter_id"])
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("restocked", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"])
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("promoter_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("up_to_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_payouts_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint(
            "host_id", "promoter_id", "up_to_ms", name=op.f("uq_payouts_host_id_promoter_id_up_to_ms")
        ),
    )
    op.create_index("ix_payouts_host_created", "payouts", ["host_id", "created_ms"])

    # Plain columns are added in place (hosts, customers, cards and orders are referenced by other tables).
    op.add_column("hosts", sa.Column("commission_bps", sa.BigInteger(), nullable=True))
    op.add_column("customers", sa.Column("name", sa.String(length=64), nullable=True))
    op.add_column("cards", sa.Column("commission_bps", sa.BigInteger(), nullable=True))
    op.add_column("orders", sa.Column("refunded_amount", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE orders SET refunded_amount = amount WHERE status = 'refunded'")
    op.execute(
        "INSERT INTO refunds (id, order_id, amount, restocked, created_ms) "
        "SELECT 'rfd_' || id, id, amount, restocked, COALESCE(closed_ms, created_ms) FROM orders "
        "WHERE status = 'refunded' AND paid_ms IS NOT NULL"
    )
    op.execute(
        "UPDATE customers SET name = (SELECT v.name FROM viewers v WHERE v.customer_id = customers.id "
        "ORDER BY v.created_ms DESC, v.id DESC LIMIT 1)"
    )
    # First touch per host and customer, from v1's per-room attribution of signed-in viewers.
    op.execute(
        """
        INSERT INTO bindings (id, host_id, customer_id, seq, promoter_id, room_id, bound_ms)
        SELECT 'bd_' || v.id, r.host_id, v.customer_id, 1, p.customer_id, v.room_id, v.created_ms
        FROM viewers v
        JOIN viewers p ON p.id = v.referrer_id
        JOIN rooms r ON r.id = v.room_id
        WHERE v.customer_id IS NOT NULL AND p.customer_id IS NOT NULL AND p.customer_id <> v.customer_id
          AND NOT EXISTS (
            SELECT 1 FROM viewers v2
            JOIN viewers p2 ON p2.id = v2.referrer_id
            JOIN rooms r2 ON r2.id = v2.room_id
            WHERE v2.customer_id = v.customer_id AND r2.host_id = r.host_id
              AND p2.customer_id IS NOT NULL AND p2.customer_id <> v2.customer_id
              AND (v2.created_ms < v.created_ms OR (v2.created_ms = v.created_ms AND v2.id < v.id))
          )
        """
    )

    # The ledger is rebuilt (SQLite's batch mode; nothing references it): the per-(order, kind) unique
    # constraint gives way to one accrual per order and one clawback per refund.
    with op.batch_alter_table("commissions") as batch:
        batch.add_column(sa.Column("host_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("promoter_customer_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("rate_bps", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("refund_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("payout_id", sa.String(length=40), nullable=True))
        batch.alter_column("promoter_id", existing_type=sa.String(length=40), nullable=True)
        batch.drop_constraint(op.f("uq_commissions_order_id_kind"), type_="unique")
    op.execute(
        "UPDATE commissions SET host_id = (SELECT r.host_id FROM rooms r WHERE r.id = commissions.room_id)"
    )
    op.execute(
        "UPDATE commissions SET promoter_customer_id = "
        "(SELECT v.customer_id FROM viewers v WHERE v.id = commissions.promoter_id)"
    )
    op.execute(
        "UPDATE commissions SET refund_id = 'rfd_' || order_id WHERE kind = 'clawback' "
        "AND order_id IN (SELECT order_id FROM refunds WHERE id = 'rfd_' || order_id)"
    )
    with op.batch_alter_table("commissions") as batch:
        batch.alter_column("host_id", existing_type=sa.String(length=40), nullable=False)
        batch.create_foreign_key(op.f("fk_commissions_host_id_hosts"), "hosts", ["host_id"], ["id"])
        batch.create_foreign_key(
            op.f("fk_commissions_promoter_customer_id_customers"),
            "customers",
            ["promoter_customer_id"],
            ["id"],
        )
        batch.create_foreign_key(op.f("fk_commissions_refund_id_refunds"), "refunds", ["refund_id"], ["id"])
        batch.create_foreign_key(op.f("fk_commissions_payout_id_payouts"), "payouts", ["payout_id"], ["id"])
    op.create_index(
        "uq_commissions_accrual",
        "commissions",
        ["order_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'accrual'"),
        postgresql_where=sa.text("kind = 'accrual'"),
    )
    op.create_index("uq_commissions_refund", "commissions", ["refund_id"], unique=True)
    op.create_index("ix_commissions_host_created", "commissions", ["host_id", "created_ms"])
    op.create_index("ix_commissions_host_promoter", "commissions", ["host_id", "promoter_customer_id"])
    op.create_index(op.f("ix_commissions_payout_id"), "commissions", ["payout_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_commissions_payout_id"), table_name="commissions")
    op.drop_index("ix_commissions_host_promoter", table_name="commissions")
    op.drop_index("ix_commissions_host_created", table_name="commissions")
    op.drop_index("uq_commissions_refund", table_name="commissions")
    op.drop_index("uq_commissions_accrual", table_name="commissions")
    op.execute("DELETE FROM commissions WHERE promoter_id IS NULL")  # v2 rows v1 cannot hold
    with op.batch_alter_table("commissions") as batch:
        batch.drop_constraint(op.f("fk_commissions_payout_id_payouts"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_commissions_refund_id_refunds"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_commissions_promoter_customer_id_customers"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_commissions_host_id_hosts"), type_="foreignkey")
        batch.drop_column("payout_id")
        batch.drop_column("refund_id")
        batch.drop_column("rate_bps")
        batch.drop_column("promoter_customer_id")
        batch.drop_column("host_id")
        batch.alter_column("promoter_id", existing_type=sa.String(length=40), nullable=False)
        batch.create_unique_constraint(op.f("uq_commissions_order_id_kind"), ["order_id", "kind"])
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("refunded_amount")
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("commission_bps")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("commission_bps")
    op.drop_index("ix_payouts_host_created", table_name="payouts")
    op.drop_table("payouts")
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_index("ix_bindings_promoter", table_name="bindings")
    op.drop_table("bindings")
    op.drop_table("leaders")
