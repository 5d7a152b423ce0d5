"""The dashboard's figures as the API returns them (OpenAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class CardStats(BaseModel):
    card_id: str
    product_name: str
    price: int
    stock_total: int
    stock_left: int
    reserved: int
    sold: int
    sell_through: float
    gmv: int


class PromoterStats(BaseModel):
    #: A customer id, or (a v1 guest promoter) a viewer id.
    promoter_id: str
    kind: Literal["leader", "customer", "guest"]
    leader_id: str | None
    #: The promoter's own viewer in this room, if they joined it.
    viewer_id: str | None
    name: str
    viewers: int
    orders_paid: int
    gmv: int
    commission: int


class RoomStats(BaseModel):
    viewers_now: int
    viewers_peak: int
    viewers_unique: int
    connections_now: int
    viewers_joined: int
    orders_reserved: int
    orders_paid: int
    orders_refunded: int
    buyers_paid: int
    gmv: int
    currency: str
    conversion: float
    cards: list[CardStats]
    promoters: list[PromoterStats]
