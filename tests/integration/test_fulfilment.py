"""Fulfilment (SPEC §10) against the real app, Redis, and SQLite and PostgreSQL: ``paid → shipped →
delivered → completed`` with the buyer's socket told at every step, ``paid → delivered`` for a product that
does not ship (``shippable: false``), the sweeper completing what nobody confirmed after
``LIVECART_AUTO_COMPLETE_DAYS`` (the server's clock moved: ``ShiftedClock``), refused steps changing
nothing, and refunds of a shipped order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from shop.models import Order as OrderRow
from tests.conftest import LiveServer, make_settings
from tests.integration.test_leaders import ShiftedClock
from tests.shop_api import Buyer, Sale, auth, buy, join, new_sale, ok, pay

pytestmark = pytest.mark.integration

ORIGIN = "http://127.0.0.1:8000"  # the origin of the test settings' base_url


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def server(
    database_url: str, redis_url: str, tmp_path: Path, clock: ShiftedClock
) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path), clock=clock) as live:
        yield live


def socket_of(server: LiveServer, room_id: str, token: str) -> Any:
    url = f"ws://127.0.0.1:{server.port}/ws/rooms/{room_id}?token={token}"
    return websockets.connect(url, origin=ORIGIN)  # type: ignore[arg-type]


async def order_frame(ws: Any, order_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next ``order`` frame of this order in this status (frames of earlier steps are passed over)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "order" and (frame["order"]["id"], frame["order"]["status"]) == (
                order_id,
                status,
            ):
                return frame["order"]  # type: ignore[no-any-return]


async def paid_order(client: httpx.AsyncClient, sale: Sale, buyer: Buyer) -> dict[str, Any]:
    order = await ok(await buy(client, sale.card_id, buyer), 201)
    done = await pay(client, order["id"], buyer)
    assert done["order"]["status"] == "paid"
    return done["order"]  # type: ignore[no-any-return]


async def voucher_card(client: httpx.AsyncClient, host_token: str, room_id: str) -> str:
    """An open card in the room selling a product that does not ship (a voucher)."""
    h = auth(host_token)
    product = await ok(
        await client.post(
            "/api/products", json={"name": "Voucher", "price": 500, "shippable": False}, headers=h
        )
    )
    body = {"product_id": product["id"], "price": 500, "stock": 10, "per_user_limit": 10}
    card = await ok(await client.post(f"/api/rooms/{room_id}/cards", json=body, headers=h))
    await ok(await client.post(f"/api/cards/{card['id']}/open", json={}, headers=h))
    return str(card["id"])


async def sql_order(server: LiveServer, order_id: str) -> tuple[Any, ...]:
    async with server.state.sessions() as session:
        row = await session.get(OrderRow, order_id)
        assert row is not None
        return (
            row.status,
            row.carrier,
            row.tracking_number,
            row.shipped_ms,
            row.delivered_ms,
            row.completed_ms,
        )


async def test_ship_deliver_receive_and_the_buyer_is_told_each_time(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5, per_user_limit=5)
    ann = await join(client, sale, "Ann")
    h = auth(sale.host_token)
    order = await paid_order(client, sale, ann)
    oid = order["id"]
    async with socket_of(server, sale.room_id, ann.token) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"

        shipped = await ok(
            await client.post(
                f"/api/orders/{oid}/ship", json={"carrier": "顺丰", "tracking_number": "SF100"}, headers=h
            )
        )
        assert (shipped["status"], shipped["carrier"], shipped["tracking_number"]) == (
            "shipped",
            "顺丰",
            "SF100",
        )
        assert shipped["shipped_at"] is not None and shipped["delivered_at"] is None
        told = await order_frame(ws, oid, "shipped")
        assert told["tracking_number"] == "SF100" and told["carrier"] == "顺丰"

        # Shipped again: a correction (a v1 body, tracking only, keeps the carrier and the shipping time).
        fixed = await ok(
            await client.post(f"/api/orders/{oid}/ship", json={"tracking_number": "SF101"}, headers=h)
        )
        assert (fixed["status"], fixed["carrier"], fixed["tracking_number"]) == ("shipped", "顺丰", "SF101")
        assert fixed["shipped_at"] == shipped["shipped_at"]
        assert (await order_frame(ws, oid, "shipped"))["tracking_number"] == "SF101"

        delivered = await ok(await client.post(f"/api/orders/{oid}/deliver", headers=h))
        assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None
        assert (await order_frame(ws, oid, "delivered"))["delivered_at"] == delivered["delivered_at"]

        received = await ok(await client.post(f"/api/orders/{oid}/receive", headers=auth(ann.token)))
        assert received["status"] == "completed" and received["completed_at"] is not None
        assert (await order_frame(ws, oid, "completed"))["completed_at"] == received["completed_at"]

    mine = await ok(await client.get(f"/api/orders/{oid}", headers=auth(ann.token)))
    assert mine == received
    status, carrier, tracking, shipped_ms, delivered_ms, completed_ms = await sql_order(server, oid)
    assert (status, carrier, tracking) == ("completed", "顺丰", "SF101")
    assert shipped_ms <= delivered_ms <= completed_ms


async def test_the_buyer_confirms_as_the_customer_too(client: httpx.AsyncClient, server: LiveServer) -> None:
    """Receipt is confirmed with the viewer token, or as the customer the viewer is (bearer or cookie)."""
    sale = await new_sale(client, stock=5, per_user_limit=5)
    ann = await join(client, sale, "Ann")
    assert ann.customer is not None
    h = auth(sale.host_token)
    shop_id = (await ok(await client.get("/api/shop", headers=h)))["id"]
    first, second = await paid_order(client, sale, ann), await paid_order(client, sale, ann)
    for o in (first, second):
        await ok(await client.post(f"/api/orders/{o['id']}/ship", json={"tracking_number": "T1"}, headers=h))
    by_token = await client.post(f"/api/orders/{first['id']}/receive", headers=auth(ann.customer))
    assert (await ok(by_token))["status"] == "completed"
    by_cookie = await client.post(
        f"/api/orders/{second['id']}/receive?shop={shop_id}",
        headers={"Cookie": f"lc_c_{shop_id}={ann.customer}"},
    )
    assert (await ok(by_cookie))["status"] == "completed"


async def test_refused_steps_answer_409_and_change_nothing(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=10, per_user_limit=10)
    ann, bob = await join(client, sale, "Ann"), await join(client, sale, "Bob")
    h, a = auth(sale.host_token), auth(ann.token)
    other_host = await new_sale(client, stock=1)
    reserved = await ok(await buy(client, sale.card_id, ann), 201)
    paid = await paid_order(client, sale, ann)
    done = await paid_order(client, sale, ann)
    await ok(await client.post(f"/api/orders/{done['id']}/ship", json={"tracking_number": "T"}, headers=h))
    await ok(await client.post(f"/api/orders/{done['id']}/receive", headers=a))
    refunded = await paid_order(client, sale, ann)
    await ok(await client.post(f"/api/orders/{refunded['id']}/refund", json={}, headers=h))

    ship = {"tracking_number": "SF1"}
    refusals: list[tuple[str, str, dict[str, str], dict[str, Any] | None, int, str]] = [
        ("ship", reserved["id"], h, ship, 409, "invalid_order_state"),
        ("deliver", reserved["id"], h, None, 409, "invalid_order_state"),
        ("receive", reserved["id"], a, None, 409, "invalid_order_state"),
        ("deliver", paid["id"], h, None, 409, "invalid_order_state"),  # it ships: shipped first
        ("receive", paid["id"], a, None, 409, "invalid_order_state"),  # not shipped yet
        ("ship", done["id"], h, ship, 409, "invalid_order_state"),
        ("deliver", done["id"], h, None, 409, "invalid_order_state"),
        ("receive", done["id"], a, None, 409, "invalid_order_state"),
        ("ship", refunded["id"], h, ship, 409, "invalid_order_state"),
        ("receive", refunded["id"], a, None, 409, "invalid_order_state"),
        # Who: another host, a viewer, the host where the buyer confirms, another buyer, nobody.
        ("ship", paid["id"], auth(other_host.host_token), ship, 403, "forbidden"),
        ("ship", paid["id"], a, ship, 403, "forbidden"),
        ("deliver", paid["id"], a, None, 403, "forbidden"),
        ("receive", paid["id"], h, None, 403, "forbidden"),
        ("receive", paid["id"], auth(bob.token), None, 403, "forbidden"),
        ("receive", paid["id"], {}, None, 401, "unauthorized"),
        ("ship", "ord_nope", h, ship, 404, "not_found"),
        ("receive", "ord_nope", a, None, 404, "not_found"),
    ]
    for step, order_id, headers, body, status, code in refusals:
        before = await sql_order(server, order_id) if order_id != "ord_nope" else None
        response = await client.post(f"/api/orders/{order_id}/{step}", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, code), (step, response.text)
        if before is not None:
            assert await sql_order(server, order_id) == before, f"{step} of {order_id} changed it"

    # A product that does not ship goes from paid straight to delivered, then the buyer confirms.
    vouchers = await voucher_card(client, sale.host_token, sale.room_id)
    voucher = await paid_order(client, Sale(sale.host_token, sale.room_id, sale.invite, "", vouchers), ann)
    delivered = await ok(await client.post(f"/api/orders/{voucher['id']}/deliver", headers=h))
    assert delivered["status"] == "delivered" and delivered["shipped_at"] is None
    assert (await ok(await client.post(f"/api/orders/{voucher['id']}/receive", headers=a)))["status"] == (
        "completed"
    )


async def test_a_refund_keeps_a_shipped_order_shipped_until_it_completes_the_refund(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5, price=1000, per_user_limit=5)
    ann = await join(client, sale, "Ann")
    h = auth(sale.host_token)
    order = await paid_order(client, sale, ann)
    oid = order["id"]
    await ok(await client.post(f"/api/orders/{oid}/ship", json={"tracking_number": "SF9"}, headers=h))
    part = await ok(await client.post(f"/api/orders/{oid}/refund", json={"amount": 300}, headers=h))
    assert (part["status"], part["refunded_amount"], part["tracking_number"]) == ("shipped", 300, "SF9")
    delivered = await ok(await client.post(f"/api/orders/{oid}/deliver", headers=h))
    assert (delivered["status"], delivered["refunded_amount"]) == ("delivered", 300)
    rest = await ok(await client.post(f"/api/orders/{oid}/refund", json={}, headers=h))
    assert (rest["status"], rest["refunded_amount"]) == ("refunded", 1000)
    refused = await client.post(f"/api/orders/{oid}/receive", headers=auth(ann.token))
    assert refused.status_code == 409


async def test_the_sweeper_completes_what_nobody_confirmed(
    client: httpx.AsyncClient, server: LiveServer, clock: ShiftedClock
) -> None:
    days = server.settings.auto_complete_days
    sale = await new_sale(client, stock=10, per_user_limit=10)
    voucher_sale = await new_sale(client, stock=1, per_user_limit=10)
    voucher_sale.card_id = await voucher_card(client, voucher_sale.host_token, voucher_sale.room_id)
    ann = await join(client, sale, "Ann")
    vic = await join(client, voucher_sale, "Vic")
    h, hv = auth(sale.host_token), auth(voucher_sale.host_token)
    early = await paid_order(client, sale, ann)
    late = await paid_order(client, sale, ann)
    unshipped = await paid_order(client, sale, ann)
    voucher = await paid_order(client, voucher_sale, vic)
    await ok(await client.post(f"/api/orders/{early['id']}/ship", json={"tracking_number": "E"}, headers=h))
    await ok(await client.post(f"/api/orders/{early['id']}/deliver", headers=h))
    await ok(await client.post(f"/api/orders/{voucher['id']}/deliver", headers=hv))

    async with socket_of(server, sale.room_id, ann.token) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        clock.advance_days(days - 0.1)
        await ok(
            await client.post(f"/api/orders/{late['id']}/ship", json={"tracking_number": "L"}, headers=h)
        )
        await asyncio.sleep(1.0)  # several sweeps: nothing is due yet
        for o, status in (
            (early, "delivered"),
            (voucher, "delivered"),
            (late, "shipped"),
            (unshipped, "paid"),
        ):
            assert (await sql_order(server, o["id"]))[0] == status
        clock.advance_days(0.2)  # past the days of what shipped (or was delivered) first
        completed = await order_frame(ws, early["id"], "completed")
        assert completed["completed_at"] is not None

    async def status_of(order_id: str) -> str:
        for _ in range(50):
            status = (await sql_order(server, order_id))[0]
            if status == "completed":
                break
            await asyncio.sleep(0.1)
        return str(status)

    assert await status_of(voucher["id"]) == "completed"
    assert (await sql_order(server, late["id"]))[0] == "shipped"  # shipped later: its days not yet over
    assert (await sql_order(server, unshipped["id"]))[0] == "paid"  # never shipped: nothing to complete
