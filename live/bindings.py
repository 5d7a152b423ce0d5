"""Who brought a customer to a host (SPEC §9): codes that bring people, and the binding they make.

A *bringer* is what a join's code names: a viewer's share code in this room (v1: that viewer becomes the
new viewer's referrer in the room) or a leader's code, good in every room of the leader's host. Either one
names a promoter customer (a guest viewer names none). The first bringer that brings a customer to a host
binds the customer to that promoter, for ``binding_days`` (0: for ever); while a binding lasts, no code
moves it. Functions take a session and never commit: the join's transaction owns them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from base.db import insert_ignoring_conflicts
from base.ids import new_id
from live.models import Binding, Leader, Viewer

DAY_MS = 24 * 3600 * 1000


def lasts(bound_ms: int, *, at_ms: int, days: float) -> bool:
    """Whether a binding made at ``bound_ms`` is still in force at ``at_ms`` (``days`` 0: for ever)."""
    return bound_ms <= at_ms and (days == 0 or at_ms < bound_ms + int(days * DAY_MS))


@dataclass(frozen=True, slots=True)
class Bringer:
    """Whom a join's code names. ``viewer``: the share code's owner in this room (v1 attribution);
    ``promoter_id``: the customer the code binds to (``None``: a guest viewer's code, which binds nobody);
    ``binds``: false for a suspended leader's code or share code (it admits, it binds nobody)."""

    viewer: Viewer | None
    promoter_id: str | None
    binds: bool


async def bringer(session: AsyncSession, room_id: str, host_id: str, code: str) -> Bringer | None:
    """The share code of a viewer of this room, or the code of a leader of this room's host."""
    viewer = (await session.execute(select(Viewer).where(Viewer.share_code == code))).scalar_one_or_none()
    if viewer is not None:
        if viewer.room_id != room_id:
            return None
        binds = True
        if viewer.customer_id is not None:  # a suspended leader binds nobody, by any link of theirs
            suspended = await session.execute(
                select(Leader.suspended).where(
                    Leader.host_id == host_id, Leader.customer_id == viewer.customer_id
                )
            )
            binds = not suspended.scalar_one_or_none()
        return Bringer(viewer=viewer, promoter_id=viewer.customer_id, binds=binds)
    leader = (await session.execute(select(Leader).where(Leader.code == code))).scalar_one_or_none()
    if leader is None or leader.host_id != host_id:
        return None
    return Bringer(viewer=None, promoter_id=leader.customer_id, binds=not leader.suspended)


async def latest(session: AsyncSession, host_id: str, customer_id: str) -> Binding | None:
    found = await session.execute(
        select(Binding)
        .where(Binding.host_id == host_id, Binding.customer_id == customer_id)
        .order_by(Binding.seq.desc())
        .limit(1)
    )
    return found.scalar_one_or_none()


async def in_force(
    session: AsyncSession, host_id: str, customer_id: str, *, at_ms: int, days: float
) -> Binding | None:
    """The binding that was in force at ``at_ms`` (the last one made by then, if it still lasted)."""
    found = await session.execute(
        select(Binding)
        .where(Binding.host_id == host_id, Binding.customer_id == customer_id, Binding.bound_ms <= at_ms)
        .order_by(Binding.seq.desc())
        .limit(1)
    )
    binding = found.scalar_one_or_none()
    if binding is None or not lasts(binding.bound_ms, at_ms=at_ms, days=days):
        return None
    return binding


async def bind(
    session: AsyncSession,
    *,
    host_id: str,
    customer_id: str,
    promoter_id: str,
    room_id: str | None,
    now_ms: int,
    days: float,
) -> Binding | None:
    """Bind the customer to the promoter unless a binding is in force (which stays as it is); returns the
    binding in force afterwards. Never oneself. Two concurrent first binds make one: both want the next
    ``seq``, the unique index takes one, and the other reads it back."""
    current = await latest(session, host_id, customer_id)
    if current is not None and lasts(current.bound_ms, at_ms=now_ms, days=days):
        return current
    if promoter_id == customer_id:
        return None
    seq = current.seq + 1 if current is not None else 1
    await session.execute(  # a concurrent join that bound them first wins the seq: theirs stands
        insert_ignoring_conflicts(session, Binding).values(
            id=new_id("bd"),
            host_id=host_id,
            customer_id=customer_id,
            seq=seq,
            promoter_id=promoter_id,
            room_id=room_id,
            bound_ms=now_ms,
        )
    )
    return await latest(session, host_id, customer_id)
