"""Host sessions in SQL: one per signed-in device, expiring ``host_session_days`` after its last use
(sliding), revocable one by one or all at once; and the host's stream key for OBS/WHIP, its own secret.

The token (``s.``, ``identity/tokens.py``) proves which session of which host; this table says whether
that session still stands. Every host request reads its row (hosts make few requests; a revocation takes
effect on the very next one, in every process). The expiry slides at most once a minute per session, so
a busy console does not write on every call.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock, iso
from base.ids import new_id
from identity.errors import InvalidToken
from identity.models import HostSession, StreamKey
from identity.tokens import HostIdentity, TokenSigner

STREAM_KEY_PREFIX = "k."
SLIDE_EVERY_MS = 60_000
DAY_MS = 24 * 3600 * 1000


def stream_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_stream_key() -> str:
    return STREAM_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class NewSession:
    id: str
    token: str
    expires_ms: int


class HostSessions:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        signer: TokenSigner,
        clock: Clock,
        lifetime_days: float,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._clock = clock
        self._lifetime_ms = int(lifetime_days * DAY_MS)

    async def start(self, session: AsyncSession, host_id: str, *, label: str) -> NewSession:
        """A new session for the host, added to ``session`` (the caller commits)."""
        now = self._clock.now_ms()
        row = HostSession(
            id=new_id("ses"),
            host_id=host_id,
            label=label[:200] or "unknown device",
            created_ms=now,
            last_used_ms=now,
            expires_ms=now + self._lifetime_ms,
            revoked_ms=None,
        )
        session.add(row)
        return NewSession(row.id, self._signer.session_token(row.id, host_id), row.expires_ms)

    async def check(self, who: HostIdentity) -> None:
        """Raise ``InvalidToken`` unless the session the token names still stands; slide its expiry."""
        now = self._clock.now_ms()
        async with self._sessions() as session:
            row = await session.get(HostSession, who.session_id)
            if row is None or row.host_id != who.host_id:
                raise InvalidToken("This session is not valid; sign in again.")
            if row.revoked_ms is not None:
                raise InvalidToken("This session was signed out; sign in again.", code="token_expired")
            if row.expires_ms <= now:
                raise InvalidToken("This session has expired; sign in again.", code="token_expired")
            if now - row.last_used_ms >= SLIDE_EVERY_MS:
                await session.execute(
                    update(HostSession)
                    .where(HostSession.id == row.id, HostSession.revoked_ms.is_(None))
                    .values(last_used_ms=now, expires_ms=now + self._lifetime_ms)
                )
                await session.commit()

    async def list(self, host_id: str) -> list[HostSession]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(HostSession)
                .where(HostSession.host_id == host_id)
                .order_by(HostSession.created_ms.desc(), HostSession.id.desc())
            )
            return list(rows.scalars())

    async def revoke(self, host_id: str, session_id: str | None = None) -> int:
        """Revoke one session of the host (``session_id``), or all of them; returns how many were live."""
        now = self._clock.now_ms()
        stmt = update(HostSession).where(HostSession.host_id == host_id, HostSession.revoked_ms.is_(None))
        if session_id is not None:
            stmt = stmt.where(HostSession.id == session_id)
        async with self._sessions() as session, session.begin():
            result = await session.execute(stmt.values(revoked_ms=now))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def session_json(self, row: HostSession, *, current: str | None) -> dict[str, Any]:
        now = self._clock.now_ms()
        return {
            "id": row.id,
            "label": row.label,
            "created_at": iso(row.created_ms),
            "last_used_at": iso(row.last_used_ms),
            "expires_at": iso(row.expires_ms),
            "revoked_at": iso(row.revoked_ms),
            "active": row.revoked_ms is None and row.expires_ms > now,
            "current": row.id == current,
        }


class StreamKeys:
    """The host's OBS/WHIP stream key: made or replaced on request (shown once), checked by its hash."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def rotate(self, host_id: str) -> str:
        """A new key for the host; the old one stops working at once."""
        key = new_stream_key()
        async with self._sessions() as session, session.begin():
            row = await session.get(StreamKey, host_id, with_for_update=True)
            if row is None:
                session.add(
                    StreamKey(host_id=host_id, key_hash=stream_key_hash(key), created_ms=self._clock.now_ms())
                )
            else:
                row.key_hash = stream_key_hash(key)
                row.created_ms = self._clock.now_ms()
        return key

    async def host_of(self, key: str) -> HostIdentity:
        async with self._sessions() as session:
            row = (
                await session.execute(select(StreamKey).where(StreamKey.key_hash == stream_key_hash(key)))
            ).scalar_one_or_none()
        if row is None:
            raise InvalidToken("This stream key is not valid (it may have been replaced).")
        return HostIdentity(row.host_id)
