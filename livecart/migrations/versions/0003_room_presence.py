"""room presence in SQL: who watched, and viewer counts over time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_viewers",
        sa.Column("room_id", sa.String(length=40), nullable=False),
        sa.Column("viewer_id", sa.String(length=40), nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_room_viewers_room_id_rooms")),
        sa.ForeignKeyConstraint(
            ["viewer_id"], ["viewers.id"], name=op.f("fk_room_viewers_viewer_id_viewers")
        ),
        sa.PrimaryKeyConstraint("room_id", "viewer_id", name=op.f("pk_room_viewers")),
    )
    op.create_table(
        "room_viewer_samples",
        sa.Column("room_id", sa.String(length=40), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("viewers", sa.BigInteger(), nullable=False),
        sa.Column("connections", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_room_viewer_samples_room_id_rooms")),
        sa.PrimaryKeyConstraint("room_id", "at_ms", name=op.f("pk_room_viewer_samples")),
    )


def downgrade() -> None:
    op.drop_table("room_viewer_samples")
    op.drop_table("room_viewers")
