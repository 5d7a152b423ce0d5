"""A stateful property test of the order lifecycle against the real services (SPEC §2 invariants 1-6).

Hypothesis drives the real ``OrderService``, ``PaymentService``, ``Sweeper`` and ``Reconciler`` of an
``AppState`` built by ``livecart.app.build_state`` over the real Redis and a real SQLite file; nothing is
mocked. Time is an input: the services get a manual clock that only the rules move.

Rules: reserve (fresh or retried ``Idempotency-Key``, a retry with another quantity), start checkout,
signed payment webhooks (succeeded / failed, redelivered, delivered out of order, a captured request
replayed later, a forged one), the dev provider simulator, late payments (before or after the sweeper ran),
buyer cancel, host refund (restock or write-off), clock advances (to the exact last millisecond of a
window, just past it, past the webhook tolerance), sweeps, process restarts with and without an operator
reconcile, Redis losing its data, and crashes between the two halves of an operation (a buy that reserved
in Redis but never wrote its row, a cancel / sweep / refund that committed SQL but never touched Redis, a
payment that confirmed in Redis but never committed). A crash is a fault point in the real service: its
``Inventory`` dependency (``FaultyInventory``) raises at the chosen call, so the service's own code runs
up to there and nothing after it does. Every crash is followed by a restart.

A reference model (``Model``) predicts every outcome and the state of both stores; after every step the
real Redis and SQL are read back and checked against the model and against model-free invariants:

- conservation: ``stock_left + Σ reserved + Σ paid + Σ written off == stock_total``,
  where *reserved* / *paid* are SQL statuses and *written off* are paid orders the host refunded without
  restock (their units stay counted in ``stock_total`` but never return to sale). Two documented transient
  gaps between SQL and Redis are added explicitly, both predicted by the model: units Redis still holds
  that SQL no longer counts (an orphaned reservation within its grace period; a crash after the SQL half
  of a cancel / sweep / refund, until the sweeper or a reconcile heals it), and SQL reservations past their
  window that a reconcile already returned to the sale before the sweeper expired them in SQL;
- Redis's own accounting: ``stock_left + Σ units of its records + Σ written off not held == stock_total``;
- no oversell: ``stock_left >= 0`` and ``Σ paid + Σ written off <= stock_total`` in SQL;
- no order paid twice: exactly one ``succeeded`` payment for a paid order, none for any other; a second
  successful payment is refunded;
- commissions: the ledger sums to ``floor(rate_bps * amount / 10000)`` over paid orders with a referrer
  (other than the buyer), nets to 0 for every other order, and only orders that were ever paid accrue;
- statuses, payment statuses, ledger rows, Redis records, ``stock_left`` and every returned outcome equal
  the model's; a reconcile never reports a card oversold that SQL does not oversell;
- convergence (rule ``provider_retries_then_time_passes``): once the provider has delivered every event it
  owes and every window and grace period has passed, one sweep leaves Redis holding exactly the paid orders
  and ``stock_left == stock_total - Σ paid - Σ written off`` (SPEC §2.5: no stock leaks).

The model deliberately treats a reservation as on time up to and including its ``expires_ms`` (as
``decide_payment``, ``start_checkout`` and the sweeper's SQL pass do), and expects a payment to be settled
against the truth in SQL even when Redis lost the sale (as the buy path does: rebuild, then decide).

Sizes: ``LIVECART_HYPOTHESIS_EXAMPLES`` (default 60) examples of ``LIVECART_HYPOTHESIS_STEPS`` (default 30)
steps. Redis: ``LIVECART_TEST_REDIS_URL`` (see ``tests/conftest.py``), flushed before every example.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import note as hypothesis_note
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from base.errors import LiveCartError
from base.ids import new_id, random_code
from base.settings import Settings
from identity.tokens import HostIdentity, ViewerIdentity
from live.models import Host, Room, Viewer
from livecart.app import build_state
from livecart.state import AppState
from shop.inventory.rules import PaymentDecision, commission_amount
from shop.inventory.store import SENTINEL, Inventory, ReserveResult, card_keys
from shop.models import Commission, Order, Payment
from shop.payments import signing
from shop.payments.service import FAILED, SUCCEEDED
from shop.reconcile import CardReport
from shop.schemas import CardIn, CardOpenIn, ProductIn
from tests.conftest import REDIS_URL, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("LIVECART_HYPOTHESIS_EXAMPLES", "60"))
STEPS = int(os.environ.get("LIVECART_HYPOTHESIS_STEPS", "30"))
T = TypeVar("T")
S = TypeVar("S")

START_MS = 1_800_000_000_000  # 2027-01-15, any fixed instant: the clock is an input
GRACE_S = 3.0  # orphan grace; must exceed 2 x commit timeout (1 s)
PICK = st.integers(min_value=0, max_value=255)  # an index into a list of the model, taken modulo its length
QTY = st.integers(0, 3)

# Viewers of the room: (name, index of the viewer whose share link brought them). One level only: Dan's
# commission goes to Bob, never to Ann.
VIEWERS = [("Ann", None), ("Bob", 0), ("Cat", 0), ("Dan", 1)]
VIEWER = st.integers(0, len(VIEWERS) - 1)


def note(text: str) -> None:
    """Shown with a failing example; a no-op when a regression test replays rules by hand."""
    if currently_in_test_context():
        hypothesis_note(text)


class ManualClock:
    """The ``Clock`` the services read; only the rules move it."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms


# -- fault points ----------------------------------------------------------------------------------------


def dependencies_of(obj: Any) -> dict[str, Any]:
    """What ``obj`` was constructed with: its constructor's parameters, read back from its attributes of the
    same names (every service here keeps its dependencies so)."""
    names = [n for n in inspect.signature(type(obj).__init__).parameters if n != "self"]
    missing = [n for n in names if not hasattr(obj, n)]
    assert not missing, f"{type(obj).__name__} does not keep {missing}: build it by hand here"
    return {n: getattr(obj, n) for n in names}


def rebuilt(service: S, **replaced: Any) -> S:
    """A new instance of ``service``'s class, built by its constructor with the same dependencies except
    ``replaced`` (as ``build_state`` wired it, with one dependency swapped)."""
    return type(service)(**(dependencies_of(service) | replaced))


class Crash(Exception):
    """The process died at a fault point: nothing after it runs (raised through the real service)."""


class FaultyInventory(Inventory):
    """The real ``Inventory`` over the same Redis, with fault points: the first call of a method named in
    ``points`` raises ``Crash``, before it reaches Redis (``after=False``: Redis never heard of it) or
    after it ran (``after=True``, its result kept in ``result``). The services take their ``Inventory`` as
    a constructor dependency; nothing in them knows about this."""

    def __init__(self, real: Inventory, points: list[str], *, after: bool = False) -> None:
        super().__init__(**dependencies_of(real))
        self.points, self.after = set(points), after
        self.crashed_at: str | None = None
        self.result: Any = None

    async def _point(self, name: str, call: Coroutine[Any, Any, T]) -> T:
        if self.crashed_at is not None or name not in self.points:
            return await call
        self.crashed_at = name
        if self.after:
            self.result = await call
        else:
            call.close()  # never started: nothing of it reached Redis
        raise Crash(name)

    async def reserve(self, card_id: str, **kwargs: Any) -> ReserveResult:
        return await self._point("reserve", super().reserve(card_id, **kwargs))

    async def release(self, card_id: str, order_id: str, **kwargs: Any) -> str:
        return await self._point("release", super().release(card_id, order_id, **kwargs))

    async def rereserve(self, card_id: str, **kwargs: Any) -> str:
        return await self._point("rereserve", super().rereserve(card_id, **kwargs))

    async def refund(self, card_id: str, order_id: str, *, restock: bool) -> str:
        return await self._point("refund", super().refund(card_id, order_id, restock=restock))

    async def active_cards(self) -> list[str]:
        return await self._point("active_cards", super().active_cards())


