"""团长 across shows (SPEC §9) through the HTTP contract, on SQLite and PostgreSQL with the real Redis:
a leader's one code brings customers into every show of the host and binds them; commission accrues at the
card's, leader's or shop's rate and is clawed back in proportion; payouts pay each ledger row once; the
report sums to the ledger; nobody sees anyone else's customers or money.

Time is an input where the after-sale window matters: the server runs on a clock the test moves
(``ShiftedClock``), so "eight days later" is one call.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from live.models import Binding
from loadtests.harness import new_card, new_host, new_phone, new_room
from shop.models import Commission
from tests.conftest import LiveServer, make_settings
from tests.shop_api import ADDRESS, Buyer, auth, ok

DAY_MS = 24 * 3600 * 1000


class ShiftedClock:
    """The system's time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(datetime.now(tz=UTC).timestamp() * 1000) + self.offset_ms

    def advance_days(self, days: float) -> None:
        self.offset_ms += int(days * DAY_MS)


@dataclass
class Shop:
    token: str
    rooms: list[dict[str, Any]]


@dataclass
class Person:
    customer_id: str
    token: str  #: customer token
    phone: str


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def server(
    database_url: str, redis_url: str, tmp_path: Path, clock: ShiftedClock
) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path), clock=clock) as live:
        yield live


async def person(client: httpx.AsyncClient, room_id: str, phone: str | None = None) -> Person:
    phone = phone or new_phone()
    sent = await ok(await client.post(f"/api/rooms/{room_id}/sign-in/code", json={"phone": phone}), 202)
    response = await client.post(
        f"/api/rooms/{room_id}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
    )
    for name in response.cookies:
        client.cookies.delete(name)
    body = await ok(response)
    return Person(body["customer_id"], body["token"], phone)


async def enter(
    client: httpx.AsyncClient,
    who: Person,
    room: dict[str, Any],
    invite: str | None = None,
    name: str = "买家",
) -> Buyer:
    body = {"invite": invite or room["invite_token"], "name": name}
    v = await ok(await client.post(f"/api/rooms/{room['id']}/join", json=body, headers=auth(who.token)))
    return Buyer(v["viewer_id"], v["token"], v["share_code"], who.token)


async def buy_and_pay(
    client: httpx.AsyncClient, card_id: str, buyer: Buyer, quantity: int = 1
) -> dict[str, Any]:
    headers = {**auth(buyer.token), "Idempotency-Key": uuid.uuid4().hex}
    order = await ok(
        await client.post(f"/api/cards/{card_id}/orders", json={"quantity": quantity}, headers=headers), 201
    )
    payment = await ok(
        await client.post(
            f"/api/orders/{order['id']}/pay", json={"address": ADDRESS}, headers=auth(buyer.token)
        )
    )
    done = await ok(
        await client.post(f"/api/payments/dev/{payment['payment_id']}/complete", json={"outcome": "paid"})
    )
    assert done["order"]["status"] == "paid"
    return done["order"]  # type: ignore[no-any-return]


async def shop_with_two_shows(client: httpx.AsyncClient) -> Shop:
    token = await new_host(client, "主播")
    live = await new_room(client, token, "第一场")
    later = await new_room(client, token, "第二场", live=False)
    return Shop(token, [live, later])


async def ledger(server: LiveServer) -> list[Commission]:
    async with server.state.sessions() as session:
        return list((await session.execute(select(Commission).order_by(Commission.created_ms))).scalars())


async def make_leader(client: httpx.AsyncClient, shop: Shop, who: Person, **extra: Any) -> dict[str, Any]:
    body = {"customer_id": who.customer_id, **extra}
    return await ok(await client.post("/api/leaders", json=body, headers=auth(shop.token)), 201)  # type: ignore[no-any-return]


