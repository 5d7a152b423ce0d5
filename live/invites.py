"""Per-invitee invites in SQL, and how they look over HTTP.

The token (``live/access.py``) proves which invite and room, and until when; the row holds what changes:
how many uses are left and whether the host revoked it. Functions take a session and never commit; the
endpoint owns the transaction, so the use a join consumes and the viewer it creates commit together, or
neither does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from base.clock import iso
from identity.errors import InvalidInvite
from identity.tokens import InviteClaim, TokenSigner
from live.models import Invite


async def consume(session: AsyncSession, claim: InviteClaim, *, now_ms: int) -> int:
    """Take one use of the invite, or raise ``InvalidInvite`` saying why not. Returns the uses so far.

    One guarded ``UPDATE``: concurrent joins through the same invite queue on its row (PostgreSQL) or on
    the write lock (SQLite) and each re-checks ``uses < max_uses``, so no more than ``max_uses`` get in.
    """
    stmt = (
        update(Invite)
        .where(
            Invite.id == claim.invite_id,
            Invite.room_id == claim.room_id,
            Invite.uses < Invite.max_uses,
            ~Invite.revoked,
            Invite.expires_ms > now_ms,
        )
        .values(uses=Invite.uses + 1)
        .returning(Invite.uses)
    )
    uses = (await session.execute(stmt)).scalar_one_or_none()
    if uses is None:
        raise InvalidInvite(refusal(await session.get(Invite, claim.invite_id), claim, now_ms=now_ms))
    return int(uses)


async def check_usable(session: AsyncSession, claim: InviteClaim, *, now_ms: int) -> None:
    """For a returning viewer of the room: the invite must still stand, but no use is taken or counted."""
    invite = await session.get(Invite, claim.invite_id)
    reason = refusal(invite, claim, now_ms=now_ms, count_uses=False)
    if reason:
        raise InvalidInvite(reason)


def refusal(invite: Invite | None, claim: InviteClaim, *, now_ms: int, count_uses: bool = True) -> str:
    """Why this invite admits nobody (more), or ``""`` when it still does."""
    if invite is None or invite.room_id != claim.room_id:
        return "This invite is not valid for this room."
    if invite.revoked:
        return "This invite was revoked by the host."
    if invite.expires_ms <= now_ms:
        return "This invite has expired; ask the host for a new one."
    if count_uses and invite.uses >= invite.max_uses:
        return (
            f"This invite has been used {invite.uses} of {invite.max_uses} times; ask the host for a new one."
        )
    return ""


async def for_room(session: AsyncSession, room_id: str) -> list[Invite]:
    rows = await session.execute(
        select(Invite).where(Invite.room_id == room_id).order_by(Invite.created_ms, Invite.id)
    )
    return list(rows.scalars())


async def revoke(session: AsyncSession, room_id: str, invite_id: str) -> Invite | None:
    """Revoke (idempotently); ``None`` when the room has no such invite."""
    stmt = (
        update(Invite)
        .where(Invite.id == invite_id, Invite.room_id == room_id)
        .values(revoked=True)
        .returning(Invite)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def invite_json(invite: Invite, *, signer: TokenSigner, base_url: str) -> dict[str, Any]:
    token = signer.invite_token(invite.id, invite.room_id, expires_ms=invite.expires_ms)
    return {
        "id": invite.id,
        "room_id": invite.room_id,
        "label": invite.label,
        "token": token,
        "url": f"{base_url.rstrip('/')}/r/{invite.room_id}?invite={token}",
        "max_uses": invite.max_uses,
        "uses": invite.uses,
        "expires_at": iso(invite.expires_ms),
        "created_at": iso(invite.created_ms),
        "revoked": invite.revoked,
    }
