"""Redis adapter for sale inventory: runs the Lua scripts in ``lua/`` and nothing else. What a buy does is
its sale type's decision (``sale_types.py``: its script, its ARGV, how its reply reads); the records the
scripts keep are parsed once, here, into ``records.py``'s types.

Every key a script touches is passed in ``KEYS`` and carries the card's hash tag (``{card:ID}``), so each
sale lives in one Redis Cluster slot. The card index (``livecart:cards:active``) is only used by plain
commands, never inside a script.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from base.events import NO_EVENTS, Events
from shop.inventory.records import Reservation, ReserveResult
from shop.inventory.rules import OrderRates, key
from shop.inventory.sale_types import FLASH_SALE, SALE_TYPES, SaleType

ACTIVE_CARDS = "livecart:cards:active"
SENTINEL = "livecart:sentinel"
#: The scripts every sale type shares (each type's reserve script comes from ``SALE_TYPES``).
SCRIPTS = ("release", "rereserve", "refund", "configure", "add_stock", "fence", "load")
SUFFIXES = ("sale", "orders", "expiry", "pending", "buyers", "idem", "refunding")


@functools.lru_cache(maxsize=4096)
def card_keys(card_id: str) -> tuple[str, ...]:
    """The seven keys of one sale, in the order every script names them."""
    tag = key(card_id)
    return tuple(f"{tag}:{suffix}" for suffix in SUFFIXES)


def rate_keys(card_id: str, buyer: str, address: str) -> tuple[str, str]:
    """The two keys of the buy's rate gate on one card (in the card's hash slot): the buyer's attempts and
    the client address's."""
    tag = key(card_id)
    return f"{tag}:rate:b:{buyer}", f"{tag}:rate:ip:{address}"


#: Script outcomes after which a card's stock_left may differ (a reserve script's ``ok`` took units).
_CHANGES_STOCK: dict[str, frozenset[str] | None] = {  # None: any outcome
    **{sale.script: frozenset({"ok"}) for sale in SALE_TYPES.values()},
    "release": frozenset({"released"}),
    "rereserve": frozenset({"paid"}),
    "refund": frozenset({"refunded"}),
    "add_stock": frozenset({"ok"}),
    "load": None,
}
_NEVER: frozenset[str] = frozenset()


