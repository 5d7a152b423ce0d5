"""Products and cards: the host's catalogue and the sales pinned in rooms. SQL first, then Redis."""

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
from live.models import Room
from live.rooms import accepts_sales
from shop.errors import CardStateConflict, NothingToChange, UnknownResource
from shop.inventory.rules import CardStatus
from shop.inventory.store import Inventory
from shop.models import Card, Product
from shop.reconcile import Reconciler
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
        await self._sync(card_id, status="open", closes_at=closes or 0)
        return await self._announce(await self.view(host, card_id))

    async def close_card(self, host: HostIdentity, card_id: str) -> dict[str, Any]:
        async with self.sessions() as session, session.begin():
            await self._owned(session, host, card_id)
            await session.execute(update(Card).where(Card.id == card_id).values(status="closed"))
        await self._sync(card_id, status="closed")
        return await self._announce(await self.view(host, card_id))

    async def patch_card(self, host: HostIdentity, card_id: str, body: CardPatchIn) -> dict[str, Any]:
        rate_given = "commission_bps" in body.model_fields_set
        if body.price is None and body.add_stock is None and not rate_given:
            raise NothingToChange("Give price, add_stock and/or commission_bps.")
        async with self.sessions() as session, session.begin():
            await self._owned(session, host, card_id)
            values: dict[str, Any] = {}
            if body.price is not None:
                values["price"] = body.price
            if body.add_stock is not None:
                values["stock_total"] = Card.stock_total + body.add_stock
            if rate_given:
                values["commission_bps"] = body.commission_bps
            await session.execute(update(Card).where(Card.id == card_id).values(**values))
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
        """Ending a show closes every card in it that is still pinned or open."""
        async with self.sessions() as session, session.begin():
            ids = list(
                (
                    await session.execute(
                        update(Card)
                        .where(Card.room_id == room_id, Card.status.in_(["pinned", "open"]))
                        .values(status="closed")
                        .returning(Card.id)
                    )
                ).scalars()
            )
        for card_id in ids:
            await self._sync(card_id, status="closed")


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
