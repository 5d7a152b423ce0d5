"""SQL tables of ``identity``: a host's customers and a host's sign-in sessions. Times are epoch ms (UTC).

A customer belongs to one host's shop (the host owns that data): the same phone at two hosts is two
customers. A host session is one signed-in device of a host; its token names it, and this row says whether
it still stands (expiry, sliding on use; revocation).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from base.db import Base


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    #: E.164 (``+8613800138000``), as ``phonenumbers`` normalises it; ``None`` for a WeChat-only customer.
    phone: Mapped[str | None] = mapped_column(String(20))
    wechat_openid: Mapped[str | None] = mapped_column(String(64))
    wechat_unionid: Mapped[str | None] = mapped_column(String(64))
    #: The display name the customer last joined a show with (``None`` until their first join).
    name: Mapped[str | None] = mapped_column(String(64))
    created_ms: Mapped[int]
    last_sign_in_ms: Mapped[int]

    __table_args__ = (
        UniqueConstraint("host_id", "phone"),
        UniqueConstraint("host_id", "wechat_openid"),
    )


class HostSession(Base):
    __tablename__ = "host_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"))
    #: What the host sees in their list of sessions (the browser's User-Agent, or "cli").
    label: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int]
    last_used_ms: Mapped[int]
    expires_ms: Mapped[int]
    revoked_ms: Mapped[int | None]

    __table_args__ = (Index("ix_host_sessions_host", "host_id", "created_ms"),)


class StreamKey(Base):
    """A host's OBS/WHIP stream key, as its SHA-256 (the key itself is shown once, when it is made); one
    per host, replaced when the host rotates it."""

    __tablename__ = "stream_keys"
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int]
