"""A thin test driver for the HTTP contract: sets up hosts, rooms, cards and viewers with real requests (the
set-up itself is the harness's, shared with the benchmarks: ``loadtests/harness``)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from loadtests.harness import Buyer, Sale, auth, new_phone, new_sale, ok, sign_in
from loadtests.harness import join as join_room

#: A shipping address for checkouts of products that ship (every product, unless it says otherwise).
ADDRESS = {"name": "王小明", "phone": "13800138000", "region": "上海市 浦东新区", "line": "世纪大道 100 号"}

__all__ = ["Buyer", "Sale", "auth", "buy", "join", "new_phone", "new_sale", "ok", "pay", "sign_in"]


async def join(
    client: httpx.AsyncClient,
    sale: Sale,
    name: str = "Viewer",
    *,
    invite: str | None = None,
    ref: str | None = None,
    customer: str | None = None,
    guest: bool = False,
) -> Buyer:
    """A viewer joins the sale's room: a new customer signed in first, unless ``customer`` (a customer
    token: the same person again) or ``guest`` (a guest room's v1 join) says otherwise."""
    return await join_room(
        client, sale.room_id, invite or sale.invite, name, ref=ref, customer=customer, guest=guest
    )


async def buy(
    client: httpx.AsyncClient, card_id: str, buyer: Buyer, quantity: int = 1, key: str | None = None
) -> httpx.Response:
    headers = {**auth(buyer.token), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post(f"/api/cards/{card_id}/orders", json={"quantity": quantity}, headers=headers)


async def pay(
    client: httpx.AsyncClient, order_id: str, buyer: Buyer, outcome: str = "paid"
) -> dict[str, Any]:
    payment = await ok(
        await client.post(f"/api/orders/{order_id}/pay", json={"address": ADDRESS}, headers=auth(buyer.token))
    )
    return await ok(  # type: ignore[no-any-return]
        await client.post(f"/api/payments/dev/{payment['payment_id']}/complete", json={"outcome": outcome})
    )
