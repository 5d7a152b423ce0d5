"""A host's own rooms: one of them by id (``owned_room``, the check every host endpoint on a room makes), or
all of them, newest first, a page at a time (``GET /api/rooms``). Takes a session, never commits.

Pages are keyed, not numbered: the next page is what comes after the last room of this one in the order
(``created_ms`` descending, then ``id`` descending for rooms made in the same millisecond), so a room
created while the host pages through shows up on the first page and never shifts the others.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.guards import require_room_owner
from identity.tokens import HostIdentity
from live.errors import UnknownRoom
from live.models import Room


async def owned_room(
    session: AsyncSession, host: HostIdentity, room_id: str, *, for_update: bool = False
) -> Room:
    """The host's room ``room_id``: 404 when there is none, 403 when it is another host's."""
    room = await session.get(Room, room_id, with_for_update=for_update)
    if room is None:
        raise UnknownRoom("No such room.")
    require_room_owner(host, room.host_id)
    return room


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


async def next_show(session: AsyncSession, host_id: str) -> Room | None:
    """The show a host's leader link leads to: the live one (the latest to start), else the scheduled one
    due first (one whose time has passed but that has not gone live yet comes before later ones; one with
    no time comes last), else ``None``."""
    live = await session.execute(
        select(Room)
        .where(Room.host_id == host_id, Room.status == "live")
        .order_by(Room.started_ms.desc(), Room.id.desc())
        .limit(1)
    )
    room = live.scalar_one_or_none()
    if room is not None:
        return room
    scheduled = await session.execute(
        select(Room)
        .where(Room.host_id == host_id, Room.status == "scheduled")
        .order_by(Room.scheduled_ms.is_(None), Room.scheduled_ms, Room.created_ms.desc(), Room.id)
        .limit(1)
    )
    return scheduled.scalar_one_or_none()
