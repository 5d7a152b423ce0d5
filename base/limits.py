"""Rate limits whose counters live in Redis, so a limit holds across every worker and machine of a
deployment (SPEC §13). The ``limits`` library does the counting (a sliding window of two fixed-window
counters, one Lua call per hit); this module names the limits, reads each one's rate from the settings
(``LIVECART_LIMIT_<NAME>``, ``"N/period"``), multiplies every N by ``LIVECART_LIMITS_SCALE``, and turns a
refusal into ``RateLimited`` (429 ``rate_limited`` with ``Retry-After``).

A limit is never switched off: a load test raises ``LIVECART_LIMITS_SCALE`` instead.

The two order limits are read here (``rate_of``) but counted by the buy itself: ``reserve.lua`` checks them
in the card's own Redis call (per buyer and per address, on that card), because one more round trip per buy
cost the buy path a quarter of its throughput (``docs/benchmarks.md``).
"""

from __future__ import annotations

import math
import time
from enum import StrEnum

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from base.errors import RateLimited
from base.settings import Settings

KEY_PREFIX = "livecart:limits"


class Limit(StrEnum):
    """Every rate limit of the house; the value names its setting (``limit_<value>``)."""

    SIGNUP_PER_IP = "signup_per_ip"
    SIGN_IN_CODE_PER_PHONE = "sign_in_code_per_phone"
    SIGN_IN_CODE_PER_IP = "sign_in_code_per_ip"
    SIGN_IN_PER_IP = "sign_in_per_ip"
    JOIN_PER_IP = "join_per_ip"
    JOIN_PER_CUSTOMER = "join_per_customer"
    ORDERS_PER_IP = "orders_per_ip"
    ORDERS_PER_CUSTOMER = "orders_per_customer"
    CHAT_PER_CUSTOMER = "chat_per_customer"
    CHAT_PER_IP = "chat_per_ip"
    REPORTS_PER_HOST = "reports_per_host"
    SETTLEMENT_PER_HOST = "settlement_per_host"
    ME_PER_CUSTOMER = "me_per_customer"
    LEADER_LINK_PER_IP = "leader_link_per_ip"
    AFTER_SALE_PER_CUSTOMER = "after_sale_per_customer"
    CHECKOUT_PER_CUSTOMER = "checkout_per_customer"
    NOTIFY_PER_IP = "notify_per_ip"
    HLS_PER_IP = "hls_per_ip"
    REPLAY_PER_CUSTOMER = "replay_per_customer"
    REPLAY_PER_HOST = "replay_per_host"


#: Limits counted in each process's memory instead of Redis: HLS files are fetched about once a second by
#: every player, a Redis round trip each would cost more than serving a segment from memory, and video must
#: not depend on Redis. With ``livecart serve --workers N`` an address may make up to N times as many.
LOCAL = frozenset({Limit.HLS_PER_IP})


def rate_of(settings: Settings, limit: Limit) -> RateLimitItem:
    """The limit's rate from the settings, its amount scaled (never below 1)."""
    item = parse(getattr(settings, f"limit_{limit.value}"))
    amount = max(1, math.floor(item.amount * settings.limits_scale))
    return type(item)(amount, item.multiples, namespace=limit.value.upper())


def check_rates(settings: Settings) -> None:
    """Raise ``ValueError`` naming the setting whose rate does not parse (at start, not on first use)."""
    for limit in Limit:
        try:
            rate_of(settings, limit)
        except ValueError as exc:
            raise ValueError(f"LIVECART_LIMIT_{limit.value.upper()}: {exc}") from exc


class RateLimits:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # passed to redis-py
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._rates = {limit: rate_of(settings, limit) for limit in Limit}

    async def hit(self, limit: Limit, key: str, *, what: str = "requests") -> None:
        """Count one request against ``limit`` for ``key`` (an IP, a phone, a customer), or raise
        ``RateLimited`` when the limit is reached (the refused request is not counted)."""
        rate = self._rates[limit]
        limiter = self._local if limit in LOCAL else self._limiter
        if await limiter.hit(rate, key):
            return
        stats = await limiter.get_window_stats(rate, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"Too many {what}; try again in {retry_after} s.",
            retry_after=retry_after,
        )

    async def hit_all(self, *checks: tuple[Limit, str], what: str = "requests") -> None:
        for limit, key in checks:
            await self.hit(limit, key, what=what)
