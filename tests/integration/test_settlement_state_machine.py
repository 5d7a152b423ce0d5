"""A stateful property test of settlement (SPEC §9, docs/leaders.md) through the HTTP contract.

Hypothesis drives the real app (``LiveServer``: uvicorn, the real Redis, a fresh SQLite file or PostgreSQL
schema per test) over HTTP; nothing is mocked. Time is an input: the server reads a manual clock that only
the rules move (forward; each example starts where the last one left it). One server per test keeps the
examples fast; each example is a new host, a shop of its own, and reads only its own rows.

Each example sets up one host with two live rooms, a card in each (one with its own ``commission_bps``,
one without), five signed-in customers of whom two are leaders (one with their own rate), maybe a shop
rate (the server's default is 1000 bps; bindings last 10 days on SQLite, for ever on PostgreSQL), and
lets its first customers in through some code. Rules: a customer joins a room through a leader's
code, another customer's share code or the room's invite (as ``invite`` or as ``ref``); buys (and maybe
pays at once); pays a reservation (on time, or refused once it expired); the host refunds part or the
rest of a paid order (restock only with the refund that completes it; invalid refunds are refused with
422 and change nothing); pays a promoter out up to now or an earlier instant (sometimes the same request
twice, or twice at once); suspends or resumes a leader; sets a card's or the shop's rate; time passes
(hours, past a reservation, past the after-sale window, to the exact end of an order's window).

A reference model (``Model``) predicts bindings, every ledger row (order, kind, amount, time, promoter,
and the payout that paid it) and every payout. After every step the ledger, payouts and orders are read
from SQL and checked, model-free, against the invariants of issue 12's done-when:

- for every promoter: ``net == accrued - clawed_back`` and equals the ledger's raw sum; ``paid_out`` ==
  the sum of their payouts' amounts == the sum of their rows that name a payout; ``paid_out`` ≤ the net
  of their rows of orders past the after-sale window;
- every row's order was paid, at most one accrual per order, an order's clawbacks never exceed its
  accrual, no row credits the buyer of its order;
- ``GET /api/commissions`` (whole ledger and a period) and ``GET /api/me`` of each promoter equal the sums
  over the ledger;

and then the ledger and payouts are compared with the model's.

Sizes: ``LIVECART_HYPOTHESIS_EXAMPLES`` (default 25; PostgreSQL runs a third of them) examples of
``LIVECART_HYPOTHESIS_STEPS`` (default 25) steps. Redis: ``LIVECART_TEST_REDIS_URL``, PostgreSQL:
``LIVECART_TEST_PG_URL`` (see ``tests/conftest.py``), flushed / recreated before each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import event as hypothesis_event
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

from base.clock import iso
from live.models import Room, Viewer
from loadtests.harness import auth, new_card, new_host, new_phone, new_room, ok
from shop.models import Commission, Order, Payout
from tests.conftest import REDIS_URL, LiveServer, fresh_database, make_settings
from tests.shop_api import ADDRESS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("LIVECART_HYPOTHESIS_EXAMPLES", "25"))
STEPS = int(os.environ.get("LIVECART_HYPOTHESIS_STEPS", "25"))

START_MS = 1_800_000_000_000  # 2027-01-15: any fixed instant, the clock is an input
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
AFTER_SALE_DAYS = 7
BINDING_DAYS = 10.0  # on SQLite: two weeks pass, and a binding lapses (PostgreSQL: 0, for ever)
DEFAULT_BPS = 1000
WINDOW_MS = AFTER_SALE_DAYS * DAY_MS
RESERVE_S = 300
CUSTOMERS = 5
LEADERS = 2
#: The customer each leader is: the last ones, so that a pick of 0 (Hypothesis's favourite) is a plain buyer.
LEADER_CUSTOMER = [CUSTOMERS - LEADERS + i for i in range(LEADERS)]
PICK = st.integers(min_value=0, max_value=255)  # an index into a list of the model, modulo its length
WHO = st.integers(0, CUSTOMERS - 1)


def note(text: str) -> None:
    """Shown with a failing example; a no-op when a regression test replays rules by hand."""
    if currently_in_test_context():
        hypothesis_note(text)


def event(text: str) -> None:
    """Counted in Hypothesis's statistics; a no-op when a regression test replays rules by hand."""
    if currently_in_test_context():
        hypothesis_event(text)