async def test_one_code_brings_customers_into_two_shows_and_both_accrue_to_the_leader(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    first, second = shop.rooms
    lena = await person(client, first["id"])
    leader = await make_leader(client, shop, lena, name="莉娜团长", commission_bps=1500)
    assert leader["name"] == "莉娜团长" and leader["commission_bps"] == 1500
    assert leader["url"].endswith(f"/j/{leader['code']}") and leader["customers"] == 0

    # Show one: a card at the leader's rate; show two (scheduled, later live): a card with its own rate.
    _, plain = await new_card(client, shop.token, first["id"], stock=10, price=1000)
    ann, bob = await person(client, first["id"]), await person(client, first["id"])
    ann_in_first = await enter(client, ann, first, invite=leader["code"])
    bob_in_first = await enter(client, bob, first, invite=leader["code"])
    order_one = await buy_and_pay(client, plain, ann_in_first)
    await buy_and_pay(client, plain, bob_in_first, quantity=1)

    # The same code admits to the scheduled show too; by then Ann comes in through the room's own invite.
    ann_in_second = await enter(client, ann, second)
    await ok(await client.post(f"/api/rooms/{second['id']}/live", headers=auth(shop.token)))
    product = await ok(
        await client.post("/api/products", json={"name": "茶", "price": 3000}, headers=auth(shop.token))
    )
    card = await ok(
        await client.post(
            f"/api/rooms/{second['id']}/cards",
            json={"product_id": product["id"], "price": 3000, "stock": 5, "commission_bps": 2000},
            headers=auth(shop.token),
        ),
        201,
    )
    assert card["commission_bps"] == 2000
    await ok(await client.post(f"/api/cards/{card['id']}/open", headers=auth(shop.token)))
    order_two = await buy_and_pay(client, card["id"], ann_in_second)

    rows = {(c.order_id, c.kind): c for c in await ledger(server)}
    assert rows[(order_one["id"], "accrual")].amount == 150  # 1000 at the leader's 15 %
    assert rows[(order_one["id"], "accrual")].promoter_customer_id == lena.customer_id
    assert rows[(order_two["id"], "accrual")].amount == 600  # 3000 at the card's 20 %
    assert rows[(order_two["id"], "accrual")].rate_bps == 2000
    assert {c.room_id for c in rows.values()} == {first["id"], second["id"]}

    listed = await ok(await client.get("/api/leaders", headers=auth(shop.token)))
    assert [
        (entry["id"], entry["customers"], entry["accrued"], entry["orders_paid"]) for entry in listed
    ] == [(leader["id"], 2, 150 + 150 + 600, 3)]
    report = await ok(await client.get("/api/commissions", headers=auth(shop.token)))
    assert [(line["promoter_id"], line["kind"], line["net"]) for line in report] == [
        (lena.customer_id, "leader", 900)
    ]
    stats = await ok(await client.get(f"/api/rooms/{second['id']}/stats", headers=auth(shop.token)))
    assert [
        (p["promoter_id"], p["kind"], p["viewers"], p["orders_paid"], p["commission"])
        for p in stats["promoters"]
    ] == [(lena.customer_id, "leader", 1, 1, 600)]


async def test_a_customer_bound_to_one_leader_stays_with_them_through_another_leaders_link(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    first, second = shop.rooms
    await ok(await client.post(f"/api/rooms/{second['id']}/live", headers=auth(shop.token)))
    a, b = await person(client, first["id"]), await person(client, first["id"])
    leader_a, leader_b = await make_leader(client, shop, a), await make_leader(client, shop, b)
    carol = await person(client, first["id"])
    await enter(client, carol, first, invite=leader_a["code"])
    in_second = await enter(client, carol, second, invite=leader_b["code"])  # B's link, another show
    _, card = await new_card(client, shop.token, second["id"], stock=3, price=2000)
    order = await buy_and_pay(client, card, in_second)

    (row,) = [c for c in await ledger(server) if c.order_id == order["id"]]
    assert (row.kind, row.promoter_customer_id, row.amount) == (
        "accrual",
        a.customer_id,
        200,
    )  # shop default 10 %
    async with server.state.sessions() as session:
        bound = (
            (await session.execute(select(Binding).where(Binding.customer_id == carol.customer_id)))
            .scalars()
            .all()
        )
    assert [(x.promoter_id, x.seq) for x in bound] == [(a.customer_id, 1)], "the binding moved"
    mine_b = await ok(await client.get("/api/me/customers", headers=auth(b.token)))
    assert mine_b == []
    mine_a = await ok(await client.get("/api/me/customers", headers=auth(a.token)))
    assert [(c["id"], c["orders_paid"], c["spent"], c["commission"]) for c in mine_a] == [
        (carol.customer_id, 1, 2000, 200)
    ]


async def test_nobody_earns_on_their_own_orders_nor_on_a_second_level(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=20, price=1000, per_user_limit=5)
    lena = await person(client, room["id"])
    leader = await make_leader(client, shop, lena)
    own = await enter(client, lena, room, invite=leader["code"])  # her own code: admits, binds nobody
    own_order = await buy_and_pay(client, card, own)

    carol = await person(client, room["id"])
    carol_in = await enter(client, carol, room, invite=leader["code"])  # Carol is Lena's
    dave = await person(client, room["id"])
    dave_in = await enter(client, dave, room, invite=carol_in.share_code)  # Dave is Carol's (消费商)
    carol_order = await buy_and_pay(client, card, carol_in)
    dave_order = await buy_and_pay(client, card, dave_in)
    # Carol's own share link brings Carol nothing, and she cannot bind herself.
    again = await enter(client, carol, room, invite=carol_in.share_code)
    assert again.viewer_id == carol_in.viewer_id

    by_order: dict[str, list[tuple[str | None, int]]] = {}
    for c in await ledger(server):
        by_order.setdefault(c.order_id, []).append((c.promoter_customer_id, c.amount))
    assert own_order["id"] not in by_order, "a leader earned on her own order"
    assert by_order[carol_order["id"]] == [(lena.customer_id, 100)]
    assert by_order[dave_order["id"]] == [(carol.customer_id, 100)], "second level, or not the sharer"
    report = {
        line["promoter_id"]: line
        for line in await ok(await client.get("/api/commissions", headers=auth(shop.token)))
    }
    assert (report[carol.customer_id]["kind"], report[carol.customer_id]["net"]) == ("customer", 100)
    assert report[lena.customer_id]["net"] == 100


async def test_a_partial_refund_claws_back_in_proportion_and_the_last_one_exactly(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=10, price=990, per_user_limit=3)
    lena = await person(client, room["id"])
    leader = await make_leader(client, shop, lena)
    buyer = await enter(client, await person(client, room["id"]), room, invite=leader["code"])
    order = await buy_and_pay(client, card, buyer, quantity=3)  # 2970, accrued 297
    refund = f"/api/orders/{order['id']}/refund"
    h = auth(shop.token)

    bad = await client.post(refund, json={"amount": 1000, "restock": True}, headers=h)
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_refund")
    too_much = await client.post(refund, json={"amount": 2971}, headers=h)
    assert (too_much.status_code, too_much.json()["error"]) == (422, "invalid_refund")
    assert [c.amount for c in await ledger(server)] == [297], "a refused refund changed the ledger"

    part = await ok(await client.post(refund, json={"amount": 1000}, headers=h))
    assert (part["status"], part["refunded_amount"]) == ("paid", 1000)
    assert [c.amount for c in await ledger(server)] == [297, -100]  # floor(297 x 1000 / 2970)
    part = await ok(await client.post(refund, json={"amount": 7}, headers=h))
    assert part["refunded_amount"] == 1007
    assert [c.amount for c in await ledger(server)] == [297, -100]  # floor(297 x 1007 / 2970) is still 100
    rest = await ok(await client.post(refund, json={"restock": True}, headers=h))
    assert (rest["status"], rest["refunded_amount"], rest["restocked"]) == ("refunded", 2970, True)
    rows = await ledger(server)
    assert [c.amount for c in rows] == [297, -100, -197], "a full refund takes back exactly what was accrued"
    assert len({c.refund_id for c in rows if c.kind == "clawback"}) == 2
    done = await client.post(refund, json={}, headers=h)
    assert (done.status_code, done.json()["error"]) == (409, "invalid_order_state")
    stock = await ok(await client.get(f"/api/cards/{card}", headers=h))
    assert stock["stock_left"] == 10


async def test_a_payout_pays_each_row_once_even_when_requested_twice_at_once(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=50, price=1000, per_user_limit=5)
    lena = await person(client, room["id"])
    leader = await make_leader(client, shop, lena)
    buyers = [
        await enter(client, await person(client, room["id"]), room, invite=leader["code"]) for _ in range(3)
    ]
    for b in buyers:
        await buy_and_pay(client, card, b)
    h = auth(shop.token)

    early = await client.post("/api/payouts", json={"promoter_id": lena.customer_id}, headers=h)
    assert (early.status_code, early.json()["error"]) == (409, "nothing_owed"), (
        "paid inside the after-sale window"
    )
    clock.advance_days(7.01)
    late_buyer = await enter(client, await person(client, room["id"]), room, invite=leader["code"])
    await buy_and_pay(client, card, late_buyer)  # inside its own window: not payable yet

    up_to = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC).isoformat()
    body = {"promoter_id": lena.customer_id, "up_to": up_to}
    first, second = await asyncio.gather(
        *(client.post("/api/payouts", json=body, headers=h) for _ in range(2))
    )
    assert sorted([first.status_code, second.status_code]) == [200, 201], (first.text, second.text)
    assert first.json() == second.json()
    assert (first.json()["amount"], first.json()["rows"]) == (300, 3)
    # Two different instants at once: the rows are paid by one of them, never both.
    clock.advance_days(7.01)
    bodies = [{"promoter_id": lena.customer_id, "up_to": f"2030-01-0{i}T00:00:00Z"} for i in (1, 2)]
    answers = await asyncio.gather(*(client.post("/api/payouts", json=b, headers=h) for b in bodies))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]

    rows = await ledger(server)
    assert all(c.payout_id is not None for c in rows)
    payouts = await ok(await client.get("/api/payouts", headers=h))
    assert sum(p["amount"] for p in payouts) == sum(c.amount for c in rows) == 400
    (line,) = await ok(await client.get("/api/commissions", headers=h))
    assert (line["net"], line["paid_out"], line["owed"], line["payable"]) == (400, 400, 0, 0)
    detail = await ok(await client.get(f"/api/payouts/{payouts[-1]['id']}", headers=h))
    assert sorted(i["amount"] for i in detail["items"]) == [100, 100, 100]
    transfer = await client.get("/api/payouts", params={"format": "csv"}, headers=h)
    assert lena.phone in transfer.text and transfer.headers["content-type"].startswith("text/csv")


