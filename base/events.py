"""What the domain packages announce: the seam between them and whatever tells the viewers (the realtime
service implements it; a test or a tool may pass ``NO_EVENTS``).

Domain services take an ``Events`` at construction and call it after a change is committed. An
announcement is a notice, not part of the change: an implementation must not raise for a delivery that
failed (the change is made; viewers catch up from their next snapshot).
"""

from __future__ import annotations

from typing import Any, Protocol


class Events(Protocol):
    def stock_changed(self, card_id: str) -> None:
        """A card's stock moved (called on the buy path: no I/O, no waiting)."""

    async def card_changed(self, room_id: str, card: dict[str, Any]) -> None:
        """A card was pinned, opened, closed, repriced or restocked: its new state, as viewers see it."""

    async def room_changed(self, room_id: str, room: dict[str, Any]) -> None:
        """A room went live or ended: the room as its viewers see it."""

    async def order_changed(self, order: dict[str, Any]) -> None:
        """An order its buyer should see changed (placed, paid, cancelled, expired, refunded, shipped)."""


class NoEvents:
    """Announces nothing: for tools and tests that run a domain service without viewers."""

    def stock_changed(self, card_id: str) -> None:
        return None

    async def card_changed(self, room_id: str, card: dict[str, Any]) -> None:
        return None

    async def room_changed(self, room_id: str, room: dict[str, Any]) -> None:
        return None

    async def order_changed(self, order: dict[str, Any]) -> None:
        return None


NO_EVENTS: Events = NoEvents()
