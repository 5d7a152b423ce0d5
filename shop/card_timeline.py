"""The moments of a room's cards that its replay shows (``card_events``).

Each is written in the SQL transaction of the change it records (``Catalog``: created, opened, price
changed, closed), so a change and its moment commit together or not at all. A sale selling out is no SQL
change: the stock counters (``realtime.stock.StockPublisher``) report it when they publish a stock of 0,
once per change across processes, and ``CardTimeline.sold_out`` records it on its own; a failure there is
logged, never raised (the sale goes on, the replay lacks one moment).

Repository functions take a session and never commit.
"""

from __future__ import annotations

import logging

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop.models import CardEvent
from shop.replay_rules import CardEventKind, CardMoment

log = logging.getLogger("livecart.card_timeline")

#: Events that carry the card's price from then on.
PRICED = frozenset({CardEventKind.PINNED, CardEventKind.PRICE_CUT, CardEventKind.PRICE_RAISED})


async def record(
    session: AsyncSession,
    *,
    room_id: str,
    card_id: str,
    event: CardEventKind,
    at_ms: int,
    price: int | None = None,
) -> None:
    await record_many(session, room_id=room_id, card_ids=[card_id], event=event, at_ms=at_ms, price=price)


async def record_many(
    session: AsyncSession,
    *,
    room_id: str,
    card_ids: list[str],
    event: CardEventKind,
    at_ms: int,
    price: int | None = None,
) -> None:
    """The same moment of several cards of one room (ending a show closes them all at once)."""
    if not card_ids:
        return
    if (price is not None) != (event in PRICED):
        raise ValueError(f"a {event} event {'carries' if event in PRICED else 'has no'} price")
    await session.execute(
        insert(CardEvent),
        [
            {"room_id": room_id, "card_id": c, "event": event.value, "at_ms": at_ms, "price": price}
            for c in card_ids
        ],
    )


async def last_price(session: AsyncSession, card_id: str) -> int | None:
    """The price the card's latest priced moment gave (``None``: it has none, a card older than replays)."""
    return await session.scalar(
        select(CardEvent.price)
        .where(CardEvent.card_id == card_id, CardEvent.event.in_([e.value for e in PRICED]))
        .order_by(CardEvent.at_ms.desc(), CardEvent.id.desc())
        .limit(1)
    )


async def moments(session: AsyncSession, room_id: str) -> list[CardMoment]:
    """Every moment of the room's cards, in the order they happened."""
    rows = await session.execute(
        select(CardEvent).where(CardEvent.room_id == room_id).order_by(CardEvent.at_ms, CardEvent.id)
    )
    return [
        CardMoment(card_id=e.card_id, event=CardEventKind(e.event), at_ms=e.at_ms, price=e.price)
        for e in rows.scalars()
    ]


class CardTimeline:
    """Records the moments that come from outside a SQL change: a sale selling out."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def sold_out(self, card_id: str, room_id: str, at_ms: int) -> None:
        """The stock counters published a stock of 0 for the card at ``at_ms`` (``realtime.stock``'s
        ``on_sold_out``). Logged, never raised: the buy path never waits on it or fails for it."""
        try:
            async with self.sessions() as session, session.begin():
                await record(
                    session, room_id=room_id, card_id=card_id, event=CardEventKind.SOLD_OUT, at_ms=at_ms
                )
        except Exception as exc:
            log.warning("card %s: could not record that it sold out: %s", card_id, exc)
