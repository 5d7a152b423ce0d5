"""The whole sale over HTTP, on SQLite and PostgreSQL with the real Redis."""

from __future__ import annotations

import httpx

from tests.conftest import LiveServer
from tests.shop_api import auth, buy, join, new_sale, ok, pay


async def test_a_whole_sale(client: httpx.AsyncClient, server: LiveServer) -> None:
    sale = await new_sale(client, stock=3, price=990)
    promoter = await join(client, sale, "Ann")
    buyer = await join(client, sale, "Bob", invite=promoter.share_code)

    first = await buy(client, sale.card_id, buyer, key="k1")
    assert first.status_code == 201, first.text
    order = first.json()
    assert (
        order["status"] == "reserved"
        and order["amount"] == 990
        and order["referrer_id"] == promoter.viewer_id
    )

    replay = await buy(client, sale.card_id, buyer, key="k1")
    assert replay.status_code == 200 and replay.json()["id"] == order["id"]

    over_limit = await buy(client, sale.card_id, buyer, key="k2")
    assert over_limit.status_code == 409 and over_limit.json()["error"] == "limit_exceeded"

    done = await pay(client, order["id"], buyer)
    assert done["order"]["status"] == "paid"

    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(buyer.token)))
    assert card["stock_left"] == 2 and card["status"] == "open"

    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    assert stats["orders_paid"] == 1 and stats["gmv"] == 990
    assert stats["promoters"][0]["viewer_id"] == promoter.viewer_id
    assert stats["promoters"][0]["commission"] == 99  # 10% default rate

    refunded = await ok(
        await client.post(
            f"/api/orders/{order['id']}/refund", json={"restock": True}, headers=auth(sale.host_token)
        )
    )
    assert refunded["status"] == "refunded"
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    assert stats["gmv"] == 0 and stats["promoters"][0]["commission"] == 0
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(buyer.token)))
    assert card["stock_left"] == 3


async def test_sold_out_and_cancel_returns_stock(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=1)
    a, b = await join(client, sale, "A"), await join(client, sale, "B")
    order = await ok(await buy(client, sale.card_id, a), 201)
    refused = await buy(client, sale.card_id, b)
    assert refused.status_code == 409 and refused.json()["error"] == "sold_out"
    cancelled = await ok(await client.post(f"/api/orders/{order['id']}/cancel", headers=auth(a.token)))
    assert cancelled["status"] == "cancelled"
    assert (await buy(client, sale.card_id, b)).status_code == 201


async def test_unpaid_reservation_expires_and_stock_returns(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=1, reserve_seconds=1)
    a = await join(client, sale, "A")
    order = await ok(await buy(client, sale.card_id, a), 201)
    for _ in range(50):
        current = await ok(await client.get(f"/api/orders/{order['id']}", headers=auth(a.token)))
        if current["status"] == "expired":
            break
        import asyncio

        await asyncio.sleep(0.1)
    assert current["status"] == "expired"
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
    assert card["stock_left"] == 1


async def test_csv_export(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=2)
    a = await join(client, sale, "A")
    order = await ok(await buy(client, sale.card_id, a), 201)
    r = await client.get(
        f"/api/rooms/{sale.room_id}/orders", params={"format": "csv"}, headers=auth(sale.host_token)
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.startswith("\ufeff"), "Excel needs the BOM to read the UTF-8 (Chinese names)"
    lines = r.text.removeprefix("\ufeff").strip().splitlines()
    assert lines[0].startswith("id,created_at,status") and lines[1].startswith(order["id"])
