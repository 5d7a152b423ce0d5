"""SQL tables of ``live``: hosts, rooms, viewers, per-invitee invites, the host's leaders (团长) and who
brought each customer (bindings). Times are epoch milliseconds (UTC)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
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
    #: The shop's own commission rate for promoters (``None``: ``LIVECART_COMMISSION_RATE_BPS``).
    commission_bps: Mapped[int | None]
    #: The payment providers the shop takes, comma-separated, best first (``None``: every one configured).
    payment_providers: Mapped[str | None] = mapped_column(String(100))
    #: Days a show's replay is kept after it ends (``None``: ``LIVECART_REPLAY_KEEP_DAYS``; 0: not kept).
    replay_keep_days: Mapped[int | None]
    #: Hours a show's open cards stay on sale after it ends, for its replay's viewers (0: closed at the end).
    replay_sales_hours: Mapped[int] = mapped_column(default=0, server_default="0")

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
    #: What became of its recording (``shop.replay_rules.ReplayState``): ``None``, kept and published (or
    #: none was made); ``hidden``; ``deleting`` (deleted during the show: its files go once it ended);
    #: ``deleted``.
    replay: Mapped[str | None] = mapped_column(String(16))


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


class Leader(Base):
    """A community leader (团长) on a host's roster: one of the host's customers, with a code that admits
    people to every room of the host and binds them to the leader."""

    __tablename__ = "leaders"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    name: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    #: The leader's own rate (``None``: the shop's); a card's own rate wins over it.
    commission_bps: Mapped[int | None]
    #: A suspended leader's code still admits people but binds nobody, and earns nothing on orders paid
    #: while suspended; what was earned before stays theirs.
    suspended: Mapped[bool] = mapped_column(default=False)
    created_ms: Mapped[int]

    __table_args__ = (UniqueConstraint("host_id", "customer_id"),)


class Binding(Base):
    """Who brought a customer to a host (SPEC §9): the first leader or sharing customer whose code did. It
    lasts ``LIVECART_BINDING_DAYS`` from ``bound_ms`` (0: for ever), then the next code binds afresh: a
    new row with the next ``seq``. The unique ``seq`` is the guard: two concurrent first joins make one."""

    __tablename__ = "bindings"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    seq: Mapped[int]
    #: The promoter: a customer of the same host (a leader, or whoever shared their link); never
    #: ``customer_id`` itself.
    promoter_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    #: The room the customer was joining when the code bound them (``None``: migrated from v1 data).
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id"))
    bound_ms: Mapped[int]

    __table_args__ = (
        UniqueConstraint("host_id", "customer_id", "seq"),
        Index("ix_bindings_promoter", "host_id", "promoter_id"),
        CheckConstraint("promoter_id <> customer_id", name="never_oneself"),
    )