class ManualClock:
    """The ``Clock`` the server reads; only the rules move it."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms


# -- the reference model ---------------------------------------------------------------------------------


@dataclass
class MOrder:
    id: str
    buyer: int
    card: int
    amount: int
    created_ms: int
    expires_ms: int
    promoter: int | None  #: whom the buyer was bound to when the order was placed
    status: str = "reserved"  # reserved, paid, refunded, lapsed (never paid)
    paid_ms: int | None = None
    refunded: int = 0
    accrued: int | None = None  #: the accrual row's amount, if one was written
    clawed: int = 0


@dataclass
class MRow:
    order_id: str
    kind: str
    amount: int
    created_ms: int
    promoter: int
    payout: tuple[int, int] | None = None  #: (promoter, up_to_ms) of the payout that paid it


@dataclass
class MPayout:
    promoter: int
    up_to_ms: int
    amount: int
    rows: int
    id: str = ""


@dataclass
class Model:
    binding_days: float
    default_bps: int
    shop_bps: int | None
    card_bps: list[int | None]
    card_price: list[int]
    card_room: list[int]
    leader_bps: list[int | None]
    suspended: list[bool] = field(default_factory=lambda: [False] * LEADERS)
    #: customer → [(promoter, bound_ms)], oldest first
    bindings: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    orders: list[MOrder] = field(default_factory=list)
    rows: list[MRow] = field(default_factory=list)
    payouts: dict[tuple[int, int], MPayout] = field(default_factory=dict)

    def lasts(self, bound_ms: int, at_ms: int) -> bool:
        return bound_ms <= at_ms and (self.binding_days == 0 or at_ms < bound_ms + self.binding_days * DAY_MS)

    def bind(self, customer: int, promoter: int, now: int) -> None:
        """First touch: a binding in force stays; a lapsed one is replaced; never oneself."""
        made = self.bindings.setdefault(customer, [])
        if made and self.lasts(made[-1][1], now):
            return
        if promoter != customer:
            made.append((promoter, now))

    def bound_to(self, customer: int, at_ms: int) -> int | None:
        made = [b for b in self.bindings.get(customer, []) if b[1] <= at_ms]
        if not made or not self.lasts(made[-1][1], at_ms):
            return None
        return made[-1][0]

    def rate(self, card: int, promoter: int) -> int:
        leader = self.leader_bps[LEADER_CUSTOMER.index(promoter)] if promoter in LEADER_CUSTOMER else None
        for bps in (self.card_bps[card], leader, self.shop_bps):
            if bps is not None:
                return bps
        return self.default_bps

    def pay(self, o: MOrder, now: int) -> None:
        o.status, o.paid_ms = "paid", now
        p = o.promoter
        if p is None or (p in LEADER_CUSTOMER and self.suspended[LEADER_CUSTOMER.index(p)]):
            return
        o.accrued = o.amount * self.rate(o.card, p) // 10_000
        self.rows.append(MRow(o.id, "accrual", o.accrued, now, p))

    def refund(self, o: MOrder, amount: int, now: int) -> None:
        assert o.paid_ms is not None
        o.refunded += amount
        if o.refunded == o.amount:
            o.status = "refunded"
        if o.accrued is None or o.promoter is None or now >= o.paid_ms + WINDOW_MS:
            return
        due = max(o.accrued * o.refunded // o.amount - o.clawed, 0)
        if due > 0:
            event("clawback")
            o.clawed += due
            self.rows.append(MRow(o.id, "clawback", -due, now, o.promoter))

    def payout(self, promoter: int, up_to: int, now: int) -> tuple[int, MPayout | None]:
        """(status, payout): 201 a new one, 200 the earlier one of the same request, 409 nothing owed."""
        same = self.payouts.get((promoter, up_to))
        if same is not None:
            return 200, same
        # By order: every unpaid row of the promoter's orders paid up to ``up_to`` and past their window.
        paid_ms = {o.id: o.paid_ms for o in self.orders if o.paid_ms is not None}
        rows = [
            r
            for r in self.rows
            if r.promoter == promoter
            and r.payout is None
            and paid_ms[r.order_id] <= min(up_to, now - WINDOW_MS)
        ]
        total = sum(r.amount for r in rows)
        if not rows or total <= 0:
            return 409, None
        made = MPayout(promoter, up_to, total, len(rows))
        for r in rows:
            r.payout = (promoter, up_to)
        self.payouts[(promoter, up_to)] = made
        return 201, made


# -- the machine -----------------------------------------------------------------------------------------


#: The host's ledger rows, payouts, and orders (with their buyer's customer id), as SQL holds them.
Read = tuple[list[Commission], list[Payout], dict[str, tuple[Order, str | None]]]


@dataclass
class Person:
    customer_id: str
    token: str  #: customer token
    viewers: dict[int, tuple[str, str]] = field(default_factory=dict)  #: room → (viewer token, share code)


@dataclass
class Env:
    """What every example of one test shares: the event loop, the server (its database, the real Redis) and
    its clock. Each example is a new host (a shop of its own) from the instant the clock shows."""

    loop: asyncio.AbstractEventLoop
    server: LiveServer
    client: httpx.AsyncClient
    clock: ManualClock
    binding_days: float

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@contextlib.contextmanager
def environment(database: str, tmp_path: Path) -> Iterator[Env]:
    """The server for one test: SQLite (binding for ``BINDING_DAYS``) or PostgreSQL (bindings for ever)."""
    loop = asyncio.new_event_loop()
    clock = ManualClock(START_MS)
    binding_days = BINDING_DAYS if database == "sqlite" else 0.0
    server: LiveServer | None = None
    client: httpx.AsyncClient | None = None
    try:
        url = loop.run_until_complete(fresh_database(database, tmp_path))
        settings = make_settings(
            url,
            REDIS_URL,
            tmp_path,
            commission_rate_bps=DEFAULT_BPS,
            binding_days=binding_days,
            after_sale_days=AFTER_SALE_DAYS,
            host_session_days=3650,
        )
        server = loop.run_until_complete(LiveServer(settings, clock=clock).__aenter__())
        client = httpx.AsyncClient(base_url=server.url, timeout=30)
        yield Env(loop, server, client, clock, binding_days)
    finally:
        try:
            if client is not None:
                loop.run_until_complete(client.aclose())
            if server is not None:
                loop.run_until_complete(server.__aexit__(None, None, None))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


class Settlement(RuleBasedStateMachine):
    env: Env  #: set by the test (a subclass per test)

    def __init__(self) -> None:
        super().__init__()
        self.model: Model | None = None
        self.start = self.env.clock.ms
        self.host = ""
        self.host_id = ""
        self.rooms: list[dict[str, Any]] = []
        self.cards: list[str] = []
        self.people: list[Person] = []
        self.leaders: list[dict[str, Any]] = []
        self.checks = 0

    # -- plumbing ---------------------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.env.run(coro)

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    @property
    def c(self) -> httpx.AsyncClient:
        return self.env.client

    @property
    def clock(self) -> ManualClock:
        return self.env.clock

    @property
    def now(self) -> int:
        return self.clock.ms

    def customer_of(self, customer_id: str | None) -> int:
        ids = [p.customer_id for p in self.people]
        assert customer_id in ids, f"a ledger row or payout names {customer_id}, none of the shop's promoters"
        return ids.index(customer_id)

    # -- set-up -----------------------------------------------------------------------------------------

    @initialize(
        shop_bps=st.sampled_from([None, 700, 0]),
        card_bps=st.sampled_from([1500, 333, 0, 10_000]),
        leader_bps=st.sampled_from([2500, 501, 0]),
        prices=st.tuples(st.sampled_from([990, 1999, 1]), st.sampled_from([1000, 333, 7])),
        entries=st.lists(
            st.tuples(st.integers(0, 1), st.sampled_from(["leader", "share", "leader", "invite"]), PICK),
            min_size=3,
            max_size=4,
        ),
    )
    def set_up(
        self,
        shop_bps: int | None,
        card_bps: int,
        leader_bps: int,
        prices: tuple[int, int],
        entries: list[tuple[int, str, int]] = [],  # noqa: B006 (never changed)
    ) -> None:
        """The shop; then its first customers (0, 1, ...) come in, each into a room through some code."""
        self.model = Model(
            binding_days=self.env.binding_days,
            default_bps=DEFAULT_BPS,
            shop_bps=shop_bps,
            card_bps=[card_bps, None],
            card_price=list(prices),
            card_room=[0, 1],
            leader_bps=[leader_bps, None],
        )
        self.run(self._set_up())
        note(f"set up: {self.m}")
        for who, (room, via, pick) in enumerate(entries):
            self.join(who=who, room=room, via=via, pick=pick, as_ref=bool(pick % 2))

    async def _set_up(self) -> None:
        c, m = self.c, self.m
        self.host = await new_host(c, "主播")
        self.rooms = [await new_room(c, self.host, "第一场"), await new_room(c, self.host, "第二场")]
        self.host_id = (await ok(await c.get("/api/shop", headers=self.h)))["id"]
        if m.shop_bps is not None:
            shop = await ok(await c.patch("/api/shop", json={"commission_bps": m.shop_bps}, headers=self.h))
            assert shop["commission_bps"] == m.shop_bps
        for i in range(2):
            _, card = await new_card(
                c,
                self.host,
                self.rooms[m.card_room[i]]["id"],
                stock=100_000,
                price=m.card_price[i],
                per_user_limit=10_000,
                reserve_seconds=RESERVE_S,
            )
            if m.card_bps[i] is not None:
                patched = await ok(
                    await c.patch(
                        f"/api/cards/{card}", json={"commission_bps": m.card_bps[i]}, headers=self.h
                    )
                )
                assert patched["commission_bps"] == m.card_bps[i]
            self.cards.append(card)
        for _ in range(CUSTOMERS):
            self.people.append(await self._sign_in(new_phone()))
        for i in range(LEADERS):
            who = self.people[LEADER_CUSTOMER[i]]
            body: dict[str, Any] = {"customer_id": who.customer_id, "name": f"团长{i}"}
            if m.leader_bps[i] is not None:
                body["commission_bps"] = m.leader_bps[i]
            self.leaders.append(await ok(await c.post("/api/leaders", json=body, headers=self.h), 201))

    async def _sign_in(self, phone: str) -> Person:
        room = self.rooms[0]["id"]
        sent = await ok(await self.c.post(f"/api/rooms/{room}/sign-in/code", json={"phone": phone}), 202)
        response = await self.c.post(
            f"/api/rooms/{room}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
        )
        for name in response.cookies:  # one client is every customer: it keeps nobody's cookie
            self.c.cookies.delete(name)
        body = await ok(response)
        return Person(body["customer_id"], body["token"])

    @property
    def h(self) -> dict[str, str]:
        return auth(self.host)

    # -- rules ------------------------------------------------------------------------------------------

    @rule(
        who=WHO,
        room=st.integers(0, 1),
        via=st.sampled_from(["leader", "share", "leader", "invite"]),
        pick=PICK,
        as_ref=st.booleans(),
    )
    def join(self, who: int, room: int, via: str, pick: int, as_ref: bool) -> None:
        m, person = self.m, self.people[who]
        code: str | None = None
        promoter: int | None = None
        binds = True
        if via == "leader":
            leader = pick % LEADERS
            promoter, code = LEADER_CUSTOMER[leader], self.leaders[leader]["code"]
            binds = not m.suspended[leader]
        elif via == "share":
            sharers = [i for i, p in enumerate(self.people) if room in p.viewers]
            if sharers:
                promoter = sharers[pick % len(sharers)]
                code = self.people[promoter].viewers[room][1]
                if promoter in LEADER_CUSTOMER:  # a suspended leader binds nobody, by their share code too
                    binds = not m.suspended[LEADER_CUSTOMER.index(promoter)]
        invite = self.rooms[room]["invite_token"]
        body: dict[str, Any] = {"invite": invite, "name": f"买家{who}"}
        if code is not None:
            body["ref" if as_ref else "invite"] = code
        note(f"join: customer {who} into room {room} via {via} {promoter} ({'ref' if as_ref else 'invite'})")
        v = self.run(self._post(f"/api/rooms/{self.rooms[room]['id']}/join", body, auth(person.token)))
        if room in person.viewers:
            assert person.viewers[room][1] == v["share_code"], "a returning customer got another viewer"
        else:
            person.viewers[room] = (v["token"], v["share_code"])
        if promoter is not None and binds:
            m.bind(who, promoter, self.now)

    async def _post(
        self, path: str, body: dict[str, Any] | None, headers: dict[str, str], status: Any = (200, 201)
    ) -> Any:
        return await ok(await self.c.post(path, json=body, headers=headers), status)

    def _buyers(self) -> list[tuple[int, int]]:
        """(customer, card) for every card a customer has joined the room of; those bound to someone first."""
        m = self.m
        found = [
            (i, card) for i, p in enumerate(self.people) for card in (0, 1) if m.card_room[card] in p.viewers
        ]
        return sorted(found, key=lambda pair: m.bound_to(pair[0], self.now) is None)

    @precondition(lambda self: self.model is not None and self._buyers())
    @rule(pick=PICK, qty=st.integers(1, 3), pay_now=st.booleans())
    def buy(self, pick: int, qty: int, pay_now: bool) -> None:
        m = self.m
        buyers = self._buyers()
        who, card = buyers[pick % len(buyers)]
        person, room = self.people[who], m.card_room[card]
        headers = {**auth(person.viewers[room][0]), "Idempotency-Key": uuid.uuid4().hex}
        order = self.run(self._post(f"/api/cards/{self.cards[card]}/orders", {"quantity": qty}, headers, 201))
        promoter = m.bound_to(who, self.now)
        o = MOrder(
            id=order["id"],
            buyer=who,
            card=card,
            amount=qty * m.card_price[card],
            created_ms=self.now,
            expires_ms=self.now + RESERVE_S * 1000,
            promoter=promoter if promoter != who else None,
        )
        assert order["amount"] == o.amount
        m.orders.append(o)
        note(f"buy: customer {who} order {o.id} of {o.amount} on card {card}, promoter {o.promoter}")
        if pay_now:
            self._pay(o)

    def _pay(self, o: MOrder) -> None:
        token = self.people[o.buyer].viewers[self.m.card_room[o.card]][0]
        response = self.run(
            self.c.post(f"/api/orders/{o.id}/pay", json={"address": ADDRESS}, headers=auth(token))
        )
        if self.now > o.expires_ms:
            assert response.status_code == 409, f"an expired reservation was payable: {response.text}"
            assert response.json()["error"] in ("order_expired", "order_not_payable"), response.text
            o.status = "lapsed"
            note(f"pay: order {o.id} lapsed")
            return
        payment = self.run(ok(response))
        done = self.run(
            self._post(f"/api/payments/dev/{payment['payment_id']}/complete", {"outcome": "paid"}, {})
        )
        assert done["order"]["status"] == "paid", done
        self.m.pay(o, self.now)
        note(f"pay: order {o.id} paid, accrued {o.accrued}")

    @precondition(lambda self: self.model is not None and any(o.status == "reserved" for o in self.m.orders))
    @rule(pick=PICK)
    def pay(self, pick: int) -> None:
        waiting = [o for o in self.m.orders if o.status == "reserved"]
        self._pay(waiting[pick % len(waiting)])

    @precondition(lambda self: self.model is not None and any(o.paid_ms is not None for o in self.m.orders))
    @rule(
        pick=PICK,
        how=st.sampled_from(["part", "rest", "rest_restock", "invalid", "done"]),
        part=st.integers(1, 10_000),
    )
    def refund(self, pick: int, how: str, part: int) -> None:
        m = self.m
        if how == "done":
            candidates = [o for o in m.orders if o.status in ("refunded", "lapsed")]
        else:
            candidates = [o for o in m.orders if o.status == "paid"]
        if not candidates:
            return
        o = candidates[pick % len(candidates)]
        left = o.amount - o.refunded
        path = f"/api/orders/{o.id}/refund"
        before = self.run(self._ledger())
        if how in ("invalid", "done"):
            # (body, status, error): more than is left, or restock with a part, breaks the refund rules;
            # an amount below 1 is refused by the request's schema; an order not paid cannot be refunded.
            tries: list[tuple[dict[str, Any], int, str]] = [({}, 409, "invalid_order_state")]
            if how == "invalid":
                tries = [
                    ({"amount": left + 1}, 422, "invalid_refund"),
                    ({"amount": 0}, 422, "invalid_request"),
                ]
                if left > 1:
                    tries.append(({"amount": 1 + part % (left - 1), "restock": True}, 422, "invalid_refund"))
            for body, status, error in tries:
                response = self.run(self.c.post(path, json=body, headers=self.h))
                assert (response.status_code, response.json().get("error")) == (status, error), (
                    body,
                    response.text,
                )
            assert self.run(self._ledger()) == before, "a refused refund changed the ledger"
            note(f"refund: refused {[t[0] for t in tries]} of order {o.id}")
            return
        if how == "part" and left > 1:
            amount: int | None = 1 + part % (left - 1)
            body = {"amount": amount}
        else:
            amount = None
            body = {"restock": how == "rest_restock"}
        done = self.run(self._post(path, body, self.h))
        m.refund(o, amount if amount is not None else left, self.now)
        assert (done["status"], done["refunded_amount"]) == (o.status, o.refunded), done
        note(f"refund: {body} of order {o.id}: refunded {o.refunded}/{o.amount}, clawed {o.clawed}")

    def _up_to(self, when: str, pick: int, hours: int) -> int | None:
        if when == "default":
            return None
        if when == "row" and self.m.rows:  # a row's instant, or the millisecond before it
            return self.m.rows[pick // 2 % len(self.m.rows)].created_ms - pick % 2
        if when == "hours_ago":
            return self.now - hours * HOUR_MS
        return self.now

    @precondition(lambda self: self.model is not None and any(o.paid_ms is not None for o in self.m.orders))
    @rule(
        whom=PICK,
        when=st.sampled_from(["now", "default", "row", "hours_ago"]),
        pick=PICK,
        hours=st.integers(1, 24 * 9),
        times=st.sampled_from(["once", "twice", "at_once"]),
    )
    def payout(self, whom: int, when: str, pick: int, hours: int, times: str) -> None:
        earning = sorted({r.promoter for r in self.m.rows})  # mostly someone with ledger rows
        who = earning[whom % len(earning)] if earning and whom % 4 else whom % CUSTOMERS
        up_to = self._up_to(when, pick, hours)
        body: dict[str, Any] = {"promoter_id": self.people[who].customer_id}
        if up_to is not None:
            body["up_to"] = iso(up_to)
        instant = self.now if up_to is None else up_to
        if times == "at_once":
            answers = self.run(self._twice_at_once("/api/payouts", body))
        else:
            answers = [self.run(self.c.post("/api/payouts", json=body, headers=self.h))]
            if times == "twice":
                answers.append(self.run(self.c.post("/api/payouts", json=body, headers=self.h)))
        statuses = [r.status_code for r in answers]
        note(f"payout: customer {who} up to {instant - self.start} ({times}): {[r.text for r in answers]}")
        expected, made = self.m.payout(who, instant, self.now)
        event(f"payout {times}: {expected}")
        if expected == 409:
            assert statuses == [409] * len(answers), [r.text for r in answers]
            assert all(r.json()["error"] == "nothing_owed" for r in answers)
            return
        assert made is not None
        wanted = [expected] + [200] * (len(answers) - 1)
        assert sorted(statuses) == sorted(wanted), ("exactly one request pays", [r.text for r in answers])
        bodies = [r.json() for r in answers]
        if not made.id:
            made.id = bodies[0]["id"]
        for b in bodies:
            assert (b["id"], b["promoter_id"], b["amount"], b["rows"], b["up_to"]) == (
                made.id,
                self.people[who].customer_id,
                made.amount,
                made.rows,
                iso(instant),
            ), b

    async def _twice_at_once(self, path: str, body: dict[str, Any]) -> list[httpx.Response]:
        return list(await asyncio.gather(*(self.c.post(path, json=body, headers=self.h) for _ in range(2))))

    @precondition(lambda self: self.model is not None and bool(self.m.orders))
    @rule(leader=st.integers(0, LEADERS - 1))
    def suspend_or_resume(self, leader: int) -> None:
        m = self.m
        m.suspended[leader] = not m.suspended[leader]
        body = {"suspended": m.suspended[leader]}
        out = self.run(self._patch(f"/api/leaders/{self.leaders[leader]['id']}", body))
        assert out["suspended"] == m.suspended[leader]
        note(f"leader {leader} suspended: {m.suspended[leader]}")

    async def _patch(self, path: str, body: dict[str, Any]) -> Any:
        return await ok(await self.c.patch(path, json=body, headers=self.h))

    @precondition(lambda self: self.model is not None and bool(self.m.orders))
    @rule(of=st.sampled_from(["card0", "card1", "shop"]), bps=st.sampled_from([None, 0, 1234, 10_000]))
    def set_rate(self, of: str, bps: int | None) -> None:
        if of == "shop":
            out = self.run(self._patch("/api/shop", {"commission_bps": bps}))
            self.m.shop_bps = bps
        else:
            card = int(of[-1])
            out = self.run(self._patch(f"/api/cards/{self.cards[card]}", {"commission_bps": bps}))
            self.m.card_bps[card] = bps
        assert out["commission_bps"] == bps
        note(f"{of} rate {bps}")

    @rule(
        step=st.sampled_from(["hours", "past_reservation", "past_window", "window_end"]),
        n=st.integers(1, 48),
        pick=PICK,
    )
    def advance(self, step: str, n: int, pick: int) -> None:
        if step == "hours":
            self.clock.ms += n * HOUR_MS
        elif step == "past_reservation":
            self.clock.ms += RESERVE_S * 1000 + 1
        elif step == "past_window":
            self.clock.ms += WINDOW_MS + HOUR_MS
        else:  # the last millisecond inside an order's window, or its first one after
            paid = [o.paid_ms for o in self.m.orders if o.paid_ms is not None]
            if paid:
                end = paid[pick % len(paid)] + WINDOW_MS - (n % 2)
                self.clock.ms = max(self.clock.ms, end)
        note(f"clock at +{self.now - self.start} ms")

    @precondition(lambda self: self.model is not None and bool(self.m.rows))
    @rule(a=st.integers(0, 40 * DAY_MS), b=st.integers(0, 40 * DAY_MS))
    def report_for_a_period(self, a: int, b: int) -> None:
        lo, hi = self.start + min(a, b), self.start + max(a, b)
        self.run(self._check_report(lo, hi))

    # -- checks -----------------------------------------------------------------------------------------

    async def _ledger(self) -> list[tuple[Any, ...]]:
        async with self.env.server.state.sessions() as session:
            found = await session.execute(
                select(Commission).where(Commission.host_id == self.host_id).order_by(Commission.id)
            )
            return [
                (c.id, c.order_id, c.kind, c.amount, c.created_ms, c.promoter_customer_id, c.payout_id)
                for c in found.scalars()
            ]

    async def _read(self) -> Read:
        async with self.env.server.state.sessions() as session:
            rows = list(
                (
                    await session.execute(select(Commission).where(Commission.host_id == self.host_id))
                ).scalars()
            )
            payouts = list(
                (await session.execute(select(Payout).where(Payout.host_id == self.host_id))).scalars()
            )
            orders = {
                o.id: (o, buyer)
                for o, buyer in (
                    await session.execute(
                        select(Order, Viewer.customer_id)
                        .join(Viewer, Viewer.id == Order.buyer_id)
                        .join(Room, Room.id == Order.room_id)
                        .where(Room.host_id == self.host_id)
                    )
                ).all()
            }
        return rows, payouts, orders

    @staticmethod
    def _figures(
        rows: list[Commission], orders: dict[str, tuple[Order, str | None]], now: int
    ) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            f = out.setdefault(
                str(r.promoter_customer_id),
                dict.fromkeys(
                    ("orders_paid", "gmv", "accrued", "clawed_back", "net", "paid_out", "owed", "payable"), 0
                ),
            )
            order = orders[r.order_id][0]
            if r.kind == "accrual":
                f["orders_paid"] += 1
                f["gmv"] += order.amount
                f["accrued"] += r.amount
            else:
                f["clawed_back"] -= r.amount
            f["net"] += r.amount
            if r.payout_id is not None:
                f["paid_out"] += r.amount
            elif order.paid_ms is not None and order.paid_ms <= now - WINDOW_MS:
                f["payable"] += r.amount
            f["owed"] = f["net"] - f["paid_out"]
        return out

    async def _check_report(self, lo: int | None, hi: int | None, read: Read | None = None) -> None:
        rows, _, orders = read or await self._read()
        inside = [r for r in rows if (lo is None or r.created_ms >= lo) and (hi is None or r.created_ms < hi)]
        expected = self._figures(inside, orders, self.now)
        params = {k: iso(v) for k, v in (("from", lo), ("to", hi)) if v is not None}
        lines = await ok(await self.c.get("/api/commissions", params=params, headers=self.h))
        got = {
            line["promoter_id"]: {k: line[k] for k in expected.get(line["promoter_id"], {})} for line in lines
        }
        assert got == expected, f"the report over [{lo}, {hi}) is not the ledger's sums"

    @invariant()
    def ledger_holds_together(self) -> None:
        if self.model is None:
            return
        self.run(self._check_everything())

    async def _check_everything(self) -> None:
        m, now = self.m, self.now
        read = await self._read()
        rows, payouts, orders = read
        by_order: dict[str, list[Commission]] = {}
        for r in rows:
            order, buyer = orders[r.order_id]
            assert order.paid_ms is not None, f"row {r.id}: its order {order.id} was never paid"
            assert r.promoter_customer_id is not None and r.promoter_customer_id != buyer, (
                f"row {r.id} credits the buyer"
            )
            by_order.setdefault(r.order_id, []).append(r)
        for oid, its in by_order.items():
            accruals = [r for r in its if r.kind == "accrual"]
            assert len(accruals) == 1, f"order {oid}: {len(accruals)} accruals"
            clawed = -sum(r.amount for r in its if r.kind == "clawback")
            assert 0 <= clawed <= accruals[0].amount, (
                f"order {oid}: clawed back {clawed} of {accruals[0].amount}"
            )
        ever_paid = {o.id for o in m.orders if o.paid_ms is not None}
        assert set(by_order) <= ever_paid, "rows of orders never paid"

        figs = self._figures(rows, orders, now)
        payout_sums: dict[str, int] = {}
        for p in payouts:
            payout_sums[p.promoter_id] = payout_sums.get(p.promoter_id, 0) + p.amount
        for key in set(figs) | set(payout_sums):
            f = figs.get(key, {"net": 0, "accrued": 0, "clawed_back": 0, "paid_out": 0})
            raw = sum(r.amount for r in rows if r.promoter_customer_id == key)
            assert f["net"] == f["accrued"] - f["clawed_back"] == raw
            assert f["paid_out"] == payout_sums.get(key, 0), (
                f"{key}: paid out {f['paid_out']} by rows, payouts say {payout_sums.get(key, 0)}"
            )
            settled = sum(
                r.amount
                for r in rows
                if r.promoter_customer_id == key
                and (paid := orders[r.order_id][0].paid_ms) is not None
                and paid <= now - WINDOW_MS
            )
            assert f["paid_out"] <= settled, (
                f"{key}: paid out {f['paid_out']} > {settled}, "
                "the net of their rows of orders past the after-sale window"
            )

        lines = await ok(await self.c.get("/api/commissions", headers=self.h))
        assert {
            line["promoter_id"]: {k: line[k] for k in figs[line["promoter_id"]]}
            for line in lines
            if line["promoter_id"] in figs
        } == figs
        assert {line["promoter_id"] for line in lines} == set(figs)
        await self._check_report(self.start + DAY_MS, now - 2 * DAY_MS, read)
        self.checks += 1
        person = self.people[self.checks % CUSTOMERS]  # one customer a step: each every fifth step
        me = await ok(await self.c.get("/api/me", headers=auth(person.token)))
        mine = figs.get(person.customer_id, {})
        expected = {
            k: mine.get(k, 0) for k in ("accrued", "clawed_back", "net", "paid_out", "owed", "payable")
        }
        assert me["earnings"] == expected, f"/api/me of {person.customer_id}"

        # The model: every row, the payout that paid it, and every payout.
        ids = {made.id: key for key, made in m.payouts.items()}
        real = sorted(
            (
                r.order_id,
                r.kind,
                r.amount,
                r.created_ms,
                self.customer_of(r.promoter_customer_id),
                ids.get(r.payout_id or "", r.payout_id),
            )
            for r in rows
        )
        predicted = sorted((r.order_id, r.kind, r.amount, r.created_ms, r.promoter, r.payout) for r in m.rows)
        assert real == predicted, "the ledger is not the model's"
        assert sorted(
            (self.customer_of(p.promoter_id), p.up_to_ms, p.amount, p.rows, p.id) for p in payouts
        ) == sorted(
            (made.promoter, made.up_to_ms, made.amount, made.rows, made.id) for made in m.payouts.values()
        ), "the payouts are not the model's"
        for o in m.orders:
            real_order = orders[o.id][0]
            assert (real_order.paid_ms, real_order.refunded_amount) == (o.paid_ms, o.refunded), o


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_settlement_state_machine(database: str, redis_url: str, tmp_path: Path) -> None:
    assert redis_url == REDIS_URL  # the fixture skips when Redis is down, and flushes it
    with environment(database, tmp_path) as env:
        machine = type(f"Settlement_{database}", (Settlement,), {"env": env})
        run_state_machine_as_test(
            machine,
            settings=hsettings(
                max_examples=EXAMPLES if database == "sqlite" else max(1, EXAMPLES // 3),
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


def replay(database: str, tmp_path: Path, steps: list[Step], **setup: Any) -> None:
    """Run rules of the machine by hand, checking the invariants after each, as Hypothesis would."""
    with environment(database, tmp_path) as env:
        machine = type(f"Settlement_{database}", (Settlement,), {"env": env})()
        machine.set_up(
            **({"shop_bps": None, "card_bps": 1500, "leader_bps": 2500, "prices": (990, 1000)} | setup)
        )
        machine.ledger_holds_together()
        for name, kwargs in steps:
            getattr(machine, name)(**kwargs)
            machine.ledger_holds_together()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_payout_up_to_an_earlier_instant_pays_an_orders_accrual_and_clawback_together(
    database: str, redis_url: str, tmp_path: Path
) -> None:
    """An order paid at t0 accrues 297 (1980 at the card's 15 %); a partial refund an hour later claws back
    75 inside the after-sale window. Eight days on, a payout ``up_to`` t0 (an instant between the two rows)
    once paid the accrual alone, and left the clawback unpaid: the promoter had been paid 297 of a net of
    222 on an order whose commission was final. A payout takes an order's rows together: 222."""
    replay(
        database,
        tmp_path,
        [
            ("join", {"who": 2, "room": 0, "via": "leader", "pick": 0, "as_ref": False}),
            ("buy", {"pick": 0, "qty": 2, "pay_now": True}),  # customer 2, card 0
            ("advance", {"step": "hours", "n": 1, "pick": 0}),
            ("refund", {"pick": 0, "how": "part", "part": 500}),
            ("advance", {"step": "past_window", "n": 1, "pick": 0}),
            ("payout", {"whom": 1, "when": "row", "pick": 0, "hours": 1, "times": "once"}),  # leader 0
        ],
    )
