"""HTTP endpoint of ``reporting``: a room's live statistics for its host."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.clock import Clock
from base.limits import RateLimits
from base.openapi import doc
from base.settings import Settings
from identity.guards import Authenticator
from live.errors import UnknownRoom
from live.host_rooms import owned_room
from reporting.schemas import RoomStats
from reporting.stats import room_stats
from shop.models import Card

#: card ids -> the live stock of each (``None`` where Redis has no sale)
StockLeft = Callable[[list[str]], Awaitable[dict[str, int | None]]]
#: room id -> ``{"viewers_now": n, "connections_now": n}``, counted by the realtime hub across processes
Presence = Callable[[str], Awaitable[dict[str, int]]]


@dataclass(frozen=True, slots=True)
class ReportingServices:
    settings: Settings
    clock: Clock
    auth: Authenticator
    rate_limits: RateLimits
    sessions: async_sessionmaker[AsyncSession]
    stock_left: StockLeft
    presence: Presence


def services(conn: HTTPConnection) -> ReportingServices:
    return cast(ReportingServices, conn.state.reporting)


@doc(responses={200: RoomStats}, errors=[UnknownRoom], summary="Live statistics of a room, derived from SQL")
async def get_room_stats(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    async with st.sessions() as session:
        room = await owned_room(session, host, request.path_params["room"])
        card_ids = list((await session.execute(select(Card.id).where(Card.room_id == room.id))).scalars())
        stock = await st.stock_left(card_ids) if card_ids else {}
        stats = await room_stats(
            session,
            room.id,
            host_id=room.host_id,
            stock_left=stock,
            now_ms=st.clock.now_ms(),
            currency=st.settings.currency,
            binding_days=st.settings.binding_days,
        )
    stats.update(await st.presence(room.id))
    return JSONResponse(stats)


routes = [Route("/api/rooms/{room:id}/stats", get_room_stats, methods=["GET"])]
