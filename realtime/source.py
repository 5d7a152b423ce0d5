"""What realtime needs to know from the domain, as protocols the domain implements (``shop.room_source``,
``shop.inventory.store.Inventory``): realtime imports no domain package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class RoomSource(Protocol):
    async def room_host(self, room_id: str) -> str | None:
        """The id of the room's host; ``None`` when there is no such room (a room never changes hands)."""
        ...

    async def snapshot_parts(
        self, room_id: str, published_stock: Mapping[str, int]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The room and its cards as viewers see them (JSON objects), for a snapshot. A card in
        ``published_stock`` shows that stock (the value viewers were last told; a newer one is on its way
        as a ``stock`` event), any other card its live stock."""
        ...

    async def host_name(self, room_id: str) -> str:
        """The name of the room's host, which their chat lines go out under."""
        ...

    async def viewer_name(self, viewer_id: str) -> str:
        """The name a viewer's chat messages go out under."""
        ...


class StockSource(Protocol):
    async def stock_of(self, card_ids: list[str]) -> dict[str, tuple[int, str] | None]:
        """Per card, its sale's stock left and room, or ``None`` when it has no sale (yet, or any more)."""
        ...
