"""A host's own rooms, newest first, a page at a time (``GET /api/rooms``). Takes a session, never commits.

Pages are keyed, not numbered: the next page is what comes after the last room of this one in the order
(``created_ms`` descending, then ``id`` descending for rooms made in the same millisecond), so a room
created while the host pages through shows up on the first page and never shifts the others.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from live.models import Room


async def page(
    session: AsyncSession, host_id: str, *, limit: int, status: str | None = None, after: Room | None = None
) -> list[Room]:
    """Up to ``limit`` of the host's rooms (only those in ``status`` when given), newest first; with
    ``after`` (one of the host's rooms), those that come after it."""
    query = select(Room).where(Room.host_id == host_id)
    if status is not None:
        query = query.where(Room.status == status)
    if after is not None:
        query = query.where(
            or_(
                Room.created_ms < after.created_ms,
                and_(Room.created_ms == after.created_ms, Room.id < after.id),
            )
        )
    query = query.order_by(Room.created_ms.desc(), Room.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())
