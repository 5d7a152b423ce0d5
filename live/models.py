"""SQL tables of ``live``: hosts, rooms, viewers, per-invitee invites. Times are epoch milliseconds (UTC)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from base.db import Base


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_ms: Mapped[int]
    #: E.164; the host signs in on a new device with a code sent to it (``None``: only by a session or
    #: the CLI).
    phone: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (Index("uq_hosts_phone", "phone", unique=True),)


class Room(Base):
    __tablename__ = "rooms"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    invite_token: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``verified``: joining needs a signed-in customer (one viewer each); ``guest``: v1, a viewer per join.
    sign_in: Mapped[str] = mapped_column(String(16), default="verified")
    scheduled_ms: Mapped[int | None]
    started_ms: Mapped[int | None]
    ended_ms: Mapped[int | None]
    created_ms: Mapped[int]


class Viewer(Base):
    __tablename__ = "viewers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"))
    name: Mapped[str] = mapped_column(String(64))
    share_code: Mapped[str] = mapped_column(String(32), unique=True)
    #: The promoter (another viewer of the same room) whose link brought this viewer: first touch, one level.
    referrer_id: Mapped[str | None] = mapped_column(ForeignKey("viewers.id"))
    #: The signed-in customer this viewer is (one viewer per customer and room); ``None`` for a guest.
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    created_ms: Mapped[int]

    __table_args__ = (
        Index("ix_viewers_room_referrer", "room_id", "referrer_id"),
        Index("uq_viewers_room_customer", "room_id", "customer_id", unique=True),
    )


class Invite(Base):
    """A per-invitee invite to a room, besides the room's own invite token. Its signed token names it and
    carries its expiry; this row holds what changes: how often it was used, and whether it was revoked."""

    __tablename__ = "invites"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(100))
    max_uses: Mapped[int]
    uses: Mapped[int] = mapped_column(default=0)
    revoked: Mapped[bool] = mapped_column(default=False)
    expires_ms: Mapped[int]
    created_ms: Mapped[int]

    __table_args__ = (
        CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses_within_max"),
        CheckConstraint("max_uses >= 1", name="max_uses_positive"),
    )
