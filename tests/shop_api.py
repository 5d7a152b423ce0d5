"""A thin test driver for the HTTP contract: sets up hosts, rooms, cards and viewers with real requests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Sale:
    host_token: str
    room_id: str
    invite: str
    product_id: str
    card_id: str


@dataclass
class Buyer:
    viewer_id: str
    token: str
    share_code: str


async def ok(response: httpx.Response, status: int | tuple[int, ...] = (200, 201)) -> Any:
    expected = (status,) if isinstance(status, int) else status
    assert response.status_code in expected, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


async def new_sale(
    client: httpx.AsyncClient,
    *,
    stock: int = 10,
    price: int = 990,
    per_user_limit: int = 1,
    reserve_seconds: int = 300,
    open_sale: bool = True,
    duration_seconds: int | None = None,
) -> Sale:
    host = await ok(await client.post("/api/hosts", json={"name": "Host"}))
    h = auth(host["token"])
    product = await ok(await client.post("/api/products", json={"name": "Tea", "price": 1990}, headers=h))
    room = await ok(await client.post("/api/rooms", json={"title": "Show"}, headers=h))
    await ok(await client.post(f"/api/rooms/{room['id']}/live", headers=h))
    card = await ok(
        await client.post(
            f"/api/rooms/{room['id']}/cards",
            json={
                "product_id": product["id"],
                "price": price,
                "stock": stock,
                "per_user_limit": per_user_limit,
                "reserve_seconds": reserve_seconds,
            },
            headers=h,
        )
    )
    if open_sale:
        body = {"duration_seconds": duration_seconds} if duration_seconds else {}
        await ok(await client.post(f"/api/cards/{card['id']}/open", json=body, headers=h))
    return Sale(host["token"], room["id"], room["invite_token"], product["id"], card["id"])


async def join(
    client: httpx.AsyncClient,
    sale: Sale,
    name: str = "Viewer",
    *,
    invite: str | None = None,
    ref: str | None = None,
) -> Buyer:
    body: dict[str, Any] = {"invite": invite or sale.invite, "name": name}
    if ref:
        body["ref"] = ref
    v = await ok(await client.post(f"/api/rooms/{sale.room_id}/join", json=body))
    return Buyer(v["viewer_id"], v["token"], v["share_code"])


async def buy(
    client: httpx.AsyncClient, card_id: str, buyer: Buyer, quantity: int = 1, key: str | None = None
) -> httpx.Response:
    headers = {**auth(buyer.token), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post(f"/api/cards/{card_id}/orders", json={"quantity": quantity}, headers=headers)


async def pay(
    client: httpx.AsyncClient, order_id: str, buyer: Buyer, outcome: str = "paid"
) -> dict[str, Any]:
    payment = await ok(await client.post(f"/api/orders/{order_id}/pay", headers=auth(buyer.token)))
    return await ok(
        await client.post(
            f"/api/payments/dev/{payment['payment_id']}/complete",  # type: ignore[no-any-return]
            json={"outcome": outcome},
        )
    )
