"""The dashboard's figures as the API returns them (OpenAPI)."""

from __future__ import annotations

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
    viewer_id: str
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
