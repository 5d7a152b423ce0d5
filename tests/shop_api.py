"""A thin test driver for the HTTP contract: sets up hosts, rooms, cards and viewers with real requests (the
set-up itself is the harness's, shared with the benchmarks: ``loadtests/harness``)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from loadtests.harness import Buyer, Sale, auth, new_sale, ok
from loadtests.harness import join as join_room

__all__ = ["Buyer", "Sale", "auth", "buy", "join", "new_sale", "ok", "pay"]


async def join(
    client: httpx.AsyncClient,
    sale: Sale,
    name: str = "Viewer",
    *,
    invite: str | None = None,
    ref: str | None = None,
) -> Buyer:
    return await join_room(client, sale.room_id, invite or sale.invite, name, ref=ref)


async def buy(
    client: httpx.AsyncClient, card_id: str, buyer: Buyer, quantity: int = 1, key: str | None = None
) -> httpx.Response:
    headers = {**auth(buyer.token), "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post(f"/api/cards/{card_id}/orders", json={"quantity": quantity}, headers=headers)


async def pay(
    client: httpx.AsyncClient, order_id: str, buyer: Buyer, outcome: str = "paid"
) -> dict[str, Any]:
    payment = await ok(await client.post(f"/api/orders/{order_id}/pay", headers=auth(buyer.token)))
    return await ok(  # type: ignore[no-any-return]
        await client.post(f"/api/payments/dev/{payment['payment_id']}/complete", json={"outcome": outcome})
    )