# -- the reference model ---------------------------------------------------------------------------------


@dataclass
class MOrder:
    id: str
    buyer_id: str
    key: str
    qty: int
    amount: int
    referrer_id: str | None
    expires: int
    #: Status of the SQL row; ``None``: no row (a buy that crashed after reserving in Redis).
    sql: str | None
    #: The Redis record: ``None``, ``"reserved"`` or ``"paid"``.
    redis: str | None
    #: Score in the sale's pending zset (last touched), ``None`` when not pending.
    pending: int | None
    #: Score in the sale's refunding zset (when a refund began), ``None`` when no refund is unapplied.
    refunding: int | None = None
    restocked: bool = False
    late: bool = False
    was_paid: bool = False
    accrued: int | None = None  # the accrual row's amount, once written
    clawed: int | None = None  # the clawback row's amount, once written

    @property
    def sql_holds(self) -> bool:
        return self.sql in ("reserved", "paid")

    @property
    def written_off(self) -> bool:
        """Sold, then refunded by the host without restock: units stay out of the sale for good."""
        return self.sql == "refunded" and self.was_paid and not self.restocked


@dataclass
class MPayment:
    id: str
    order_id: str
    status: str


@dataclass
class MEvent:
    id: str
    kind: str
    payment_id: str
    body: bytes
    header: str = ""
    signed_s: int = 0


