"""Request bodies and answers of a show's replay (SPEC §11, issue 14); the source of their OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from base.fields import RequestBody
from shop.schemas import CardOut

CardEvent = Literal["pinned", "opened", "price_cut", "price_raised", "sold_out", "closed"]


class TimelineEntryOut(BaseModel):
    """A moment of a card, where it falls in the replay"""

    #: Seconds into the replay (3 decimals): 0 before the recording began, its end after it ended.
    t: float
    #: When it happened (wall clock, ISO 8601).
    at: str
    card_id: str
    event: CardEvent
    #: The card's price from then on (``pinned``, ``price_cut``, ``price_raised``); ``null`` otherwise.
    price: int | None


class ReplayOut(BaseModel):
    room_id: str
    #: ``recording``: the show is on (the playlist grows; watch from the start); ``ready``: it ended.
    state: Literal["recording", "ready"]
    #: Published to the room's viewers (``false``: hidden; only its host sees it).
    visible: bool
    #: The path of the replay's playlist (``full.m3u8``) under a signed grant: no other credential needed.
    hls: str
    hls_expires_at: str
    duration_seconds: float
    #: When the recording's first frame was taken.
    started_at: str
    ended_at: str | None
    #: When it will be deleted (the shop's keeping time after the end); ``null`` while the show is on.
    delete_at: str | None
    timeline: list[TimelineEntryOut]
    #: The room's cards as they are now (status, price, stock): what can still be bought.
    cards: list[CardOut]


class ReplayPatchIn(RequestBody):
    """Publish the replay to the room's viewers (``true``) or hide it from them (``false``)"""

    visible: bool