async def test_the_report_sums_equal_the_ledger_for_any_period(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=50, price=1230, per_user_limit=5)
    lena, mo = await person(client, room["id"]), await person(client, room["id"])
    codes = [
        (await make_leader(client, shop, lena))["code"],
        (await make_leader(client, shop, mo, commission_bps=700))["code"],
    ]
    rng = random.Random(12)
    orders = []
    for i in range(8):
        buyer = await enter(client, await person(client, room["id"]), room, invite=codes[i % 2])
        orders.append(await buy_and_pay(client, card, buyer, quantity=rng.randint(1, 3)))
        clock.advance_days(rng.random())
    for order in orders[::3]:
        await ok(
            await client.post(
                f"/api/orders/{order['id']}/refund", json={"amount": 500}, headers=auth(shop.token)
            )
        )
    rows = await ledger(server)
    times = sorted(c.created_ms for c in rows)
    edges = [None, times[0], times[3], times[-1], times[-1] + 1, *rng.sample(times, 3)]
    for _ in range(12):
        start, end = rng.choice(edges), rng.choice(edges)
        params = {}
        if start is not None:
            params["from"] = datetime.fromtimestamp(start / 1000, tz=UTC).isoformat(timespec="milliseconds")
        if end is not None:
            params["to"] = datetime.fromtimestamp(end / 1000, tz=UTC).isoformat(timespec="milliseconds")
        report = await ok(await client.get("/api/commissions", params=params, headers=auth(shop.token)))
        inside = [
            c
            for c in rows
            if (start is None or c.created_ms >= start) and (end is None or c.created_ms < end)
        ]
        for who in (lena, mo):
            mine = [c for c in inside if c.promoter_customer_id == who.customer_id]
            line = next((x for x in report if x["promoter_id"] == who.customer_id), None)
            accrued = sum(c.amount for c in mine if c.kind == "accrual")
            clawed = -sum(c.amount for c in mine if c.kind == "clawback")
            if not mine:
                assert line is None
                continue
            assert line is not None
            assert (line["accrued"], line["clawed_back"], line["net"]) == (
                accrued,
                clawed,
                accrued - clawed,
            ), params
            assert line["orders_paid"] == sum(1 for c in mine if c.kind == "accrual")


