"""Checkout (SPEC §10) through the app with the dev provider, SQLite and PostgreSQL, real Redis: the shipping
address (required for what ships, checked, kept on the order, offered again at the customer's next
checkout, in the host's CSV, masked in a leader's ledger), the shop's choice of providers, the checkout
options a page is given, a repeated checkout, and a dev notification for another amount.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from loadtests.harness import join, new_card, new_host, new_phone, new_room, sign_in
from shop.models import Payment, ShippingAddress
from shop.payments import signing
from tests.conftest import LiveServer
from tests.shop_api import ADDRESS, auth, buy, ok

pytestmark = pytest.mark.integration

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


async def count(server: LiveServer, model: Any) -> int:
    async with server.state.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def shop(client: httpx.AsyncClient, *, ships: bool = True) -> tuple[str, dict[str, Any], str]:
    """A host, a live room and an open card of a product that ships (or not): the host token, the room,
    the card id."""
    token = await new_host(client, "Tea House")
    room = await new_room(client, token)
    _, card = await new_card(client, token, room["id"], stock=10, per_user_limit=5)
    if not ships:
        h = auth(token)
        product = await ok(
            await client.post(
                "/api/products", json={"name": "课程", "price": 500, "shippable": False}, headers=h
            )
        )
        assert product["shippable"] is False
        created = await ok(
            await client.post(
                f"/api/rooms/{room['id']}/cards",
                json={"product_id": product["id"], "price": 500, "stock": 10},
                headers=h,
            )
        )
        await ok(await client.post(f"/api/cards/{created['id']}/open", json={}, headers=h))
        card = created["id"]
    return token, room, card


async def test_an_address_is_required_checked_kept_and_offered_again(
    server: LiveServer, client: httpx.AsyncClient
) -> None:
    token, room, card = await shop(client)
    customer = await sign_in(client, room["id"])
    buyer = await join(client, room["id"], room["invite_token"], customer=customer)
    order = await ok(await buy(client, card, buyer), 201)
    options = await ok(await client.get(f"/api/orders/{order['id']}/checkout", headers=auth(buyer.token)))
    assert options == {
        "order_id": order["id"],
        "amount": order["amount"],
        "currency": "CNY",
        "providers": [{"provider": "dev", "channel": "dev"}],
        "address_required": True,
        "address": None,
    }
    url = f"/api/orders/{order['id']}/pay"
    refused = await client.post(url, json={}, headers=auth(buyer.token))
    assert refused.status_code == 422 and refused.json()["error"] == "address_required", refused.text
    assert await count(server, Payment) == 0
    given = {
        "name": " 王小明 ",
        "phone": "138 0013 8000",
        "region": "上海市 浦东新区",
        "line": "世纪大道 100 号",
    }
    checkout = await ok(await client.post(url, json={"address": given}, headers=auth(buyer.token)))
    assert checkout["provider"] == "dev" and checkout["checkout_url"].endswith(checkout["payment_id"])
    # The same checkout again shows the same payment.
    again = await ok(await client.post(url, json={}, headers=auth(buyer.token)))
    assert again == checkout and await count(server, Payment) == 1
    kept = {
        "name": "王小明",
        "phone": "+8613800138000",
        "region": "上海市 浦东新区",
        "line": "世纪大道 100 号",
    }
    seen = await ok(await client.get(f"/api/orders/{order['id']}", headers=auth(token)))
    assert seen["address"] == kept
    # The customer's next order offers it again.
    second = await ok(await buy(client, card, buyer), 201)
    options = await ok(await client.get(f"/api/orders/{second['id']}/checkout", headers=auth(buyer.token)))
    assert options["address"] == kept
    assert await count(server, ShippingAddress) == 1
    # In the host's CSV, spread over its columns.
    await ok(
        await client.post(f"/api/payments/dev/{checkout['payment_id']}/complete", json={"outcome": "paid"})
    )
    export = await client.get(f"/api/rooms/{room['id']}/orders?format=csv", headers=auth(token))
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(export.text.lstrip("\ufeff")))}
    line = rows[order["id"]]
    assert (line["ship_name"], line["ship_region"], line["ship_line"]) == (
        "王小明",
        "上海市 浦东新区",
        "世纪大道 100 号",
    )
    assert line["ship_phone"] == "'+8613800138000"  # a formula guard: a spreadsheet shows it as text


async def test_what_does_not_ship_is_paid_without_an_address(client: httpx.AsyncClient) -> None:
    _, room, card = await shop(client, ships=False)
    buyer = await join(client, room["id"], room["invite_token"])
    order = await ok(await buy(client, card, buyer), 201)
    options = await ok(await client.get(f"/api/orders/{order['id']}/checkout", headers=auth(buyer.token)))
    assert options["address_required"] is False
    checkout = await ok(
        await client.post(f"/api/orders/{order['id']}/pay", json={}, headers=auth(buyer.token))
    )
    done = await ok(
        await client.post(f"/api/payments/dev/{checkout['payment_id']}/complete", json={"outcome": "paid"})
    )
    assert done["order"]["status"] == "paid" and done["order"]["address"] is None


async def test_a_shop_chooses_its_providers(client: httpx.AsyncClient) -> None:
    token, room, card = await shop(client)
    h = auth(token)
    before = await ok(await client.get("/api/shop", headers=h))
    assert (before["payment_providers"], before["offered_providers"], before["server_providers"]) == (
        None,
        ["dev"],
        ["dev"],
    )
    refused = await client.patch("/api/shop", json={"payment_providers": ["wechat"]}, headers=h)
    assert refused.status_code == 422 and refused.json()["error"] == "unknown_provider", refused.text
    chosen = await ok(await client.patch("/api/shop", json={"payment_providers": ["dev"]}, headers=h))
    assert chosen["payment_providers"] == ["dev"] and chosen["commission_bps"] is None
    # The rate alone leaves the providers as they are.
    rated = await ok(await client.patch("/api/shop", json={"commission_bps": 800}, headers=h))
    assert rated["payment_providers"] == ["dev"] and rated["commission_bps"] == 800
    buyer = await join(client, room["id"], room["invite_token"])
    order = await ok(await buy(client, card, buyer), 201)
    phone = {**auth(buyer.token), "User-Agent": IPHONE}
    options = await ok(await client.get(f"/api/orders/{order['id']}/checkout", headers=phone))
    assert options["providers"] == [{"provider": "dev", "channel": "dev"}]
    back = await ok(await client.patch("/api/shop", json={"payment_providers": None}, headers=h))
    assert back["payment_providers"] is None and back["offered_providers"] == ["dev"]


async def test_a_dev_notification_for_another_amount_pays_nothing(
    server: LiveServer, client: httpx.AsyncClient
) -> None:
    _, room, card = await shop(client)
    buyer = await join(client, room["id"], room["invite_token"])
    order = await ok(await buy(client, card, buyer), 201)
    checkout = await ok(
        await client.post(
            f"/api/orders/{order['id']}/pay", json={"address": ADDRESS}, headers=auth(buyer.token)
        )
    )
    body = json.dumps(
        {
            "id": "evt_short",
            "type": "payment.succeeded",
            "data": {"payment_id": checkout["payment_id"], "amount": order["amount"] - 1},
        }
    ).encode()
    header = signing.sign(body, secret=server.state.settings.webhook_secret, timestamp=int(time.time()))
    r = await client.post("/api/payments/webhook", content=body, headers={signing.HEADER: header})
    assert r.status_code == 200 and r.json()["outcome"] == "amount_mismatch", r.text
    assert (await ok(await client.get(f"/api/orders/{order['id']}", headers=auth(buyer.token))))[
        "status"
    ] == ("reserved")


async def test_a_leader_sees_where_their_customers_orders_ship_only_masked(client: httpx.AsyncClient) -> None:
    token, room, card = await shop(client)
    lily_phone = new_phone()
    leader = await ok(await client.post("/api/leaders", json={"phone": lily_phone}, headers=auth(token)), 201)
    buyer = await join(client, room["id"], leader["code"])
    order = await ok(await buy(client, card, buyer), 201)
    checkout = await ok(
        await client.post(
            f"/api/orders/{order['id']}/pay", json={"address": ADDRESS}, headers=auth(buyer.token)
        )
    )
    await ok(
        await client.post(f"/api/payments/dev/{checkout['payment_id']}/complete", json={"outcome": "paid"})
    )
    lily = await sign_in(client, room["id"], lily_phone)
    [row] = await ok(await client.get("/api/me/commissions", headers=auth(lily)))
    assert row["order_id"] == order["id"] and row["order_status"] == "paid"
    assert row["ship_to"] == {"name": "王**", "phone": "****8000", "region": "上海市 浦东新区", "line": ""}
    # The host sees it whole.
    seen = await ok(await client.get(f"/api/orders/{order['id']}", headers=auth(token)))
    assert seen["address"]["line"] == ADDRESS["line"] and seen["address"]["phone"] == "+8613800138000"
