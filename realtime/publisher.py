"""The realtime half that the domain packages talk to: ``base.events.Events`` on the room streams.

Card, room and viewer events join the room's sequence; stock changes are coalesced per room
(``realtime.stock``); an order goes to its buyer's sockets alone. Every method is a notice: a failure to
publish is logged, never raised into the change that caused it (viewers catch up from their next snapshot).
"""

from __future__ import annotations

import logging
from typing import Any

from base.clock import Clock
from realtime.broker import Broker
from realtime.stock import StockPublisher

log = logging.getLogger("livecart.realtime.publisher")


class Publisher:
    def __init__(self, broker: Broker, stock: StockPublisher, clock: Clock) -> None:
        self.broker = broker
        self.stock = stock
        self.clock = clock

    def stock_changed(self, card_id: str) -> None:
        self.stock.changed(card_id)

    async def card_changed(self, room_id: str, card: dict[str, Any]) -> None:
        await self._publish(room_id, "card", {"card": card})

    async def room_changed(self, room_id: str, room: dict[str, Any]) -> None:
        await self._publish(room_id, "room", {"room": room})

    async def order_changed(self, order: dict[str, Any]) -> None:
        """To the buyer's own sockets only (not part of the room's sequence); queued, not awaited."""
        self.broker.send_personal(order["room_id"], order["buyer_id"], "order", {"order": order})

    async def _publish(self, room_id: str, kind: str, body: dict[str, Any]) -> None:
        try:
            await self.broker.publish(room_id, kind, body, now_ms=self.clock.now_ms())
        except Exception as exc:  # the change is made; viewers catch up from the next snapshot
            log.warning("room %s: could not publish a %s event: %s", room_id, kind, exc)