async def test_a_leader_sees_only_their_own_customers_and_money_and_hosts_only_theirs(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    other = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=10, price=1000)
    a, b = await person(client, room["id"]), await person(client, room["id"])
    leader_a = await make_leader(client, shop, a)
    await make_leader(client, shop, b)
    carol = await person(client, room["id"])
    await buy_and_pay(client, card, await enter(client, carol, room, invite=leader_a["code"]))

    me_a = await ok(await client.get("/api/me", headers=auth(a.token)))
    me_b = await ok(await client.get("/api/me", headers=auth(b.token)))
    assert me_a["earnings"]["accrued"] == 100 and me_a["referred_customers"] == 1
    assert me_a["leader"]["code"] == leader_a["code"] and me_a["next_show"]["room_id"] == room["id"]
    assert me_b["earnings"]["accrued"] == 0 and me_b["referred_customers"] == 0
    assert await ok(await client.get("/api/me/customers", headers=auth(b.token))) == []
    assert await ok(await client.get("/api/me/commissions", headers=auth(b.token))) == []
    rows_a = await ok(await client.get("/api/me/commissions", headers=auth(a.token)))
    assert [(r["kind"], r["amount"], r["room_title"]) for r in rows_a] == [("accrual", 100, "第一场")]
    carol_me = await ok(await client.get("/api/me", headers=auth(carol.token)))
    assert [o["amount"] for o in carol_me["orders"]] == [1000] and carol_me["leader"] is None

    # Who may call what: hosts only their own; customers only /api/me; nobody without a token.
    h, x = auth(shop.token), auth(other.token)
    for path in (f"/api/leaders/{leader_a['id']}", f"/api/customers/{carol.customer_id}"):
        assert (await client.get(path, headers=h)).status_code == 200
        assert (await client.get(path, headers=x)).status_code == 404
    assert await ok(await client.get("/api/leaders", headers=x)) == []
    assert await ok(await client.get("/api/commissions", headers=x)) == []
    assert await ok(await client.get("/api/customers", headers=x)) == []
    stranger = await client.post("/api/leaders", json={"customer_id": carol.customer_id}, headers=x)
    assert (stranger.status_code, stranger.json()["error"]) == (404, "unknown_customer")
    foreign = await client.patch(f"/api/leaders/{leader_a['id']}", json={"suspended": True}, headers=x)
    assert foreign.status_code == 404
    pay_foreign = await client.post("/api/payouts", json={"promoter_id": a.customer_id}, headers=x)
    assert (pay_foreign.status_code, pay_foreign.json()["error"]) == (409, "nothing_owed")
    for method, path in (
        ("GET", "/api/leaders"),
        ("POST", "/api/leaders"),
        ("GET", "/api/commissions"),
        ("POST", "/api/payouts"),
        ("GET", "/api/payouts"),
        ("GET", "/api/customers"),
        ("GET", "/api/shop"),
    ):
        as_customer = await client.request(method, path, json={}, headers=auth(a.token))
        assert as_customer.status_code == 403, (method, path, as_customer.text)
        nobody = await client.request(method, path, json={})
        assert nobody.status_code == 401, (method, path, nobody.text)
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.get("/api/me", headers=h)).status_code == 401  # a host token is no customer
    again = await client.post("/api/leaders", json={"customer_id": a.customer_id}, headers=h)
    assert (again.status_code, again.json()["error"]) == (409, "leader_exists")


