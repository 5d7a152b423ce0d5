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
from tests.shop_api import Buyer, auth, ok

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
    payment = await ok(await client.post(f"/api/orders/{order['id']}/pay", headers=auth(buyer.token)))
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
