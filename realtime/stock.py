"""Live stock counters: a card's changed stock goes to its room at most every ``interval``, latest value wins.

Coalescing is per room, not per viewer, and shared by every process: the gate (``publish.lua``, the room's
``gate`` hash) lets one ``stock`` event per card through per ``interval`` whichever process publishes it, and
drops a value equal to the last one published. So every viewer gets at most ``1 / interval`` stock frames
per second per card, and always the final value:

- a change is published ``tick`` after it is marked (the changes within a tick go out as one read);
- a value the gate held back is published again the moment the gate says it opens, with whatever the stock
  is then, so the last change of a sale reaches viewers within ``interval`` (plus a tick) of being made;
- a card whose publishing failed (Redis down) stays marked and is tried again ``retry`` later.

The value is read from the domain (``StockSource``) when published, not taken from the change, so a late
publish never sends a stale value.

Sold out. When a stock of 0 passes the gate (once per change, whichever process publishes it), the optional
``on_sold_out(card_id, room_id, at_ms)`` is told (the replay's timeline records it), in a task of its own:
publishing never waits on it, and its failure is logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from base.clock import Clock
from realtime.broker import Broker, Later
from realtime.source import StockSource

log = logging.getLogger("livecart.realtime.stock")

#: The gates of the stock counters are named this and the card id (a snapshot reads what they let through).
GATE_PREFIX = "stock:"

#: ``(card_id, room_id, at_ms)``: a stock of 0 was published for the card at ``at_ms``.
SoldOutHook = Callable[[str, str, int], Awaitable[None]]


class StockPublisher:
    def __init__(
        self,
        source: StockSource,
        broker: Broker,
        clock: Clock,
        *,
        interval: float = 0.1,
        tick: float = 0.01,
        retry: float = 1.0,
        on_sold_out: SoldOutHook | None = None,
    ) -> None:
        self.source, self.broker, self.clock = source, broker, clock
        self.interval, self.tick, self.retry = interval, tick, retry
        self.on_sold_out = on_sold_out
        self._told: set[asyncio.Task[None]] = set()  # on_sold_out calls still running
        self._dirty: set[str] = set()  # card ids whose stock changed and is not published yet
        self._not_before: dict[str, int] = {}  # card id -> when its gate opens (ms), as the gate said
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def changed(self, card_id: str) -> None:
        """The card's stock changed (called from the buy path: no I/O here)."""
        self._dirty.add(card_id)
        self._changed.set()

    @property
    def marked(self) -> frozenset[str]:
        """The cards changed and not published yet."""
        return frozenset(self._dirty)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stock")

    async def stop(self) -> None:
        if self._task is not None:
            while not self._task.done():  # (asked again should a cancellation ever be lost)
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.2)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._told:  # what sold out before the stop is still recorded
            await asyncio.wait(self._told, timeout=5)

    async def _run(self) -> None:
        wait: float | None = None  # until the next held-back card is due (None: until a change)
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as
            # the event is set, and the publisher then outlived its stop() (a test hung on it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            if self._changed.is_set():
                self._changed.clear()
                await asyncio.sleep(self.tick)
            try:
                await self.publish_due()
            except Exception as exc:  # Redis down: the cards stay marked
                log.warning("publishing stock failed: %s", exc)
                wait = self.retry
                continue
            wait = self._next_due()

    async def publish_due(self) -> None:
        """Publish every marked card whose gate is open; a card the gate holds back stays marked."""
        now = self.clock.now_ms()
        due = [card for card in self._dirty if self._not_before.get(card, 0) <= now]
        if not due:
            return
        stock = await self.source.stock_of(due)
        self._dirty.difference_update(due)  # a change from here on marks the card again
        for n, card_id in enumerate(due):
            sale = stock.get(card_id)
            if sale is None:  # no sale (yet, or any more): nothing to show
                self._not_before.pop(card_id, None)
                continue
            left, room_id = sale
            try:
                outcome = await self.broker.publish(
                    room_id,
                    "stock",
                    {"card_id": card_id, "stock_left": left, "ts": now},
                    now_ms=now,
                    gate=GATE_PREFIX + card_id,
                    min_interval_ms=round(self.interval * 1000),
                    value=str(left),
                )
            except BaseException:
                self._dirty.update(due[n:])  # not published: try them again
                raise
            if isinstance(outcome, Later):
                self._dirty.add(card_id)
                self._not_before[card_id] = now + outcome.wait_ms
            else:
                self._not_before.pop(card_id, None)
                if left == 0 and isinstance(outcome, int):  # published (not "same": told already)
                    self._tell_sold_out(card_id, room_id, now)

    def _tell_sold_out(self, card_id: str, room_id: str, at_ms: int) -> None:
        if self.on_sold_out is None:
            return
        task = asyncio.create_task(self._sold_out(self.on_sold_out, card_id, room_id, at_ms))
        self._told.add(task)
        task.add_done_callback(self._told.discard)

    @staticmethod
    async def _sold_out(hook: SoldOutHook, card_id: str, room_id: str, at_ms: int) -> None:
        try:
            await hook(card_id, room_id, at_ms)
        except Exception as exc:
            log.warning("card %s: the sold-out hook failed: %s", card_id, exc)

    def _next_due(self) -> float | None:
        if not self._dirty:
            return None
        due = min(self._not_before.get(card, 0) for card in self._dirty)
        return max(0.0, (due - self.clock.now_ms()) / 1000)
