"""Replays (issue 14): what became of a room's recording, the shop's replay settings, the cards' timeline

- ``rooms.replay``: ``NULL`` (kept and published, or no recording at all), ``hidden`` (the host hid it),
  ``deleting`` (the host deleted it while the show was live: its files go when the show has ended),
  ``deleted`` (its files are gone; a room never gets a replay back).
- ``hosts.replay_keep_days`` (``NULL``: ``LIVECART_REPLAY_KEEP_DAYS``) and ``hosts.replay_sales_hours``
  (0: ending a show closes its cards, as before).
- ``card_events``: every change of a card that a replay shows at its moment (pinned, opened, price cut or
  raised, sold out, closed), written with the change.

Existing data: no room has a recording yet, and no card has events (a replay of an earlier show would have
no video to show them over).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rooms", sa.Column("replay", sa.String(length=16), nullable=True))
    op.add_column("hosts", sa.Column("replay_keep_days", sa.BigInteger(), nullable=True))
    op.add_column(
        "hosts", sa.Column("replay_sales_hours", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.create_table(
        "card_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room_id", sa.String(length=40), nullable=False),
        sa.Column("card_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_card_events_room_id_rooms")),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name=op.f("fk_card_events_card_id_cards")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_events")),
    )
    op.create_index("ix_card_events_room_at", "card_events", ["room_id", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_card_events_room_at", table_name="card_events")
    op.drop_table("card_events")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("replay_sales_hours")
        batch.drop_column("replay_keep_days")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("replay")