async def test_a_suspended_leaders_code_admits_but_binds_nobody_and_earns_nothing(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=10, price=1000, per_user_limit=2)
    lena = await person(client, room["id"])
    leader = await make_leader(client, shop, lena)
    bound = await enter(client, await person(client, room["id"]), room, invite=leader["code"])
    changed = await ok(
        await client.patch(f"/api/leaders/{leader['id']}", json={"suspended": True}, headers=auth(shop.token))
    )
    assert changed["suspended"] is True
    newcomer = await person(client, room["id"])
    admitted = await enter(client, newcomer, room, invite=leader["code"])
    lena_in = await enter(client, lena, room)
    shared_to = await person(client, room["id"])
    await enter(client, shared_to, room, invite=lena_in.share_code)  # her own share link: admits, binds none
    paid_while_suspended = await buy_and_pay(client, card, bound)
    await buy_and_pay(client, card, admitted)
    assert await ledger(server) == [], "a suspended leader earned"
    async with server.state.sessions() as session:
        rows = (await session.execute(select(Binding.customer_id))).scalars().all()
    assert newcomer.customer_id not in rows, "a suspended leader's code bound someone"
    assert shared_to.customer_id not in rows, "a suspended leader's share link bound someone"
    await ok(
        await client.patch(
            f"/api/leaders/{leader['id']}", json={"suspended": False}, headers=auth(shop.token)
        )
    )
    again = await buy_and_pay(client, card, bound)
    assert [(c.order_id, c.amount) for c in await ledger(server)] == [(again["id"], 100)]
    assert paid_while_suspended["id"] != again["id"]


