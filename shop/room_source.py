"""The shop's side of ``realtime.source.RoomSource``: the rooms, cards and viewers the websocket hub shows,
read from SQL (rooms and viewers of ``live``, cards of the catalog) and the live stock in Redis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from live.models import Host, Room, Viewer
from live.views import public_room
from shop.cards import Catalog


class ShopRoomSource:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], catalog: Catalog) -> None:
        self.sessions = sessions
        self.catalog = catalog

    async def room_host(self, room_id: str) -> str | None:
        async with self.sessions() as session:
            room = await session.get(Room, room_id)
        return room.host_id if room is not None else None

    async def snapshot_parts(
        self, room_id: str, published_stock: Mapping[str, int]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with self.sessions() as session:
            room = await session.get(Room, room_id)
        assert room is not None  # the hub admitted a connection to it, and rooms are never deleted
        return public_room(room), await self.catalog.room_cards(room_id, published_stock)

    async def host_name(self, room_id: str) -> str:
        async with self.sessions() as session:
            name = (
                await session.execute(
                    select(Host.name).join(Room, Room.host_id == Host.id).where(Room.id == room_id)
                )
            ).scalar_one_or_none()
        return name or "主播"

    async def viewer_name(self, viewer_id: str) -> str:
        async with self.sessions() as session:
            viewer = await session.get(Viewer, viewer_id)
        return viewer.name if viewer is not None else "Viewer"