def script_source(name: str) -> str:
    return resources.files("shop.inventory").joinpath(f"lua/{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class Stale:
    """Entries of one sale whose fate SQL decides."""

    #: reservations past their expiry
    expired: list[str]
    #: reservations whose SQL commit is unconfirmed for longer than the grace
    pending: set[str]
    #: paid orders whose refund began longer than the grace ago and was never applied to Redis
    refunding: list[str]


@dataclass(frozen=True, slots=True)
class SaleState:
    status: str
    room_id: str
    closes_ms: int | None
    stock_total: int
    stock_left: int
    per_user_limit: int
    price: int
    reserve_ms: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    stock_left_before: int | None
    stock_left_after: int
    kept_in_flight: int
    dropped_orphans: int
    unclamped_left: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Inventory:
    """The stock of every card's sale, in Redis. All methods are single atomic script calls."""

    def __init__(self, redis: Redis, *, events: Events = NO_EVENTS) -> None:
        self.redis = redis
        #: told the card id whenever a script may have changed its stock (the realtime stock counters)
        self.events = events
        names = (*SCRIPTS, *(sale.script for sale in SALE_TYPES.values()))
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in names
        }

    async def _run(
        self, name: str, card_id: str, *args: str | int, keys: tuple[str, ...] | None = None
    ) -> list[str]:
        raw = await self._scripts[name](keys=keys or card_keys(card_id), args=args)
        result = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]  # _text, inline: the buy path
        outcomes = _CHANGES_STOCK.get(name, _NEVER)
        if outcomes is None or result[0] in outcomes:
            self.events.stock_changed(card_id)
        return result

    async def create_sale(
        self,
        card_id: str,
        *,
        room_id: str,
        stock_total: int,
        per_user_limit: int,
        price: int,
        reserve_ms: int,
        now_ms: int,
    ) -> None:
        """Start a fresh sale (a new card: nothing sold, status pinned)."""
        await self.load(
            card_id,
            sale={
                "status": "pinned",
                "room_id": room_id,
                "closes_at": 0,
                "stock_total": stock_total,
                "per_user_limit": per_user_limit,
                "price": price,
                "reserve_ms": reserve_ms,
            },
            live_orders=[],
            idempotency=[],
            written_off=0,
            now_ms=now_ms,
            grace_ms=0,
        )
        await self.redis.sadd(ACTIVE_CARDS, card_id)

    async def reserve(
        self,
        card_id: str,
        *,
        sale: SaleType = FLASH_SALE,
        buyer_id: str,
        room_id: str,
        idempotency_key: str,
        quantity: int,
        order_id: str,
        referrer_id: str | None,
        now_ms: int,
        rates: OrderRates,
        buyer_key: str | None = None,
        address: str = "",
    ) -> ReserveResult:
        """One buy, as the card's sale type decides it (its script, its ARGV, its reply), through the rate
        gate of ``buyer_key`` (the customer; default the buyer) and the client ``address``."""
        args = sale.reserve_args(
            buyer_id=buyer_id,
            room_id=room_id,
            idempotency_key=idempotency_key,
            quantity=quantity,
            order_id=order_id,
            referrer_id=referrer_id,
            now_ms=now_ms,
            rates=rates,
        )
        keys = card_keys(card_id) + rate_keys(card_id, buyer_key or buyer_id, address)
        return sale.result(await self._run(sale.script, card_id, *args, keys=keys))

    async def release(self, card_id: str, order_id: str, *, mode: str, now_ms: int, grace_ms: int = 0) -> str:
        """Return a reservation's units: ``released``, ``gone``, ``not_reserved`` or ``busy`` (a recent
        orphan)."""
        return (await self._run("release", card_id, order_id, mode, now_ms, grace_ms))[0]

    async def rereserve(
        self,
        card_id: str,
        *,
        order_id: str,
        buyer_id: str,
        quantity: int,
        unit_price: int,
        idempotency_key: str,
        referrer_id: str | None,
        now_ms: int,
    ) -> str:
        """Hold an order's units as paid: confirms its reservation if Redis still has it, else takes the units
        again if stock and the buyer's limit allow. ``paid``, ``already_paid``, ``no_sale``,
        ``limit_exceeded`` or ``sold_out``."""
        r = await self._run(
            "rereserve",
            card_id,
            order_id,
            buyer_id,
            quantity,
            unit_price,
            idempotency_key,
            now_ms,
            referrer_id or "",
        )
        return r[0]

    async def begin_refund(self, card_id: str, order_id: str, *, now_ms: int) -> None:
        """Note a refund about to be committed in SQL, so that if Redis never hears how it ended (a crash,
        a timeout) the sweeper settles it from SQL; the card is swept again until then."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(card_keys(card_id)[6], {order_id: now_ms})
            pipe.sadd(ACTIVE_CARDS, card_id)
            await pipe.execute()

    async def abandon_refund(self, card_id: str, order_id: str) -> None:
        """The refund was not committed (the order was not paid after all): forget the note."""
        await self.redis.zrem(card_keys(card_id)[6], order_id)

    async def refund(self, card_id: str, order_id: str, *, restock: bool) -> str:
        """Apply a committed refund: ``refunded``, ``gone`` or ``not_paid`` (idempotent); clears the note."""
        return (await self._run("refund", card_id, order_id, 1 if restock else 0))[0]

    async def configure(self, card_id: str, **fields: int | str) -> bool:
        args: list[str | int] = []
        for name, value in fields.items():
            args += [name, value]
        result = await self._run("configure", card_id, *args, keys=card_keys(card_id)[:1])
        if result[0] != "ok":
            return False
        await self.redis.sadd(ACTIVE_CARDS, card_id)  # a reopened sale is swept again
        return True

    async def add_stock(self, card_id: str, units: int) -> tuple[int, int] | None:
        r = await self._run("add_stock", card_id, units, keys=card_keys(card_id)[:1])
        if r[0] != "ok":
            return None
        return int(r[1]), int(r[2])

    async def fence(self, card_id: str, *, until_ms: int) -> None:
        await self._run("fence", card_id, until_ms, keys=card_keys(card_id)[:1])

    async def load(
        self,
        card_id: str,
        *,
        sale: dict[str, object],
        live_orders: list[dict[str, object]],
        idempotency: list[tuple[str, str]],
        written_off: int,
        now_ms: int,
        grace_ms: int,
    ) -> LoadResult:
        r = await self._run(
            "load",
            card_id,
            now_ms,
            grace_ms,
            json.dumps(sale),
            json.dumps(live_orders) if live_orders else "[]",
            json.dumps([list(p) for p in idempotency]) if idempotency else "[]",
            written_off,
        )
        return LoadResult(
            stock_left_before=int(r[0]) if r[0] else None,
            stock_left_after=int(r[1]),
            kept_in_flight=int(r[2]),
            dropped_orphans=int(r[3]),
            unclamped_left=int(r[4]),
        )

    async def sale(self, card_id: str) -> SaleState | None:
        raw = await self.redis.hgetall(card_keys(card_id)[0])
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        closes = int(f.get("closes_at", "0"))
        return SaleState(
            status=f["status"],
            room_id=f["room_id"],
            closes_ms=closes or None,
            stock_total=int(f["stock_total"]),
            stock_left=int(f["stock_left"]),
            per_user_limit=int(f["per_user_limit"]),
            price=int(f["price"]),
            reserve_ms=int(f["reserve_ms"]),
        )

    async def stock_left_many(self, card_ids: list[str]) -> dict[str, int | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for card_id in card_ids:
                pipe.hget(card_keys(card_id)[0], "stock_left")
            values = await pipe.execute()
        return {c: (int(v) if v is not None else None) for c, v in zip(card_ids, values, strict=True)}

    async def stock_of(self, card_ids: list[str]) -> dict[str, tuple[int, str] | None]:
        """Per card, its sale's stock left and room, ``None`` without a sale (``realtime``'s ``StockSource``:
        the live stock counters read the value when they publish it)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for card_id in card_ids:
                pipe.hmget(card_keys(card_id)[0], "stock_left", "room_id")
            values = await pipe.execute()
        return {
            card_id: (int(left), _text(room)) if left is not None and room is not None else None
            for card_id, (left, room) in zip(card_ids, values, strict=True)
        }

    async def reservations(self, card_id: str) -> dict[str, Reservation]:
        raw = await self.redis.hgetall(card_keys(card_id)[1])
        return {_text(k): Reservation.parse(_text(k), _text(v)) for k, v in raw.items()}

    async def reservation(self, card_id: str, order_id: str) -> Reservation | None:
        raw = await self.redis.hget(card_keys(card_id)[1], order_id)
        return Reservation.parse(order_id, _text(raw)) if raw is not None else None

    async def stale(self, card_id: str, *, now_ms: int, grace_ms: int, limit: int = 500) -> Stale:
        """What the sweeper must check against SQL for one card."""
        keys = card_keys(card_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys[2], "-inf", now_ms, start=0, num=limit)
            pipe.zrangebyscore(keys[3], "-inf", now_ms - grace_ms, start=0, num=limit)
            pipe.zrangebyscore(keys[6], "-inf", now_ms - grace_ms, start=0, num=limit)
            expired, pending, refunding = await pipe.execute()
        return Stale(
            expired=[_text(v) for v in expired],
            pending={_text(v) for v in pending},
            refunding=[_text(v) for v in refunding],
        )

    async def mark_committed(self, pairs: list[tuple[str, str]]) -> None:
        """Forget the pending marks of orders whose SQL rows are committed: ``(card_id, order_id)`` pairs."""
        by_card: dict[str, list[str]] = {}
        for card_id, order_id in pairs:
            by_card.setdefault(card_id, []).append(order_id)
        if not by_card:
            return
        if len(by_card) == 1:  # the usual case, a flash sale: one command
            ((card_id, ids),) = by_card.items()
            await self.redis.zrem(card_keys(card_id)[3], *ids)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for card_id, ids in by_card.items():
                pipe.zrem(card_keys(card_id)[3], *ids)
            await pipe.execute()

    async def active_cards(self) -> list[str]:
        return sorted(_text(v) for v in await self.redis.smembers(ACTIVE_CARDS))

    async def retire_if_settled(self, card_id: str) -> bool:
        """Stop sweeping a closed sale that holds no reservation (paid records stay for refunds)."""
        keys = card_keys(card_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys[0], "status")
            pipe.zcard(keys[2])
            pipe.zcard(keys[3])
            pipe.zcard(keys[6])
            status, expiring, pending, refunding = await pipe.execute()
        if status is None or _text(status) != "closed" or expiring or pending or refunding:
            return False
        await self.redis.srem(ACTIVE_CARDS, card_id)
        return True

    async def active_reservations(self, card_ids: list[str]) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for card_id in card_ids:
                pipe.zcard(card_keys(card_id)[2])
            counts = await pipe.execute()
        return sum(int(c) for c in counts)
