"""who is who: customers, host sessions and stream keys, verified rooms

v1 data stays as it was: existing rooms become ``guest`` rooms (a viewer per join, as before), their
viewers guest viewers (no customer). Rooms created from now on default to ``verified`` (in the app).
Host tokens of v1 (``h.``) no longer sign in: a host moves over by signing in again (README).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("wechat_openid", sa.String(length=64), nullable=True),
        sa.Column("wechat_unionid", sa.String(length=64), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_sign_in_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_customers_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("host_id", "phone", name=op.f("uq_customers_host_id_phone")),
        sa.UniqueConstraint("host_id", "wechat_openid", name=op.f("uq_customers_host_id_wechat_openid")),
    )
    op.create_table(
        "host_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_used_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_host_sessions_host_id_hosts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_sessions")),
    )
    op.create_index("ix_host_sessions_host", "host_sessions", ["host_id", "created_ms"])
    op.create_table(
        "stream_keys",
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_stream_keys_host_id_hosts")),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_stream_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_stream_keys_key_hash")),
    )
    # Columns and unique indexes are added in place, never by recreating a table (SQLite's batch mode would
    # drop and rebuild hosts and viewers, which rows of other tables reference).
    op.add_column("hosts", sa.Column("phone", sa.String(length=20), nullable=True))
    op.create_index("uq_hosts_phone", "hosts", ["phone"], unique=True)
    op.add_column("rooms", sa.Column("sign_in", sa.String(length=16), nullable=False, server_default="guest"))
    if op.get_bind().dialect.name == "sqlite":  # SQLite takes a column's foreign key only inline
        op.execute("ALTER TABLE viewers ADD COLUMN customer_id VARCHAR(40) REFERENCES customers (id)")
    else:
        op.add_column("viewers", sa.Column("customer_id", sa.String(length=40), nullable=True))
        op.create_foreign_key(
            op.f("fk_viewers_customer_id_customers"), "viewers", "customers", ["customer_id"], ["id"]
        )
    op.create_index("uq_viewers_room_customer", "viewers", ["room_id", "customer_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_viewers_room_customer", table_name="viewers")
    with op.batch_alter_table("viewers") as batch:
        batch.drop_constraint(op.f("fk_viewers_customer_id_customers"), type_="foreignkey")
        batch.drop_column("customer_id")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("sign_in")
    op.drop_index("uq_hosts_phone", table_name="hosts")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("phone")
    op.drop_table("stream_keys")
    op.drop_index("ix_host_sessions_host", table_name="host_sessions")
    op.drop_table("host_sessions")
    op.drop_table("customers")