class Model:
    """What both stores should hold, step by step. Mirrors the Lua scripts and services at the level of
    outcomes; where it deliberately differs from the code it is documented in the module docstring."""

    def __init__(
        self, *, total: int, limit: int, reserve_ms: int, price: int, rate_bps: int, tolerance_s: int
    ) -> None:
        self.total = total
        self.limit = limit
        self.reserve_ms = reserve_ms
        self.price = price
        self.rate_bps = rate_bps
        self.tolerance_s = tolerance_s
        self.grace_ms = int(GRACE_S * 1000)
        self.stock_left: int | None = total  # None: Redis has no sale (lost its data)
        self.sentinel = True
        self.orders: dict[str, MOrder] = {}
        self.idem: dict[tuple[str, str], tuple[str, int]] = {}
        self.payments: dict[str, MPayment] = {}
        self.events_seen: set[str] = set()

    # -- Redis, as the Lua scripts keep it --------------------------------------------------------------

    def held_by(self, buyer_id: str) -> int:
        return sum(o.qty for o in self.orders.values() if o.buyer_id == buyer_id and o.redis)

    def reserve(self, buyer_id: str, key: str, qty: int, now: int) -> tuple[str, str | None]:
        if self.stock_left is None:
            return "no_sale", None
        seen = self.idem.get((buyer_id, key))
        if seen is not None:
            oid, q = seen
            if q != qty:
                return "idempotency_mismatch", oid
            o = self.orders[oid]
            if o.redis and o.pending is not None:
                o.pending = max(now, o.pending + 1)  # a touch is always later than the one before
            return "duplicate", oid
        if self.held_by(buyer_id) + qty > self.limit:
            return "limit_exceeded", None
        if self.stock_left < qty:
            return "sold_out", None
        return "ok", None

    def add_reservation(
        self, oid: str, buyer_id: str, key: str, qty: int, referrer_id: str | None, now: int
    ) -> MOrder:
        assert self.stock_left is not None
        self.stock_left -= qty
        o = MOrder(
            id=oid,
            buyer_id=buyer_id,
            key=key,
            qty=qty,
            amount=qty * self.price,
            referrer_id=referrer_id,
            expires=now + self.reserve_ms,
            sql=None,
            redis="reserved",
            pending=now,
        )
        self.orders[oid] = o
        self.idem[(buyer_id, key)] = (oid, qty)
        return o

    def release(self, o: MOrder, mode: str, now: int, grace_ms: int = 0) -> str:
        if o.redis is None:
            return "gone"
        if o.redis != "reserved":
            return "not_reserved"
        if mode == "orphan" and o.pending is not None and o.pending > now - grace_ms:
            return "busy"
        assert self.stock_left is not None
        self.stock_left += o.qty
        o.redis, o.pending = None, None
        if mode in ("abort", "orphan"):
            self.idem.pop((o.buyer_id, o.key), None)
        return "released"

    def rereserve(self, o: MOrder) -> str:
        if o.redis is not None:
            if o.redis == "paid":
                return "already_paid"
            o.redis, o.pending = "paid", None
            return "paid"
        if self.stock_left is None:
            return "no_sale"
        if self.held_by(o.buyer_id) + o.qty > self.limit:
            return "limit_exceeded"
        if self.stock_left < o.qty:
            return "sold_out"
        self.stock_left -= o.qty
        o.redis = "paid"
        return "paid"

    def refund_redis(self, o: MOrder, restock: bool) -> str:
        o.refunding = None
        if o.redis is None:
            return "gone"
        if o.redis != "paid":
            return "not_paid"
        o.redis = None
        if restock:
            assert self.stock_left is not None
            self.stock_left += o.qty
        return "refunded"

    def rebuild(self, now: int) -> None:
        """Reconcile of the one card: Redis rebuilt from SQL, keeping reservations still being written."""
        live = {
            o.id
            for o in self.orders.values()
            if o.sql == "paid" or (o.sql == "reserved" and o.expires >= now)
        }
        in_flight: list[MOrder] = []
        for o in self.orders.values():
            o.refunding = None  # the rebuild replaces every key of the sale
            if o.id in live:
                o.redis, o.pending = o.sql, None
            elif o.redis == "reserved" and o.pending is not None and o.pending > now - self.grace_ms:
                in_flight.append(o)
            else:
                o.redis, o.pending = None, None
        idem = {(o.buyer_id, o.key): (o.id, o.qty) for o in in_flight}
        for o in self.orders.values():
            if o.sql is not None:
                idem[(o.buyer_id, o.key)] = (o.id, o.qty)
        self.idem = idem
        held = sum(o.qty for o in self.orders.values() if o.redis)
        written_off = sum(o.qty for o in self.orders.values() if o.written_off)
        self.stock_left = max(0, self.total - held - written_off)

    def reconcile_all(self, now: int) -> None:
        self.rebuild(now)
        self.sentinel = True

    def lose_redis(self) -> None:
        self.stock_left = None
        self.sentinel = False
        self.idem = {}
        for o in self.orders.values():
            o.redis, o.pending, o.refunding = None, None, None

    # -- services ---------------------------------------------------------------------------------------

    def place(
        self, buyer_id: str, key: str, qty: int, referrer_id: str | None, now: int, real_id: str | None
    ) -> tuple[str, str | None]:
        """``("created", id)``, ``("existing", id)`` or ``("error", code)``."""
        if qty < 1 or qty > 100:
            return "error", "invalid_quantity"
        outcome, oid = self.reserve(buyer_id, key, qty, now)
        if outcome == "no_sale":
            self.rebuild(now)
            outcome, oid = self.reserve(buyer_id, key, qty, now)
        if outcome == "ok":
            if real_id is None:
                return "created", None
            o = self.add_reservation(real_id, buyer_id, key, qty, referrer_id, now)
            o.sql, o.pending = "reserved", None
            return "created", o.id
        if outcome == "duplicate":
            assert oid is not None
            o = self.orders[oid]
            if o.sql is not None:
                return "existing", oid
            if o.redis is None:
                return "error", "unavailable"
            o.sql, o.pending = "reserved", None  # adopted: this retry writes the row, and says so (201)
            return "created", oid
        return "error", {
            "idempotency_mismatch": "idempotency_key_reused",
            "no_sale": "not_found",
        }.get(outcome, outcome)

    def checkout(self, o: MOrder, viewer_id: str, now: int) -> tuple[str, str | None]:
        """``("existing", payment id)``, ``("new", None)`` or ``("error", code)``."""
        if o.sql is None:
            return "error", "not_found"
        if o.buyer_id != viewer_id:
            return "error", "forbidden"
        if o.sql != "reserved":
            return "error", "order_not_payable"
        if o.expires < now:
            return "error", "order_expired"
        for p in self.payments.values():
            if p.order_id == o.id and p.status == "pending":
                return "existing", p.id
        return "new", None

    def cancel(self, o: MOrder, viewer_id: str, now: int) -> str:
        if o.sql == "reserved" and o.buyer_id == viewer_id:
            o.sql = "cancelled"
            self.release(o, "cancel", now)
            return "cancelled"
        if o.sql is None:
            return "not_found"
        if o.buyer_id != viewer_id:
            return "forbidden"
        return "invalid_order_state"

    def begin_refund(self, o: MOrder, now: int) -> None:
        o.refunding = now

    def refund_sql(self, o: MOrder, restock: bool) -> None:
        o.sql, o.restocked = "refunded", restock
        if o.referrer_id is not None and (o.accrued or 0) > 0:
            o.clawed = -(o.accrued or 0)
        for p in self.payments.values():
            if p.order_id == o.id and p.status == "succeeded":
                p.status = "refunded"

    def refund(self, o: MOrder, restock: bool, now: int) -> str:
        if o.sql is None:
            return "not_found"
        if o.sql != "paid":
            return "invalid_order_state"
        self.begin_refund(o, now)
        self.refund_sql(o, restock)
        self.refund_redis(o, restock)
        return "refunded"

    def decision(self, o: MOrder, now: int) -> PaymentDecision:
        if o.sql == "reserved" and now <= o.expires:
            return PaymentDecision.PAY
        if o.sql in ("paid", "refunded"):
            return PaymentDecision.REFUND_DUPLICATE
        return PaymentDecision.LATE

    def webhook(self, ev: MEvent, now: int, header_s: int, *, forged: bool = False) -> str:
        if forged or abs(now // 1000 - header_s) > self.tolerance_s:
            return "invalid_signature"
        if ev.id in self.events_seen:
            return "duplicate_event"
        self.events_seen.add(ev.id)
        p = self.payments[ev.payment_id]
        if ev.kind == FAILED:
            if p.status == "pending":
                p.status = "failed"
                return "failed"
            return "stale_event"
        if p.status not in ("pending", "failed"):
            return "stale_event"
        p.status = "succeeded"
        o = self.orders[p.order_id]
        decision = self.decision(o, now)
        if decision is PaymentDecision.REFUND_DUPLICATE:
            p.status = "refunded"
            return "refunded_duplicate"
        late = decision is PaymentDecision.LATE
        if late and o.sql == "reserved":
            o.sql = "expired"
            self.release(o, "expire", now)
        held = self.rereserve(o)
        if held == "no_sale":  # Redis lost the sale: decide against SQL, as the buy path does
            self.rebuild(now)
            held = self.rereserve(o)
        if held in ("paid", "already_paid"):
            o.sql, o.late, o.was_paid = "paid", late, True
            if o.referrer_id is not None and o.referrer_id != o.buyer_id and o.accrued is None:
                o.accrued = commission_amount(o.amount, self.rate_bps)
            return "paid_late" if late else "paid"
        o.sql, o.restocked = "refunded", False
        p.status = "refunded"
        return "refunded_late"

    def sweep(self, now: int) -> dict[str, int]:
        counts = {"expired": 0, "released": 0, "orphans": 0, "confirmed": 0, "committed": 0, "refunds": 0}
        if not self.sentinel:
            self.reconcile_all(now)
        for o in self.orders.values():
            if o.sql == "reserved" and o.expires < now:
                o.sql = "expired"
                if self.release(o, "expire", now) == "released":
                    counts["expired"] += 1
        stale = [
            o
            for o in self.orders.values()
            if (o.redis == "reserved" and o.expires <= now)
            or (o.pending is not None and o.pending <= now - self.grace_ms)
        ]
        for o in stale:
            pending = o.pending is not None and o.pending <= now - self.grace_ms
            if o.sql is None:
                if self.release(o, "orphan", now, self.grace_ms) == "released":
                    counts["orphans"] += 1
            elif o.sql == "paid":
                if o.redis:
                    self.rereserve(o)
                counts["confirmed"] += 1
            elif o.sql == "reserved":
                if pending:
                    o.pending = None
                    counts["committed"] += 1
            elif self.release(o, "expire", now) == "released":
                counts["released"] += 1
        for o in self.orders.values():  # refunds whose Redis half never ran
            if o.refunding is None or o.refunding > now - self.grace_ms:
                continue
            if o.sql != "refunded":
                o.refunding = None
            elif self.refund_redis(o, o.restocked) == "refunded":
                counts["refunds"] += 1
        return counts


# -- what the real stores hold ---------------------------------------------------------------------------


@dataclass
class Observed:
    stock_left: int | None
    stock_total: int | None
    records: dict[str, tuple[str, int]]  # order id -> (state, qty)
    orders: dict[str, Order]
    payments: list[Payment]
    commissions: list[Commission]
    sentinel: bool
    refunding: set[str]  # refunds begun whose Redis half has not run


class OrderLifecycle(RuleBasedStateMachine):
    redis_url: str = REDIS_URL

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="livecart-sm-"))
        self.clock = ManualClock(START_MS)
        self.st: AppState | None = None
        self.model: Model | None = None
        self.settings: Settings | None = None
        self.viewers: list[ViewerIdentity] = []
        self.host: HostIdentity | None = None
        self.card_id = ""
        self.key_seq = 0
        self.attempts: list[tuple[int, str, int]] = []  # (viewer index, key, quantity) ever tried
        self.sent: list[MEvent] = []  # delivered at least once (redelivery, replay)
        self.queue: list[MEvent] = []  # prepared, or crashed mid-delivery: the provider will (re)send them

    # -- plumbing ---------------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    @property
    def s(self) -> AppState:
        assert self.st is not None
        return self.st

    @property
    def now(self) -> int:
        return self.clock.ms

    async def _start(self) -> AppState:
        """What the app's lifespan does, minus the HTTP server and the background sweeper."""
        assert self.settings is not None
        state = await build_state(self.settings, self.redis_url, clock=self.clock)
        if not await state.redis.exists(SENTINEL):
            self._check_reports(await state.reconciler.reconcile_all(trigger="startup"))
        state.writer.start()
        return state

    @staticmethod
    def _check_reports(reports: list[CardReport]) -> None:
        """SQL never sells more than the stock (checked after every step), so a rebuild that reports an
        oversold card is wrong about it."""
        oversold = [r for r in reports if r.oversold]
        assert not oversold, f"reconcile reports oversold cards that SQL does not oversell: {oversold}"

    @staticmethod
    async def _stop(state: AppState) -> None:
        try:
            await state.realtime.stop()  # its queued order frames out before Redis is closed
            await state.writer.stop()
        finally:
            await state.redis.aclose()
            await state.engine.dispose()

    def teardown(self) -> None:
        try:
            if self.st is not None:
                self.run(self._stop(self.st))
                self.st = None
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _restart(self) -> None:
        """The process dies and comes back; Redis and the SQLite file persist."""
        self.run(self._stop(self.s))
        self.st = None
        self.st = self.run(self._start())
        if not self.m.sentinel:
            self.m.reconcile_all(self.now)

    # -- set-up -----------------------------------------------------------------------------------------

    @initialize(
        stock=st.integers(1, 8),
        limit=st.integers(1, 3),
        price=st.sampled_from([990, 995, 1, 1999]),
        rate_bps=st.sampled_from([1000, 333, 0, 10_000]),
        reserve_s=st.sampled_from([60, 300]),
    )
    def set_up(self, stock: int, limit: int, price: int, rate_bps: int, reserve_s: int) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
        self.settings = make_settings(
            f"sqlite+aiosqlite:///{self.tmp / 'livecart.db'}",
            self.redis_url,
            self.tmp,
            commission_rate_bps=rate_bps,
            orphan_grace_seconds=GRACE_S,
        )
        self.st = self.run(self._start())
        self.run(self._seed(stock=stock, limit=limit, price=price, reserve_s=reserve_s))
        self.model = Model(
            total=stock,
            limit=limit,
            reserve_ms=reserve_s * 1000,
            price=price,
            rate_bps=rate_bps,
            tolerance_s=self.settings.webhook_tolerance_seconds,
        )

    async def _seed(self, *, stock: int, limit: int, price: int, reserve_s: int) -> None:
        now = self.now
        host = Host(id=new_id("hst"), name="Host", created_ms=now)
        room = Room(
            id=new_id("rm"),
            host_id=host.id,
            title="Show",
            status="live",
            invite_token=random_code(22),
            scheduled_ms=None,
            started_ms=now,
            ended_ms=None,
            created_ms=now,
        )
        viewers: list[Viewer] = []
        for name, ref in VIEWERS:
            viewers.append(
                Viewer(
                    id=new_id("vw"),
                    room_id=room.id,
                    name=name,
                    share_code=random_code(10),
                    referrer_id=viewers[ref].id if ref is not None else None,
                    created_ms=now,
                )
            )
        async with self.s.sessions() as session, session.begin():
            session.add(host)
            session.add(room)
            await session.flush()
            for v in viewers:  # one by one: each referrer row exists before the viewer it brought
                session.add(v)
                await session.flush()
        self.host = HostIdentity(host.id)
        self.viewers = [ViewerIdentity(v.id, room.id, v.referrer_id) for v in viewers]
        catalog = self.s.catalog
        product = await catalog.create_product(self.host, ProductIn(name="Tea", price=price))
        card = await catalog.create_card(
            self.host,
            room.id,
            CardIn(
                product_id=product["id"],
                price=price,
                stock=stock,
                per_user_limit=limit,
                reserve_seconds=reserve_s,
            ),
        )
        self.card_id = card["id"]
        await catalog.open_card(self.host, self.card_id, CardOpenIn())

    # -- buying -----------------------------------------------------------------------------------------

    def _place(self, vi: int, key: str, qty: int, *, remember: bool = True) -> None:
        viewer = self.viewers[vi]
        real_id: str | None = None
        try:
            order, created = self.run(
                self.s.orders.place(viewer, self.card_id, quantity=qty, idempotency_key=key)
            )
            actual: tuple[str, str | None] = ("created" if created else "existing", order["id"])
            real_id = order["id"] if created else None
        except LiveCartError as exc:
            actual, order = ("error", exc.code), None
        expected = self.m.place(viewer.viewer_id, key, qty, viewer.referrer_id, self.now, real_id)
        note(f"place(viewer={vi}, key={key}, qty={qty}) -> {actual}")
        assert actual == expected, f"place: product {actual}, model {expected}"
        if order is not None:
            o = self.m.orders[order["id"]]
            assert order["status"] == o.sql and order["referrer_id"] == viewer.referrer_id, order
            assert order["quantity"] == qty and order["amount"] == o.amount, order
        if remember and (vi, key, qty) not in self.attempts:
            self.attempts.append((vi, key, qty))

    def _fresh_key(self) -> str:
        self.key_seq += 1
        return f"key-{self.key_seq}"

    @rule(viewer=VIEWER, qty=QTY)
    def reserve(self, viewer: int, qty: int) -> None:
        """A buy with a fresh Idempotency-Key (quantity 0 is invalid, 3 often over the per-buyer limit)."""
        self._place(viewer, self._fresh_key(), qty, remember=qty >= 1)

    @precondition(lambda self: bool(self.attempts))
    @rule(pick=PICK, other_quantity=st.booleans())
    def retry_reserve(self, pick: int, other_quantity: bool) -> None:
        """A retry of an earlier Idempotency-Key (whatever became of it); with another quantity: refused."""
        vi, key, qty = self.attempts[pick % len(self.attempts)]
        self._place(vi, key, qty % 3 + 1 if other_quantity else qty)

    @rule(viewer=VIEWER, qty=st.integers(1, 2), then=st.sampled_from(["paid", "failed", "checkout_only"]))
    def buy_and_pay(self, viewer: int, qty: int, then: str) -> None:
        """The usual path: reserve, start checkout, and the provider reports at once."""
        before = set(self.m.orders)
        self._place(viewer, self._fresh_key(), qty)
        created = [o for oid, o in self.m.orders.items() if oid not in before]
        if not created:
            return
        pid = self._checkout(created[0])
        assert pid is not None
        if then != "checkout_only":
            self._deliver(self._new_event(SUCCEEDED if then == "paid" else FAILED, pid))

    # -- paying -----------------------------------------------------------------------------------------

    def _orders(self) -> list[MOrder]:
        return list(self.m.orders.values())

    def _open_orders(self) -> list[MOrder]:
        """Orders still payable: reserved in SQL, within their window."""
        return [o for o in self._orders() if o.sql == "reserved" and o.expires >= self.now]

    def _choose(self, pick: int, wanted: Any, applicable: bool) -> MOrder | None:
        """An order: among those ``wanted`` accepts when ``applicable`` (and there are some), else any."""
        orders = self._orders()
        fitting = [o for o in orders if wanted(o)]
        if applicable and fitting:
            orders = fitting
        return orders[pick % len(orders)] if orders else None

    def _checkout(self, o: MOrder, vi: int | None = None) -> str | None:
        viewer = (
            next(v for v in self.viewers if v.viewer_id == o.buyer_id) if vi is None else self.viewers[vi]
        )
        expected = self.m.checkout(o, viewer.viewer_id, self.now)
        try:
            pid: str | None = self.run(self.s.payments.start_checkout(viewer, o.id))["payment_id"]
            actual: tuple[str, str | None] = ("ok", pid)
        except LiveCartError as exc:
            pid, actual = None, ("error", exc.code)
        note(f"checkout({o.id}) -> {actual}")
        if expected[0] == "new":
            assert actual[0] == "ok", f"checkout: product {actual}, model {expected}"
            assert pid is not None and pid not in self.m.payments
            self.m.payments[pid] = MPayment(pid, o.id, "pending")
        elif expected[0] == "existing":
            assert actual == ("ok", expected[1]), f"checkout: product {actual}, model {expected}"
        else:
            assert actual == expected, f"checkout: product {actual}, model {expected}"
        return pid

    @precondition(lambda self: bool(self.model and self.model.orders))
    @rule(pick=PICK, as_other_viewer=st.booleans())
    def start_checkout(self, pick: int, as_other_viewer: bool) -> None:
        """Checkout of any order (an orphan, a closed one, someone else's: refused)."""
        o = self._choose(pick, lambda o: True, False)
        assert o is not None
        vi = None
        if as_other_viewer:
            vi = next(i for i, v in enumerate(self.viewers) if v.viewer_id != o.buyer_id)
        self._checkout(o, vi)

    @precondition(lambda self: bool(self.model and self.model.orders))
    @rule(pick=PICK, applicable=st.booleans(), succeeded=st.booleans())
    def pay_existing_order(self, pick: int, applicable: bool, succeeded: bool) -> None:
        """Checkout of an earlier order (often one still payable), then the provider reports."""
        o = self._choose(pick, lambda o: o in self._open_orders(), applicable)
        assert o is not None
        pid = self._checkout(o)
        if pid is not None:
            self._deliver(self._new_event(SUCCEEDED if succeeded else FAILED, pid))

    def _new_event(self, kind: str, payment_id: str, event_id: str | None = None) -> MEvent:
        eid = event_id or new_id("evt")
        body = json.dumps(
            {"id": eid, "type": kind, "created": self.now // 1000, "data": {"payment_id": payment_id}}
        ).encode()
        return MEvent(eid, kind, payment_id, body)

    def _deliver(self, ev: MEvent, *, header: str | None = None, header_s: int | None = None) -> str:
        """The provider calls the webhook; signed now unless a captured header is replayed."""
        forged = False
        if header is None:
            header_s = self.now // 1000
            header = signing.sign(ev.body, secret=self.s.settings.webhook_secret, timestamp=header_s)
            ev.header, ev.signed_s = header, header_s
        elif header == "forged":
            header_s = self.now // 1000
            header = signing.sign(ev.body, secret=b"not-the-secret", timestamp=header_s)
            forged = True
        assert header_s is not None
        expected = self.m.webhook(ev, self.now, header_s, forged=forged)
        try:
            actual = self.run(self.s.payments.receive_webhook(ev.body, header))["outcome"]
        except LiveCartError as exc:
            actual = exc.code
        note(f"webhook {ev.kind} {ev.id} for {ev.payment_id} -> {actual}")
        assert actual == expected, f"webhook {ev.kind}: product {actual}, model {expected}"
        if ev not in self.sent and not forged:
            self.sent.append(ev)
        return actual

    @precondition(lambda self: bool(self.model and self.model.payments))
    @rule(
        does=st.sampled_from(
            [
                "send_succeeded",  # a new event, delivered now
                "send_failed",
                "prepare_succeeded",  # a new event the provider sends later, in any order with others
                "prepare_failed",
                "deliver_prepared",
                "redeliver",  # the same event again, freshly signed: recognised, changes nothing
                "replay_captured",  # a captured request with its old signature: refused once too old
                "forge",  # a request signed with another secret: refused
                "dev_paid",  # the built-in dev provider's simulator
                "dev_failed",
            ]
        ),
        pick=PICK,
    )
    def payment_provider(self, does: str, pick: int) -> None:
        payments = list(self.m.payments.values())
        p = payments[pick % len(payments)]
        if does in ("send_succeeded", "send_failed"):
            self._deliver(self._new_event(SUCCEEDED if does == "send_succeeded" else FAILED, p.id))
        elif does in ("prepare_succeeded", "prepare_failed"):
            self.queue.append(self._new_event(SUCCEEDED if does == "prepare_succeeded" else FAILED, p.id))
        elif does == "deliver_prepared" and self.queue:
            self._deliver(self.queue.pop(pick % len(self.queue)))
        elif does in ("redeliver", "replay_captured", "forge") and self.sent:
            ev = self.sent[pick % len(self.sent)]
            if does == "redeliver":
                self._deliver(ev)
            elif does == "replay_captured":
                self._deliver(ev, header=ev.header, header_s=ev.signed_s)
            else:
                self._deliver(self._new_event(ev.kind, ev.payment_id, ev.id), header="forged")
        elif does in ("dev_paid", "dev_failed"):
            self._dev_complete(p, paid=does == "dev_paid")

    def _dev_complete(self, p: MPayment, *, paid: bool) -> None:
        outcome = "paid" if paid else "failed"
        if p.status != "pending":
            try:
                self.run(self.s.payments.dev_complete(p.id, outcome))
            except LiveCartError as exc:
                assert exc.code == "payment_not_pending"
                return
            raise AssertionError(f"dev_complete accepted a payment that is {p.status}")
        done = self.run(self.s.payments.dev_complete(p.id, outcome))
        ev = self._new_event(SUCCEEDED if paid else FAILED, p.id, done["event"]["id"])
        expected = self.m.webhook(ev, self.now, self.now // 1000)
        note(f"dev_complete {p.id} {outcome} -> {done['event']['outcome']}")
        assert done["event"]["outcome"] == expected, (done, expected)
        assert done["order"]["status"] == self.m.orders[p.order_id].sql
        assert done["payment"]["status"] == p.status
        ev.header = signing.sign(ev.body, secret=self.s.settings.webhook_secret, timestamp=self.now // 1000)
        ev.signed_s = self.now // 1000
        self.sent.append(ev)

    @precondition(lambda self: bool(self.model and self._open_orders()))
    @rule(
        pick=PICK,
        overshoot_ms=st.sampled_from([1, 1000, 4000, 400_000]),
        sweep_first=st.booleans(),
        meanwhile=st.sampled_from(["nothing", "another_buyer_buys", "same_buyer_buys_again"]),
    )
    def late_payment(self, pick: int, overshoot_ms: int, sweep_first: bool, meanwhile: str) -> None:
        """Checkout within the window; the window passes (the sweeper runs or not, someone may buy the
        units it returned); then the money arrives."""
        open_orders = self._open_orders()
        o = open_orders[pick % len(open_orders)]
        pid = self._checkout(o)
        assert pid is not None
        self._advance_to(o.expires + overshoot_ms)
        if sweep_first:
            self._sweep()
        if meanwhile != "nothing":
            buyer = next(
                i
                for i, v in enumerate(self.viewers)
                if (v.viewer_id == o.buyer_id) == (meanwhile == "same_buyer_buys_again")
            )
            self._place(buyer, self._fresh_key(), o.qty)
        self._deliver(self._new_event(SUCCEEDED, pid))

    # -- after the buy ----------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.model and self.model.orders))
    @rule(pick=PICK, applicable=st.booleans(), as_other_viewer=st.booleans())
    def cancel(self, pick: int, applicable: bool, as_other_viewer: bool) -> None:
        o = self._choose(pick, lambda o: o.sql == "reserved", applicable)
        assert o is not None
        viewer = next(v for v in self.viewers if (v.viewer_id != o.buyer_id) == as_other_viewer)
        expected = self.m.cancel(o, viewer.viewer_id, self.now)
        try:
            actual = self.run(self.s.orders.cancel(viewer, o.id))["status"]
        except LiveCartError as exc:
            actual = exc.code
        note(f"cancel({o.id}) -> {actual}")
        assert actual == expected, f"cancel: product {actual}, model {expected}"

    @precondition(lambda self: bool(self.model and self.model.orders))
    @rule(pick=PICK, applicable=st.booleans(), restock=st.booleans())
    def refund(self, pick: int, applicable: bool, restock: bool) -> None:
        """The host refunds; with ``restock=False`` the units are written off (stay out of the sale)."""
        o = self._choose(pick, lambda o: o.sql == "paid", applicable)
        assert o is not None and self.host is not None
        expected = self.m.refund(o, restock, self.now)
        try:
            actual = self.run(self.s.orders.refund(self.host, o.id, restock=restock))["status"]
        except LiveCartError as exc:
            actual = exc.code
        note(f"refund({o.id}, restock={restock}) -> {actual}")
        assert actual == expected, f"refund: product {actual}, model {expected}"

    # -- time, the sweeper, restarts, crashes -----------------------------------------------------------

    def _advance_to(self, ms: int) -> None:
        self.clock.ms = max(self.clock.ms, ms)

    @rule(
        step=st.sampled_from(
            [
                "1s",
                "past_grace",
                "to_last_ms_of_a_window",
                "just_past_a_window",
                "past_window",
                "past_tolerance",
            ]
        ),
        pick=PICK,
    )
    def advance_clock(self, step: str, pick: int) -> None:
        ahead = sorted({o.expires for o in self._orders() if o.expires >= self.now})
        if step == "1s":
            self.clock.ms += 1000
        elif step == "past_grace":
            self.clock.ms += int(GRACE_S * 1000) + 1000
        elif step == "past_window":
            self.clock.ms += self.m.reserve_ms + 1
        elif step == "past_tolerance":
            self.clock.ms += self.m.tolerance_s * 1000 + 1000
        elif ahead:
            target = ahead[pick % len(ahead)]
            self._advance_to(target if step == "to_last_ms_of_a_window" else target + 1)
        else:
            self.clock.ms += 1000
        note(f"clock at +{self.now - START_MS} ms")

    def _sweep(self) -> None:
        expected = self.m.sweep(self.now)
        actual = self.run(self.s.sweeper.sweep())
        note(f"sweep -> {actual}")
        assert actual == expected, f"sweep: product {actual}, model {expected}"

    @rule()
    def sweep(self) -> None:
        self._sweep()

    @rule(how=st.sampled_from(["plain", "operator_reconciles", "redis_lost", "redis_lost_app_keeps_running"]))
    def restart(self, how: str) -> None:
        """A process restart (Redis and SQLite persist), optionally followed by an operator's reconcile; or
        Redis restarts without persistence (our test DB only) and the app restarts too (its start-up
        rebuilds every sale) or keeps running (the next buy or sweep rebuilds)."""
        if how.startswith("redis_lost"):
            self.run(self.s.redis.flushdb())
            self.m.lose_redis()
        if how != "redis_lost_app_keeps_running":
            self._restart()
        if how == "operator_reconciles":
            self._check_reports(self.run(self.s.reconciler.reconcile_all(trigger="manual")))
            self.m.reconcile_all(self.now)

    @rule(
        where=st.sampled_from(
            ["after_redis_reserve", "mid_payment", "mid_cancel", "mid_sweep", "mid_refund"]
        ),
        viewer=VIEWER,
        pick=PICK,
        restock=st.booleans(),
    )
    def crash(self, where: str, viewer: int, pick: int, restock: bool) -> None:
        """The process dies (kill -9) between the two halves of an operation, then restarts. Each runs the
        real service method over an ``Inventory`` with one fault point (``FaultyInventory``):

        - ``after_redis_reserve``: ``OrderService.place`` reserved in Redis and died before its row was
          written (an orphan; its retry adopts it, else the sweeper returns it after the grace);
        - ``mid_payment``: ``PaymentService.receive_webhook`` ran its Redis half (release of a late
          reservation, ``rereserve``) and died before its SQL transaction committed; the provider got no
          2xx and will redeliver the event;
        - ``mid_cancel`` / ``mid_sweep`` / ``mid_refund``: ``OrderService.cancel``, ``Sweeper.sweep`` and
          ``OrderService.refund`` committed SQL and died before Redis was told (the sweeper at its first
          Redis call after its SQL pass).
        """
        if where == "after_redis_reserve":
            self._crash_after_redis_reserve(viewer)
        elif where == "mid_payment":
            self._crash_mid_payment(pick)
        elif where == "mid_cancel":
            reserved = [o for o in self._orders() if o.sql == "reserved"]
            if reserved:
                o = reserved[pick % len(reserved)]
                viewer_id = next(v for v in self.viewers if v.viewer_id == o.buyer_id)
                self._dies_at(self.s.orders, ["release"], lambda s: s.cancel(viewer_id, o.id))
                o.sql = "cancelled"
        elif where == "mid_sweep":
            if not self.m.sentinel:  # the sweep rebuilds every sale first
                self.m.reconcile_all(self.now)
            self._dies_at(self.s.sweeper, ["release", "active_cards"], lambda s: s.sweep())
            for o in self._orders():
                if o.sql == "reserved" and o.expires < self.now:
                    o.sql = "expired"
        else:
            paid = [o for o in self._orders() if o.sql == "paid"]
            if paid:
                o = paid[pick % len(paid)]
                host = self.host
                assert host is not None
                self._dies_at(self.s.orders, ["refund"], lambda s: s.refund(host, o.id, restock=restock))
                self.m.begin_refund(o, self.now)
                self.m.refund_sql(o, restock)
        self._restart()

    def _dies_at(
        self,
        service: S,
        points: list[str],
        call: Callable[[S], Awaitable[Any]],
        *,
        after: bool = False,
    ) -> FaultyInventory:
        """Run ``call`` on a copy of the real ``service`` (same class, same dependencies) whose inventory is
        a ``FaultyInventory`` that dies at the first call of one of ``points``; the service must not get
        past it (the process is gone)."""
        inventory = FaultyInventory(self.s.inventory, points, after=after)
        try:
            result = self.run(call(rebuilt(service, inventory=inventory)))
        except Crash:
            note(f"crashed at {inventory.crashed_at}")
            return inventory
        raise AssertionError(f"no crash at {points}: the service never got there and returned {result!r}")

    def _crash_after_redis_reserve(self, viewer: int) -> None:
        v = self.viewers[viewer]
        key, qty = self._fresh_key(), 1
        expected, _ = self.m.reserve(v.viewer_id, key, qty, self.now)
        died = self._dies_at(
            self.s.orders,
            ["reserve"],
            lambda s: s.place(v, self.card_id, quantity=qty, idempotency_key=key),
            after=True,
        )
        res = died.result
        assert isinstance(res, ReserveResult) and res.outcome == expected, (res, expected)
        if res.outcome == "ok":
            assert res.order_id is not None
            self.m.add_reservation(res.order_id, v.viewer_id, key, qty, v.referrer_id, self.now)
        self.attempts.append((viewer, key, qty))

    def _crash_mid_payment(self, pick: int) -> None:
        payable = [p for p in self.m.payments.values() if p.status in ("pending", "failed")]
        if not payable:
            return
        p = payable[pick % len(payable)]
        o = self.m.orders[p.order_id]
        decision = self.m.decision(o, self.now)
        ev = self._new_event(SUCCEEDED, p.id)
        if decision is not PaymentDecision.REFUND_DUPLICATE:  # else it has no Redis half to die after
            header = signing.sign(ev.body, secret=self.s.settings.webhook_secret, timestamp=self.now // 1000)
            self._dies_at(
                self.s.payments, ["rereserve"], lambda s: s.receive_webhook(ev.body, header), after=True
            )
            if decision is PaymentDecision.LATE and o.sql == "reserved":
                self.m.release(o, "expire", self.now)
            self.m.rereserve(o)
        self.queue.append(ev)  # the same event again: its first delivery left nothing in SQL

    @rule()
    def provider_retries_then_time_passes(self) -> None:
        """Every event the provider still owes is delivered; then every window and grace period passes and
        the sweeper runs once. Nothing may stay held that SQL does not hold (SPEC §2.5: no stock leaks
        longer than the window plus a small grace)."""
        while self.queue:
            self._deliver(self.queue.pop(0))
        latest = max([self.now, *(o.expires for o in self._orders())])
        self._advance_to(latest + int(GRACE_S * 1000) + 1000)
        self._sweep()
        seen = self._observe()
        assert not [o for o in seen.orders.values() if o.status == "reserved"]
        paid = {oid for oid, o in seen.orders.items() if o.status == "paid"}
        held = set(seen.records)
        assert held == paid, (
            f"after every window and grace passed, Redis holds {sorted(held - paid)} that SQL does not "
            f"hold, and misses {sorted(paid - held)}"
        )
        sold = sum(o.quantity for o in seen.orders.values() if o.status == "paid")
        assert seen.stock_left == self.m.total - sold - self._written_off(seen), "stock did not converge"

    # -- invariants -------------------------------------------------------------------------------------

    def _observe(self) -> Observed:
        return self.run(self._read())

    async def _read(self) -> Observed:
        sale = await self.s.inventory.sale(self.card_id)
        records = {
            oid: (r.state, r.quantity)
            for oid, r in (await self.s.inventory.reservations(self.card_id)).items()
        }
        async with self.s.sessions() as session:
            orders = {o.id: o for o in (await session.execute(select(Order))).scalars()}
            payments = list((await session.execute(select(Payment))).scalars())
            ledger = list((await session.execute(select(Commission))).scalars())
        return Observed(
            stock_left=sale.stock_left if sale else None,
            stock_total=sale.stock_total if sale else None,
            records=records,
            orders=orders,
            payments=payments,
            commissions=ledger,
            sentinel=bool(await self.s.redis.exists(SENTINEL)),
            refunding={v.decode() for v in await self.s.redis.zrange(card_keys(self.card_id)[6], 0, -1)},
        )

    @staticmethod
    def _written_off(seen: Observed) -> int:
        """Units refunded by the host without restock after they were sold: out of the sale for good."""
        return sum(
            o.quantity
            for o in seen.orders.values()
            if o.status == "refunded" and not o.restocked and o.paid_ms is not None
        )

    @invariant()
    def stores_agree_and_nothing_is_oversold(self) -> None:
        if self.model is None:
            return
        m = self.m
        seen = self._observe()
        total = m.total

        # SQL alone: never more sold than the stock the host made available.
        sold = sum(o.quantity for o in seen.orders.values() if o.status == "paid")
        written_off = self._written_off(seen)
        assert sold + written_off <= total, f"oversold in SQL: {sold} paid + {written_off} written off"

        # Statuses and flags in SQL are the model's.
        assert {i: o.status for i, o in seen.orders.items()} == {
            o.id: o.sql for o in m.orders.values() if o.sql is not None
        }, "SQL order statuses differ from the model"
        for o in m.orders.values():
            if o.sql in ("paid", "refunded"):
                row = seen.orders[o.id]
                assert (row.late, row.restocked) == (o.late, o.restocked), (o, row.late, row.restocked)

        # Redis, when it has the sale: its records, its stock, and its own accounting.
        assert seen.sentinel == m.sentinel, "Redis sentinel"
        assert (seen.stock_left is not None) == (m.stock_left is not None), "sale presence in Redis"
        assert {i: s for i, (s, _) in seen.records.items()} == {
            o.id: o.redis for o in m.orders.values() if o.redis
        }, "Redis reservation records differ from the model"
        assert seen.refunding == {o.id for o in m.orders.values() if o.refunding is not None}, (
            "unapplied refund notes in Redis differ from the model"
        )
        if seen.stock_left is not None:
            assert seen.stock_total == total
            assert seen.stock_left >= 0, f"Redis stock_left {seen.stock_left} < 0"
            assert seen.stock_left == m.stock_left, (
                f"Redis stock_left {seen.stock_left}, model {m.stock_left}"
            )
            in_records = sum(q for _, q in seen.records.values())
            written_off_not_held = sum(
                o.qty for o in m.orders.values() if o.written_off and o.id not in seen.records
            )
            assert seen.stock_left + in_records + written_off_not_held == total, (
                f"Redis accounting: left {seen.stock_left} + held {in_records} + written off "
                f"{written_off_not_held} != {total}"
            )
            # The conservation equation over SQL, with the two documented transient gaps made explicit.
            reserved = sum(o.quantity for o in seen.orders.values() if o.status == "reserved")
            released_early = sum(o.qty for o in m.orders.values() if o.sql_holds and not o.redis)
            held_without_sql = sum(
                o.qty for o in m.orders.values() if o.redis and not o.sql_holds and not o.written_off
            )
            assert (
                seen.stock_left + reserved + sold + written_off - released_early + held_without_sql == total
            ), (
                f"conservation: left {seen.stock_left} + reserved {reserved} + paid {sold} + written off "
                f"{written_off} - released by reconcile {released_early} + held without SQL "
                f"{held_without_sql} != {total}"
            )

        # Payments: never paid twice; statuses are the model's.
        succeeded: dict[str, int] = {}
        for p in seen.payments:
            if p.status == "succeeded":
                succeeded[p.order_id] = succeeded.get(p.order_id, 0) + 1
        for oid, row in seen.orders.items():
            assert succeeded.get(oid, 0) == (1 if row.status == "paid" else 0), (
                f"order {oid} is {row.status} with {succeeded.get(oid, 0)} succeeded payments"
            )
        assert {p.id: p.status for p in seen.payments} == {p.id: p.status for p in m.payments.values()}

        # Commissions: one level, floor(rate x amount), clawed back on refund, nothing for unpaid orders.
        by_order: dict[str, int] = {}
        for c in seen.commissions:
            by_order[c.order_id] = by_order.get(c.order_id, 0) + c.amount
            row = seen.orders[c.order_id]
            assert c.promoter_id == row.referrer_id != row.buyer_id, "commission to someone else"
        expected_total = 0
        for oid, row in seen.orders.items():
            due = 0
            if row.status == "paid" and row.referrer_id is not None and row.referrer_id != row.buyer_id:
                due = row.amount * m.rate_bps // 10_000
            expected_total += due
            assert by_order.get(oid, 0) == due, (
                f"order {oid} ({row.status}): commission {by_order.get(oid, 0)}"
            )
            if row.paid_ms is None:
                assert oid not in by_order, f"order {oid} was never paid yet has ledger rows"
        assert sum(c.amount for c in seen.commissions) == expected_total
        expected_rows: dict[tuple[str, str], int] = {}
        for o in m.orders.values():
            if o.accrued is not None:
                expected_rows[(o.id, "accrual")] = o.accrued
            if o.clawed is not None:
                expected_rows[(o.id, "clawback")] = o.clawed
        assert {(c.order_id, c.kind): c.amount for c in seen.commissions} == expected_rows
        assert len(seen.commissions) == len(expected_rows), "a ledger row was written twice"


@pytest.mark.timeout(3600)
def test_order_lifecycle_state_machine(redis_url: str) -> None:
    assert redis_url == OrderLifecycle.redis_url  # the fixture skips when Redis is down, and flushes it
    run_state_machine_as_test(
        OrderLifecycle,
        settings=hsettings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
            print_blob=True,
        ),
    )


# -- minimal examples the machine found, replayed step by step -------------------------------------------

Step = tuple[str, dict[str, Any]]


def replay(redis_url: str, steps: list[Step], **setup: int) -> None:
    """Run rules of the machine by hand, checking the invariants after each, as Hypothesis would."""
    machine = OrderLifecycle()
    machine.redis_url = redis_url
    try:
        machine.set_up(**({"stock": 1, "limit": 1, "price": 990, "rate_bps": 1000, "reserve_s": 60} | setup))
        machine.stores_agree_and_nothing_is_oversold()
        for name, kwargs in steps:
            getattr(machine, name)(**kwargs)
            machine.stores_agree_and_nothing_is_oversold()
    finally:
        machine.teardown()


def test_a_second_successful_payment_is_refunded_and_commission_accrues_once(redis_url: str) -> None:
    replay(
        redis_url,
        [
            ("buy_and_pay", {"viewer": 3, "qty": 1, "then": "failed"}),  # payment 0 fails
            ("pay_existing_order", {"pick": 0, "applicable": True, "succeeded": True}),  # payment 1: paid
            ("payment_provider", {"does": "send_succeeded", "pick": 0}),  # payment 0 too: refunded_duplicate
            ("payment_provider", {"does": "replay_captured", "pick": 0}),  # duplicate_event
            ("payment_provider", {"does": "forge", "pick": 1}),  # invalid_signature
            ("payment_provider", {"does": "redeliver", "pick": 1}),  # duplicate_event
            ("refund", {"pick": 0, "applicable": True, "restock": False}),  # commission clawed back
            ("provider_retries_then_time_passes", {}),
        ],
        rate_bps=333,
        price=995,
    )


def test_a_buy_that_crashed_before_its_row_is_adopted_by_its_retry_or_returned(redis_url: str) -> None:
    replay(
        redis_url,
        [
            ("crash", {"where": "after_redis_reserve", "viewer": 1, "pick": 0, "restock": False}),  # orphan
            ("retry_reserve", {"pick": 0, "other_quantity": False}),  # the retry adopts it
            ("crash", {"where": "after_redis_reserve", "viewer": 2, "pick": 0, "restock": False}),  # sold out
            ("cancel", {"pick": 0, "applicable": True, "as_other_viewer": False}),
            ("crash", {"where": "after_redis_reserve", "viewer": 2, "pick": 0, "restock": False}),  # orphan
            ("advance_clock", {"step": "past_grace", "pick": 0}),
            ("sweep", {}),  # returned after the grace, its key forgotten
            ("retry_reserve", {"pick": 2, "other_quantity": False}),  # so its retry reserves afresh
            ("provider_retries_then_time_passes", {}),
        ],
    )


def test_refused_late_payment_keeps_its_units_on_sale_after_a_reconcile(redis_url: str) -> None:
    """A late payment that cannot be honoured (here: the buyer's limit) is refunded although its units were
    never held. A reconcile must not count it as written off (a refunded order that was never paid): once
    it did, and took its units out of the sale for good (stock_left 0 instead of 1), or, clamped below 0,
    reported the card oversold although SQL sold nothing beyond the stock."""
    replay(
        redis_url,
        [
            ("buy_and_pay", {"viewer": 0, "qty": 1, "then": "checkout_only"}),
            ("advance_clock", {"step": "past_window", "pick": 0}),
            ("sweep", {}),
            ("reserve", {"viewer": 0, "qty": 1}),
            ("payment_provider", {"does": "send_succeeded", "pick": 0}),  # refunded_late (limit_exceeded)
            ("restart", {"how": "operator_reconciles"}),
        ],
        stock=2,
        limit=1,
    )


def test_a_reconcile_at_the_last_millisecond_of_a_window_keeps_the_reservation(redis_url: str) -> None:
    """At ``now == expires_ms`` a reservation is still on time for ``decide_payment`` (``now <= expires``),
    ``start_checkout`` and the sweeper (``expires < now`` expires), so a reconcile in that millisecond must
    keep it too (``rules.rebuild_from_sql``). A rebuild that kept only ``expires_ms > now_ms`` returned the
    units to the sale while SQL said reserved and payable; another buyer could take them, and the on-time
    payment was then refunded (``late_payment_sold_out``)."""
    replay(
        redis_url,
        [
            ("reserve", {"viewer": 0, "qty": 1}),
            ("advance_clock", {"step": "to_last_ms_of_a_window", "pick": 0}),
            ("restart", {"how": "operator_reconciles"}),
        ],
    )


def test_an_on_time_payment_is_honoured_after_redis_lost_its_data(redis_url: str) -> None:
    """When Redis lost its data (sentinel gone, sale not yet rebuilt by the next buy or sweep),
    ``rereserve`` answers ``no_sale``; the payment path must rebuild the sale from SQL (as the buy path
    does) and honour the payment, made within its window while SQL still holds its units, instead of
    refunding it (``late_payment_no_sale``)."""
    replay(
        redis_url,
        [
            ("buy_and_pay", {"viewer": 0, "qty": 1, "then": "checkout_only"}),
            ("restart", {"how": "redis_lost_app_keeps_running"}),
            ("payment_provider", {"does": "send_succeeded", "pick": 0}),
        ],
    )


def test_a_crash_between_the_sql_and_redis_halves_of_a_refund_heals(redis_url: str) -> None:
    """The real ``OrderService.refund`` commits SQL (refunded, restock) and dies before ``inventory.refund``
    (a fault point of ``FaultyInventory``). The note it took in Redis before its commit
    (``Inventory.begin_refund``) must be there after the restart, and the sweeper must apply the refund
    from SQL after the grace: without the note the paid record stayed in Redis, and the units (and the
    buyer's per-buyer limit) stayed held until an operator ran a reconcile (SPEC §2.5: no stock leaks for
    longer than the window plus a small grace). A refund that skips ``begin_refund`` fails here, at the
    first check after the crash."""
    replay(
        redis_url,
        [
            ("buy_and_pay", {"viewer": 0, "qty": 1, "then": "paid"}),
            ("crash", {"where": "mid_refund", "viewer": 0, "pick": 0, "restock": True}),
            ("provider_retries_then_time_passes", {}),
        ],
    )


def test_the_real_services_die_at_each_fault_point_and_everything_heals(redis_url: str) -> None:
    """Every crash point once, in one run, on the real services: a buy that dies after its Redis reserve,
    a cancel, a webhook (after its Redis half, before its commit; its redelivery is then applied), a
    refund (restock) and a sweep (after its SQL pass) that die between their two halves. After each the
    stores must be as the model says; at the end, every unit not paid is back on sale."""
    replay(
        redis_url,
        [
            ("reserve", {"viewer": 0, "qty": 1}),
            ("crash", {"where": "mid_cancel", "viewer": 0, "pick": 0, "restock": False}),
            ("buy_and_pay", {"viewer": 1, "qty": 1, "then": "checkout_only"}),
            ("crash", {"where": "mid_payment", "viewer": 0, "pick": 0, "restock": False}),
            ("payment_provider", {"does": "deliver_prepared", "pick": 0}),  # the redelivery: paid
            ("crash", {"where": "mid_refund", "viewer": 0, "pick": 0, "restock": True}),
            ("reserve", {"viewer": 2, "qty": 1}),
            ("advance_clock", {"step": "past_window", "pick": 0}),
            ("crash", {"where": "mid_sweep", "viewer": 0, "pick": 0, "restock": False}),  # dies at release
            ("crash", {"where": "mid_sweep", "viewer": 0, "pick": 0, "restock": False}),  # at active_cards
            ("crash", {"where": "after_redis_reserve", "viewer": 3, "pick": 0, "restock": False}),
            ("provider_retries_then_time_passes", {}),
        ],
        stock=4,
    )
