"""Products and cards: the host's catalogue and the sales pinned in rooms. SQL first, then Redis.

Every change a show's replay shows (a card pinned, opened, its price changed, closed) is recorded as a
moment of the card (``shop.card_timeline``) in the SQL transaction of the change itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.events import Events
from base.ids import new_id
from identity.guards import Caller, require_in_room, require_room_owner
from identity.tokens import HostIdentity
from live.host_rooms import owned_room
from live.models import Host, Room
from live.rooms import accepts_sales
from shop import card_timeline
from shop.errors import CardStateConflict, NothingToChange, UnknownResource
from shop.inventory.rules import CardStatus
from shop.inventory.store import Inventory
from shop.models import Card, Product
from shop.reconcile import Reconciler
from shop.replay_rules import CardEventKind, closes_after_end, price_event, stays_open
from shop.schemas import CardIn, CardOpenIn, CardPatchIn, ProductIn
from shop.views import card_json, product_json

log = logging.getLogger("livecart.cards")


class Catalog:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        reconciler: Reconciler,
        clock: Clock,
        events: Events,
    ) -> None:
        self.sessions = sessions
        self.inventory = inventory
        self.reconciler = reconciler
        self.clock = clock
        #: told every card's new state after a change (the realtime hub publishes it to the room)
        self.events = events

    # -- products --------------------------------------------------------------------------------------

    async def create_product(self, host: HostIdentity, body: ProductIn) -> dict[str, Any]:
        product = Product(
            id=new_id("prd"),
            host_id=host.host_id,
            name=body.name,
            price=body.price,
            description=body.description,
            image_url=body.image_url,
            shippable=body.shippable,
            created_ms=self.clock.now_ms(),
        )
        async with self.sessions() as session, session.begin():
            session.add(product)
        return product_json(product)

    async def list_products(self, host: HostIdentity) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(Product)
                .where(Product.host_id == host.host_id)
                .order_by(Product.created_ms, Product.id)
            )
            return [product_json(p) for p in rows.scalars()]

    # -- cards -----------------------------------------------------------------------------------------

    async def create_card(self, host: HostIdentity, room_id: str, body: CardIn) -> dict[str, Any]:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            room = await owned_room(session, host, room_id)
            if not accepts_sales(room.status):
                raise CardStateConflict("The show has ended.", code="room_ended")
            product = await session.get(Product, body.product_id)
            if product is None or product.host_id != host.host_id:
                raise UnknownResource("No such product among yours.", code="unknown_product")
            card = Card(
                id=new_id("crd"),
                room_id=room_id,
                product_id=product.id,
                price=body.price,
                stock_total=body.stock,
                per_user_limit=body.per_user_limit,
                reserve_seconds=body.reserve_seconds,
                commission_bps=body.commission_bps,
                status=CardStatus.PINNED.value,
                opened_ms=None,
                closes_ms=None,
                created_ms=now,
            )
            session.add(card)
            await session.flush()  # the card's row before its first moment (which refers to it)
            await card_timeline.record(
                session,
                room_id=room_id,
                card_id=card.id,
                event=CardEventKind.PINNED,
                at_ms=now,
                price=card.price,
            )
        await self.inventory.create_sale(
            card.id,
            room_id=room_id,
            stock_total=card.stock_total,
            per_user_limit=card.per_user_limit,
            price=card.price,
            reserve_ms=card.reserve_seconds * 1000,
            now_ms=now,
        )
        return await self._announce(
            card_json(
                card,
                product,
                stock_left=card.stock_total,
                stock_total=card.stock_total,
                price=card.price,
                now_ms=now,
            )
        )

    async def _owned(
        self, session: AsyncSession, host: HostIdentity, card_id: str
    ) -> tuple[Card, Room, Product]:
        row = (
            await session.execute(
                select(Card, Room, Product)
                .join(Room, Room.id == Card.room_id)
                .join(Product, Product.id == Card.product_id)
                .where(Card.id == card_id)
            )
        ).first()
        if row is None:
            raise UnknownResource("No such card.")
        card, room, product = row
        require_room_owner(host, room.host_id, what="card")
        return card, room, product

    async def open_card(self, host: HostIdentity, card_id: str, body: CardOpenIn) -> dict[str, Any]:
        now = self.clock.now_ms()
        closes = now + body.duration_seconds * 1000 if body.duration_seconds else None
        async with self.sessions() as session, session.begin():
            _, room, _ = await self._owned(session, host, card_id)
            if not accepts_sales(room.status):
                raise CardStateConflict("The show has ended.", code="room_ended")
            await session.execute(
                update(Card).where(Card.id == card_id).values(status="open", opened_ms=now, closes_ms=closes)
            )
            await card_timeline.record(
                session, room_id=room.id, card_id=card_id, event=CardEventKind.OPENED, at_ms=now
            )
        await self._sync(card_id, status="open", closes_at=closes or 0)
        return await self._announce(await self.view(host, card_id))

    async def close_card(self, host: HostIdentity, card_id: str) -> dict[str, Any]:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            _, room, _ = await self._owned(session, host, card_id)
            closed = await session.execute(
                update(Card)
                .where(Card.id == card_id, Card.status != "closed")
                .values(status="closed")
                .returning(Card.id)
            )
            if closed.first() is not None:  # (closing a closed card again is no moment of the show)
                await card_timeline.record(
                    session, room_id=room.id, card_id=card_id, event=CardEventKind.CLOSED, at_ms=now
                )
        await self._sync(card_id, status="closed")
        return await self._announce(await self.view(host, card_id))

    async def patch_card(self, host: HostIdentity, card_id: str, body: CardPatchIn) -> dict[str, Any]:
        rate_given = "commission_bps" in body.model_fields_set
        if body.price is None and body.add_stock is None and not rate_given:
            raise NothingToChange("Give price, add_stock and/or commission_bps.")
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            card, room, _ = await self._owned(session, host, card_id)
            price_before = card.price  # (read outside the write: a concurrent change may have moved it)
            values: dict[str, Any] = {}
            if body.price is not None:
                values["price"] = body.price
            if body.add_stock is not None:
                values["stock_total"] = Card.stock_total + body.add_stock
            if rate_given:
                values["commission_bps"] = body.commission_bps
            await session.execute(update(Card).where(Card.id == card_id).values(**values))
            if body.price is not None:
                # The card's row is locked from the update on: its last recorded price is the one this
                # change replaces, whatever other change committed since it was read above.
                before = await card_timeline.last_price(session, card_id)
                event = price_event(price_before if before is None else before, body.price)
                if event is not None:
                    await card_timeline.record(
                        session,
                        room_id=room.id,
                        card_id=card_id,
                        event=event,
                        at_ms=now,
                        price=body.price,
                    )
        if body.price is not None:
            await self._sync(card_id, price=body.price)
        if body.add_stock is not None and await self.inventory.add_stock(card_id, body.add_stock) is None:
            await self.reconciler.reconcile_card(card_id, trigger="missing")
        return await self._announce(await self.view(host, card_id))

    async def _announce(self, card: dict[str, Any]) -> dict[str, Any]:
        await self.events.card_changed(card["room_id"], card)
        return card

    async def room_cards(
        self, room_id: str, published: Mapping[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """Every card of a room (the snapshot viewers get), with the stock last ``published`` to viewers
        where there is one (a newer value is on its way as a ``stock`` event), else the live stock."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Card, Product)
                    .join(Product, Product.id == Card.product_id)
                    .where(Card.room_id == room_id)
                    .order_by(Card.created_ms, Card.id)
                )
            ).all()
        stock: dict[str, int | None] = dict(published or {})
        live = [c.id for c, _ in rows if c.id not in stock]
        if live:
            stock.update(await self.inventory.stock_left_many(live))
        now = self.clock.now_ms()
        return [
            card_json(
                card,
                product,
                stock_left=_or(stock.get(card.id), card.stock_total),
                stock_total=card.stock_total,
                price=card.price,
                now_ms=now,
            )
            for card, product in rows
        ]

    async def _sync(self, card_id: str, **fields: int | str) -> None:
        """Mirror a committed SQL change into the sale; a sale Redis lost is rebuilt from SQL instead."""
        if not await self.inventory.configure(card_id, **fields):
            await self.reconciler.reconcile_card(card_id, trigger="missing")

    async def view(self, who: Caller, card_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(Card, Room, Product)
                    .join(Room, Room.id == Card.room_id)
                    .join(Product, Product.id == Card.product_id)
                    .where(Card.id == card_id)
                )
            ).first()
        if row is None:
            raise UnknownResource("No such card.")
        card, room, product = row
        require_in_room(who, room.id, room.host_id, what="card")
        sale = await self.inventory.sale(card_id)
        if sale is None:
            await self.reconciler.reconcile_card(card_id, trigger="missing")
            sale = await self.inventory.sale(card_id)
            assert sale is not None
        return card_json(
            card,
            product,
            stock_left=sale.stock_left,
            stock_total=sale.stock_total,
            price=sale.price,
            now_ms=self.clock.now_ms(),
        )

    async def close_room_cards(self, room_id: str) -> None:
        """Ending a show closes every card in it that is still pinned or open; in a shop with replay sales
        (``hosts.replay_sales_hours`` N > 0) its *open* cards stay on sale for the replay's viewers until
        N hours after the end at the latest (``replay_rules.closes_after_end``)."""
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            closed = list(
                (
                    await session.execute(
                        update(Card)
                        .where(
                            Card.room_id == room_id,
                            Card.status.in_(["pinned", "open"]),
                            # The shop's replay sales, read inside the write: one statement decides.
                            ~(
                                (Card.status == "open")
                                & select(Host.replay_sales_hours > 0)
                                .join(Room, Room.host_id == Host.id)
                                .where(Room.id == room_id)
                                .scalar_subquery()
                            ),
                        )
                        .values(status="closed")
                        .returning(Card.id)
                    )
                ).scalars()
            )
            await card_timeline.record_many(
                session, room_id=room_id, card_ids=closed, event=CardEventKind.CLOSED, at_ms=now
            )
            kept = await self._keep_for_replay(session, room_id, now_ms=now)
        for card_id in closed:
            await self._sync(card_id, status="closed")
        for card_id, closes_ms in kept:
            await self._sync(card_id, closes_at=closes_ms)

    async def _keep_for_replay(
        self, session: AsyncSession, room_id: str, *, now_ms: int
    ) -> list[tuple[str, int]]:
        """The open cards a show that just ended keeps on sale, each with the end of its sale now."""
        row = (
            await session.execute(
                select(Room.ended_ms, Host.replay_sales_hours)
                .join(Host, Host.id == Room.host_id)
                .where(Room.id == room_id)
            )
        ).first()
        if row is None:
            return []
        ended_ms, hours = row
        cards = (
            await session.execute(select(Card.id, Card.status, Card.closes_ms).where(Card.room_id == room_id))
        ).all()
        kept = []
        for card_id, status, closes_ms in cards:
            if not stays_open(status, sales_hours=hours):
                continue
            closes = closes_after_end(closes_ms, ended_ms=ended_ms or now_ms, sales_hours=hours)
            if closes != closes_ms:
                await session.execute(update(Card).where(Card.id == card_id).values(closes_ms=closes))
            kept.append((card_id, closes))
        return kept


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
