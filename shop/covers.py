"""The cover of a show for its link preview (``live.preview``): the image of the first product pinned in
the room that has one. ``live`` may not read the shop's tables, so the app wiring hands it this reader."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop.models import Card, Product


class RoomCovers:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def cover_of(self, room_id: str) -> str | None:
        stmt = (
            select(Product.image_url)
            .join(Card, Card.product_id == Product.id)
            .where(Card.room_id == room_id, Product.image_url.is_not(None))
            .order_by(Card.created_ms, Card.id)
            .limit(1)
        )
        async with self.sessions() as session:
            return (await session.execute(stmt)).scalar_one_or_none()