async def test_a_binding_lapses_after_binding_days_and_the_next_code_binds_afresh(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=10, price=1000, per_user_limit=3)
    a, b = await person(client, room["id"]), await person(client, room["id"])
    leader_a, leader_b = await make_leader(client, shop, a), await make_leader(client, shop, b)
    carol = await person(client, room["id"])
    inside = await enter(client, carol, room, invite=leader_a["code"])
    clock.advance_days(server.settings.binding_days - 1)
    await enter(client, carol, room, invite=leader_b["code"])  # still A's
    first = await buy_and_pay(client, card, inside)
    clock.advance_days(1.01)
    await enter(client, carol, room, invite=leader_b["code"])  # A's binding lapsed: B's now
    second = await buy_and_pay(client, card, inside)
    credited = {c.order_id: c.promoter_customer_id for c in await ledger(server)}
    assert credited == {first["id"]: a.customer_id, second["id"]: b.customer_id}
    async with server.state.sessions() as session:
        seqs = (await session.execute(select(Binding.seq, Binding.promoter_id).order_by(Binding.seq))).all()
    assert [tuple(r) for r in seqs] == [(1, a.customer_id), (2, b.customer_id)]


async def test_the_leader_link_leads_to_the_live_show_else_the_next_one(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    token = await new_host(client, "主播")
    scheduled = await new_room(client, token, "预告", live=False)
    lena = await person(client, scheduled["id"])
    leader = await ok(await client.post("/api/leaders", json={"phone": lena.phone}, headers=auth(token)), 201)
    assert leader["customer_id"] == lena.customer_id  # by phone: the same customer
    link = f"/j/{leader['code']}"
    to_scheduled = await client.get(link)
    assert (to_scheduled.status_code, to_scheduled.headers["location"]) == (
        302,
        f"/r/{scheduled['id']}?invite={leader['code']}",
    )
    live = await new_room(client, token, "直播中")
    assert (await client.get(link)).headers["location"].startswith(f"/r/{live['id']}?")
    for room in (scheduled, live):
        await ok(await client.post(f"/api/rooms/{room['id']}/end", headers=auth(token)))
    nothing = await client.get(link, headers={"Accept-Language": "zh-CN"})
    assert nothing.status_code == 200 and "现在没有直播" in nothing.text
    unknown = await client.get("/j/nosuchcode")
    assert unknown.status_code == 404 and "Content-Security-Policy" in unknown.headers
    qr = await client.get(f"{link}/qr.svg")
    assert (
        qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml" and qr.text.startswith("<svg")
    )
    assert (await client.get("/j/nosuchcode/qr.svg")).status_code == 404
    preview = await client.get(f"/api/rooms/{live['id']}/preview", params={"invite": leader["code"]})
    assert preview.status_code == 200, "a leader's code is a valid invite of every room of the host"


async def test_signing_in_to_a_shop_without_a_room_and_out_again(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    shop = await shop_with_two_shows(client)
    host_id = shop.rooms[0]["host_id"]
    phone = new_phone()
    sent = await ok(await client.post(f"/api/shops/{host_id}/sign-in/code", json={"phone": phone}), 202)
    async with httpx.AsyncClient(base_url=server.url) as browser:
        signed = await browser.post(
            f"/api/shops/{host_id}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
        )
        me = await ok(await browser.get("/api/me", params={"shop": host_id}))  # by the shop's cookie
        assert me["customer_id"] == (await ok(signed))["customer_id"] and me["orders"] == []
        assert (await browser.get("/api/me")).status_code == 401  # no shop named, no bearer: nobody
        out = await browser.post(f"/api/shops/{host_id}/sign-out")
        assert out.status_code == 204
        assert (await browser.get("/api/me", params={"shop": host_id})).status_code == 401
    assert (await client.post("/api/shops/hst_nope/sign-out")).status_code == 404


async def test_a_payout_takes_an_orders_accrual_and_its_later_clawback_together(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    """A payout up to an instant between an order's accrual and its refund's clawback pays the order's net,
    never the accrual alone (which would pay out money the refund took back)."""
    shop = await shop_with_two_shows(client)
    room = shop.rooms[0]
    _, card = await new_card(client, shop.token, room["id"], stock=5, price=2000)
    lena = await person(client, room["id"])
    leader = await make_leader(client, shop, lena)
    order = await buy_and_pay(
        client, card, await enter(client, await person(client, room["id"]), room, invite=leader["code"])
    )
    between = datetime.fromtimestamp((clock.now_ms() + 1000) / 1000, tz=UTC).isoformat()
    clock.advance_days(1)
    await ok(
        await client.post(
            f"/api/orders/{order['id']}/refund", json={"amount": 1500}, headers=auth(shop.token)
        )
    )
    clock.advance_days(7)
    paid = await ok(
        await client.post(
            "/api/payouts", json={"promoter_id": lena.customer_id, "up_to": between}, headers=auth(shop.token)
        ),
        201,
    )
    assert (paid["amount"], paid["rows"]) == (50, 2)  # 200 accrued - 150 clawed back
    (line,) = await ok(await client.get("/api/commissions", headers=auth(shop.token)))
    assert (line["net"], line["paid_out"], line["owed"]) == (50, 50, 0)
