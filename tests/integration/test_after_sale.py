"""After-sale (SPEC §10) against the real app, Redis, and SQLite and PostgreSQL: a buyer's request, the host's
approval (the refund written and sent; full or partial; units back on sale only with restock; the promoter's
commission clawed back in proportion) or rejection, a withdrawal, the after-sale window (the server's clock
moved: ``ShiftedClock``), races (two requests at once, two approvals at once), who may call what, and a
refund whose provider fails: visible with its error, then sent again.

The failing provider is a real one: the payment was taken by the dev provider on a server that has it, and
the request is approved on a second server of the same shop (same SQL and Redis) that has no dev provider,
so its refund fails there exactly as a provider that is down or not configured does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shop.models import AfterSale, Commission, Refund
from tests.conftest import LiveServer, make_settings
from tests.integration.test_leaders import ShiftedClock
from tests.shop_api import Buyer, Sale, auth, buy, join, new_sale, ok, pay

pytestmark = pytest.mark.integration

PRICE = 990  # the default commission rate is 10 %: 99 accrued to the promoter per order


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def server(
    database_url: str, redis_url: str, tmp_path: Path, clock: ShiftedClock
) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path), clock=clock) as live:
        yield live


@dataclass
class Shop:
    sale: Sale
    promoter: Buyer  # whose share link brought the buyer
    buyer: Buyer

    @property
    def host(self) -> dict[str, str]:
        return auth(self.sale.host_token)


async def shop(client: httpx.AsyncClient) -> Shop:
    sale = await new_sale(client, stock=10, price=PRICE, per_user_limit=10)
    promoter = await join(client, sale, "Pat")
    buyer = await join(client, sale, "Bea", invite=promoter.share_code)
    return Shop(sale, promoter, buyer)


async def paid(client: httpx.AsyncClient, s: Shop, *, shipped: bool = False) -> dict[str, Any]:
    order = await ok(await buy(client, s.sale.card_id, s.buyer), 201)
    done = await pay(client, order["id"], s.buyer)
    assert done["order"]["status"] == "paid"
    if shipped:
        ship = {"tracking_number": "SF1"}
        await ok(await client.post(f"/api/orders/{order['id']}/ship", json=ship, headers=s.host))
    return done["order"]  # type: ignore[no-any-return]


async def ask(
    client: httpx.AsyncClient, order_id: str, token: str, kind: str = "refund", **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/orders/{order_id}/after-sale",
        json={"kind": kind, "reason": "不想要了", **body},
        headers=auth(token),
    )


async def stock_left(client: httpx.AsyncClient, s: Shop) -> int:
    card = await ok(await client.get(f"/api/cards/{s.sale.card_id}", headers=s.host))
    return int(card["stock_left"])


async def ledger(server: LiveServer, order_id: str) -> list[tuple[str, int, str | None]]:
    async with server.state.sessions() as session:
        rows = (await session.execute(select(Commission).where(Commission.order_id == order_id))).scalars()
        return sorted((c.kind, c.amount, c.refund_id) for c in rows)


async def refunds_of(server: LiveServer, order_id: str) -> list[Refund]:
    async with server.state.sessions() as session:
        return list((await session.execute(select(Refund).where(Refund.order_id == order_id))).scalars())


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("error")


async def test_a_full_refund_with_restock(client: httpx.AsyncClient, server: LiveServer) -> None:
    s = await shop(client)
    order = await paid(client, s, shipped=True)
    oid = order["id"]
    assert await ledger(server, oid) == [("accrual", 99, None)]
    left_before = await stock_left(client, s)

    filed = await ok(await ask(client, oid, s.buyer.token, kind="return_refund"), 201)
    assert {
        k: filed[k] for k in ("order_id", "kind", "reason", "amount", "status", "host_note", "refund")
    } == {
        "order_id": oid,
        "kind": "return_refund",
        "reason": "不想要了",
        "amount": None,
        "status": "requested",
        "host_note": None,
        "refund": None,
    }
    assert filed["created_at"] and filed["decided_at"] is None
    # The buyer and the host see it on the order; the host in the shop's list, with the order.
    for headers in (auth(s.buyer.token), s.host):
        assert await ok(await client.get(f"/api/orders/{oid}/after-sales", headers=headers)) == [filed]
    listed = await ok(await client.get("/api/after-sales?status=requested", headers=s.host))
    assert [a["id"] for a in listed] == [filed["id"]]
    assert listed[0]["order"]["status"] == "shipped" and listed[0]["order"]["address"]["name"]
    assert await ok(await client.get("/api/after-sales?status=approved", headers=s.host)) == []

    approved = await ok(
        await client.post(
            f"/api/after-sales/{filed['id']}/approve", json={"restock": True, "note": "已退"}, headers=s.host
        )
    )
    assert (approved["status"], approved["host_note"]) == ("approved", "已退")
    assert approved["decided_at"] is not None
    refund = approved["refund"]
    assert (refund["amount"], refund["status"], refund["attempts"], refund["last_error"]) == (
        PRICE,
        "succeeded",  # the dev provider refunds at once
        1,
        None,
    )
    now = await ok(await client.get(f"/api/orders/{oid}", headers=auth(s.buyer.token)))
    assert (now["status"], now["refunded_amount"], now["restocked"]) == ("refunded", PRICE, True)
    assert await stock_left(client, s) == left_before + 1  # back on sale
    assert await ledger(server, oid) == [("accrual", 99, None), ("clawback", -99, refund["id"])]
    (row,) = await refunds_of(server, oid)
    assert (row.id, row.reason, row.kind, row.status) == (refund["id"], "after_sale", "order", "succeeded")
    shop_refunds = await ok(await client.get("/api/refunds", headers=s.host))
    assert [(r["id"], r["order_id"], r["status"]) for r in shop_refunds] == [(row.id, oid, "succeeded")]
    assert await ok(await client.get("/api/refunds?status=pending", headers=s.host)) == []
    # Nothing is left: another request is refused; approving again refunds nothing.
    assert error(await ask(client, oid, s.buyer.token)) == (409, "after_sale_refused")
    again = await client.post(f"/api/after-sales/{filed['id']}/approve", json={}, headers=s.host)
    assert error(again) == (409, "after_sale_not_open")
    assert len(await refunds_of(server, oid)) == 1


async def test_partial_refunds_without_restock_claw_back_in_proportion(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    s = await shop(client)
    order = await paid(client, s)
    oid = order["id"]
    left_before = await stock_left(client, s)
    # Not shipped: nothing to return. More than was paid: refused.
    assert error(await ask(client, oid, s.buyer.token, kind="return_refund")) == (409, "after_sale_refused")
    assert error(await ask(client, oid, s.buyer.token, amount=PRICE + 1)) == (422, "invalid_refund")

    first = await ok(await ask(client, oid, s.buyer.token, amount=400), 201)
    assert first["amount"] == 400
    assert error(await ask(client, oid, s.buyer.token)) == (409, "after_sale_open")  # one open at a time
    restock = await client.post(
        f"/api/after-sales/{first['id']}/approve", json={"restock": True}, headers=s.host
    )
    assert error(restock) == (422, "invalid_refund")  # only the refund that completes it restocks
    assert (await refunds_of(server, oid)) == [] and await ledger(server, oid) == [("accrual", 99, None)]

    approved = await ok(await client.post(f"/api/after-sales/{first['id']}/approve", headers=s.host))
    assert approved["refund"]["amount"] == 400  # what the buyer asked
    now = await ok(await client.get(f"/api/orders/{oid}", headers=s.host))
    assert (now["status"], now["refunded_amount"]) == ("paid", 400)
    clawed = [row for row in await ledger(server, oid) if row[0] == "clawback"]
    assert clawed == [("clawback", -(99 * 400 // PRICE), approved["refund"]["id"])]  # -40

    # The rest: asked without an amount, approved for less, then the last of it.
    second = await ok(await ask(client, oid, s.buyer.token), 201)
    part = await ok(
        await client.post(f"/api/after-sales/{second['id']}/approve", json={"amount": 90}, headers=s.host)
    )
    assert part["refund"]["amount"] == 90
    third = await ok(await ask(client, oid, s.buyer.token), 201)
    last = await ok(await client.post(f"/api/after-sales/{third['id']}/approve", headers=s.host))
    assert last["refund"]["amount"] == PRICE - 400 - 90
    now = await ok(await client.get(f"/api/orders/{oid}", headers=s.host))
    assert (now["status"], now["refunded_amount"], now["restocked"]) == ("refunded", PRICE, False)
    assert await stock_left(client, s) == left_before  # written off: not back on sale
    assert sum(amount for kind, amount, _ in await ledger(server, oid) if kind == "clawback") == -99
    assert sorted(r.amount for r in await refunds_of(server, oid)) == [90, 400, 500]
    history = await ok(await client.get(f"/api/orders/{oid}/after-sales", headers=auth(s.buyer.token)))
    assert [a["id"] for a in history] == [first["id"], second["id"], third["id"]]  # oldest first
    assert [a["refund"]["amount"] for a in history] == [400, 90, 500]


async def test_reject_with_a_reason_and_withdraw(client: httpx.AsyncClient, server: LiveServer) -> None:
    s = await shop(client)
    oid = (await paid(client, s))["id"]
    filed = await ok(await ask(client, oid, s.buyer.token), 201)
    blank = await client.post(f"/api/after-sales/{filed['id']}/reject", json={"reason": " "}, headers=s.host)
    assert error(blank) == (422, "invalid_request")
    rejected = await ok(
        await client.post(f"/api/after-sales/{filed['id']}/reject", json={"reason": "已拆封"}, headers=s.host)
    )
    assert (rejected["status"], rejected["host_note"], rejected["refund"]) == ("rejected", "已拆封", None)
    assert rejected["decided_at"] is not None
    for action, body in (("approve", {}), ("reject", {"reason": "x"})):
        late = await client.post(f"/api/after-sales/{filed['id']}/{action}", json=body, headers=s.host)
        assert error(late) == (409, "after_sale_not_open")
    withdraw = await client.post(f"/api/after-sales/{filed['id']}/withdraw", headers=auth(s.buyer.token))
    assert error(withdraw) == (409, "after_sale_not_open")

    # A rejected request is closed: the buyer may ask again, and withdraw it.
    again = await ok(await ask(client, oid, s.buyer.token), 201)
    withdrawn = await ok(
        await client.post(f"/api/after-sales/{again['id']}/withdraw", headers=auth(s.buyer.token))
    )
    assert withdrawn["status"] == "withdrawn" and withdrawn["decided_at"] is not None
    approve = await client.post(f"/api/after-sales/{again['id']}/approve", headers=s.host)
    assert error(approve) == (409, "after_sale_not_open")
    order = await ok(await client.get(f"/api/orders/{oid}", headers=s.host))
    assert (order["status"], order["refunded_amount"]) == ("paid", 0)
    assert await refunds_of(server, oid) == []
    statuses = [a["status"] for a in await ok(await client.get("/api/after-sales", headers=s.host))]
    assert statuses == ["withdrawn", "rejected"]  # newest first


async def test_only_inside_the_after_sale_window_and_only_when_sold(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    s = await shop(client)
    reserved = await ok(await buy(client, s.sale.card_id, s.buyer), 201)
    assert error(await ask(client, reserved["id"], s.buyer.token)) == (409, "after_sale_refused")
    inside = (await paid(client, s))["id"]
    outside = (await paid(client, s))["id"]
    filed = await ok(await ask(client, inside, s.buyer.token), 201)
    clock.advance_days(server.settings.after_sale_days + 0.01)
    assert error(await ask(client, outside, s.buyer.token)) == (409, "after_sale_refused")
    # A request filed inside the window is still decided after it.
    approved = await ok(await client.post(f"/api/after-sales/{filed['id']}/approve", headers=s.host))
    assert approved["refund"]["status"] == "succeeded"
    async with server.state.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(AfterSale))
    assert count == 1


async def test_two_requests_at_once_make_one(client: httpx.AsyncClient, server: LiveServer) -> None:
    s = await shop(client)
    oid = (await paid(client, s))["id"]
    answers = await asyncio.gather(*(ask(client, oid, s.buyer.token) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 5
    assert {error(a) for a in answers if a.status_code == 409} == {(409, "after_sale_open")}
    async with server.state.sessions() as session:
        rows = (await session.execute(select(AfterSale).where(AfterSale.order_id == oid))).scalars().all()
    assert [r.status for r in rows] == ["requested"]


async def test_two_approvals_at_once_refund_once(client: httpx.AsyncClient, server: LiveServer) -> None:
    s = await shop(client)
    oid = (await paid(client, s))["id"]
    filed = await ok(await ask(client, oid, s.buyer.token, amount=500), 201)
    url = f"/api/after-sales/{filed['id']}/approve"
    answers = await asyncio.gather(*(client.post(url, json={}, headers=s.host) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5, [a.text for a in answers]
    assert {error(a) for a in answers if a.status_code == 409} == {(409, "after_sale_not_open")}
    (refund,) = await refunds_of(server, oid)
    assert refund.amount == 500
    order = await ok(await client.get(f"/api/orders/{oid}", headers=s.host))
    assert (order["status"], order["refunded_amount"]) == ("paid", 500)
    assert [row for row in await ledger(server, oid) if row[0] == "clawback"] == [
        ("clawback", -50, refund.id)
    ]


async def test_who_may_call_what(client: httpx.AsyncClient, server: LiveServer) -> None:
    s = await shop(client)
    assert s.buyer.customer is not None and s.promoter.customer is not None
    other = await new_sale(client, stock=2)
    stranger = await join(client, other, "Sam")  # a customer of another shop
    assert stranger.customer is not None
    shop_id = (await ok(await client.get("/api/shop", headers=s.host)))["id"]
    leader = await join(client, s.sale, "Lee")
    assert leader.customer is not None
    lee = await ok(await client.get("/api/me", headers=auth(leader.customer)))
    await ok(await client.post("/api/leaders", json={"customer_id": lee["customer_id"]}, headers=s.host), 201)
    oid = (await paid(client, s))["id"]
    filed = await ok(await ask(client, oid, s.buyer.token), 201)
    refund_order = (await paid(client, s))["id"]
    await ok(await client.post(f"/api/orders/{refund_order}/refund", json={}, headers=s.host))
    (refund,) = await refunds_of(server, refund_order)
    aid = filed["id"]

    tokens = {
        "buyer": auth(s.buyer.token),
        "buyer_customer": auth(s.buyer.customer),
        "buyer_cookie": {"Cookie": f"lc_c_{shop_id}={s.buyer.customer}"},
        "another_buyer": auth(s.promoter.token),
        "another_customer": auth(s.promoter.customer),
        "other_shops_customer": auth(stranger.customer),
        "leader": auth(leader.customer),
        "host": s.host,
        "other_host": auth(other.host_token),
        "nobody": {},
        "garbage": auth("garbage"),
    }
    request = {"kind": "refund", "reason": "坏了"}
    # (method, path, body, caller) -> expected status, for each caller named (the rest: see below).
    matrix: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
        (
            "POST",
            f"/api/orders/{oid}/after-sale?shop={shop_id}",
            request,
            {
                "another_buyer": 403,
                "another_customer": 403,
                "other_shops_customer": 403,
                "leader": 403,
                "host": 403,
                "other_host": 403,
                "nobody": 401,
                "garbage": 401,
                # The buyer, each way: the open request answers (they got in).
                "buyer": 409,
                "buyer_customer": 409,
                "buyer_cookie": 409,
            },
        ),
        (
            "GET",
            f"/api/orders/{oid}/after-sales?shop={shop_id}",
            None,
            {
                "buyer": 200,
                "buyer_customer": 200,
                "buyer_cookie": 200,
                "host": 200,
                "another_buyer": 403,
                "another_customer": 403,
                "other_shops_customer": 403,
                "leader": 403,
                "other_host": 403,
                "nobody": 401,
                "garbage": 401,
            },
        ),
        (
            "POST",
            f"/api/after-sales/{aid}/withdraw",
            None,
            {"another_buyer": 403, "leader": 403, "host": 403, "other_host": 403, "nobody": 401},
        ),
        (
            "POST",
            f"/api/after-sales/{aid}/approve",
            {},
            {"buyer": 403, "buyer_customer": 403, "leader": 403, "other_host": 403, "nobody": 401},
        ),
        (
            "POST",
            f"/api/after-sales/{aid}/reject",
            {"reason": "no"},
            {"buyer": 403, "buyer_customer": 403, "leader": 403, "other_host": 403, "nobody": 401},
        ),
        (
            "GET",
            "/api/after-sales",
            None,
            {"buyer": 403, "buyer_customer": 403, "leader": 403, "nobody": 401},
        ),
        ("GET", "/api/refunds", None, {"buyer": 403, "leader": 403, "nobody": 401}),
        (
            "POST",
            f"/api/refunds/{refund.id}/retry",
            None,
            {"buyer": 403, "leader": 403, "other_host": 403, "nobody": 401, "host": 409},
        ),
        ("POST", "/api/orders/ord_nope/after-sale", request, {"buyer": 404}),
        ("GET", "/api/orders/ord_nope/after-sales", None, {"host": 404}),
        ("POST", "/api/after-sales/as_nope/approve", {}, {"host": 404}),
        ("POST", "/api/after-sales/as_nope/withdraw", None, {"buyer": 404}),
        ("POST", "/api/refunds/rfd_nope/retry", None, {"host": 404}),
    ]
    for method, path, body, expected in matrix:
        for name, status in expected.items():
            response = await client.request(method, path, json=body, headers=tokens[name])
            assert response.status_code == status, f"{method} {path} as {name}: {response.text}"
    # Another host's lists hold nothing of this shop.
    assert await ok(await client.get("/api/after-sales", headers=auth(other.host_token))) == []
    assert await ok(await client.get("/api/refunds", headers=auth(other.host_token))) == []
    # Nothing the refusals did changed the request.
    (mine,) = await ok(await client.get(f"/api/orders/{oid}/after-sales", headers=s.host))
    assert mine == filed
    # The buyer's customer withdraws it (the cookie's way).
    withdrawn = await client.post(
        f"/api/after-sales/{aid}/withdraw?shop={shop_id}", headers=tokens["buyer_cookie"]
    )
    assert (await ok(withdrawn))["status"] == "withdrawn"


async def test_a_refund_the_provider_fails_is_visible_and_sent_again(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with_dev = make_settings(database_url, redis_url, tmp_path)
    without = make_settings(database_url, redis_url, tmp_path, dev_payments=False)
    async with (
        LiveServer(with_dev) as a,
        LiveServer(without, sweeper=False) as b,
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        s = await shop(on_a)
        oid = (await paid(on_a, s))["id"]
        filed = await ok(await ask(on_a, oid, s.buyer.token), 201)
        approved = await ok(await on_b.post(f"/api/after-sales/{filed['id']}/approve", headers=s.host))
        refund = approved["refund"]
        assert (refund["status"], refund["attempts"]) == ("pending", 1)
        assert "dev" in refund["last_error"] and "not configured" in refund["last_error"]
        order = await ok(await on_b.get(f"/api/orders/{oid}", headers=s.host))
        assert (order["status"], order["refunded_amount"]) == ("refunded", PRICE)  # the ledger counts it

        (pending,) = await ok(await on_b.get("/api/refunds?status=pending", headers=s.host))
        assert (pending["id"], pending["order_id"], pending["amount"]) == (refund["id"], oid, PRICE)
        assert pending["last_error"] == refund["last_error"] and pending["next_try_at"] is not None
        assert await ok(await on_b.get("/api/refunds?status=succeeded", headers=s.host)) == []

        still = await ok(await on_b.post(f"/api/refunds/{refund['id']}/retry", headers=s.host))
        assert (still["status"], still["attempts"]) == ("pending", 2)
        sent = await ok(await on_a.post(f"/api/refunds/{refund['id']}/retry", headers=s.host))
        assert (sent["status"], sent["attempts"], sent["last_error"]) == ("succeeded", 3, None)
        again = await on_a.post(f"/api/refunds/{refund['id']}/retry", headers=s.host)
        assert error(again) == (409, "invalid_refund_state")
        (request,) = await ok(await on_a.get(f"/api/orders/{oid}/after-sales", headers=auth(s.buyer.token)))
        assert request["refund"]["status"] == "succeeded"
