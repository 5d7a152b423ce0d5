"""Live changes to a sale: price cuts, added stock, closing, windows, ending the show, shipping."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, buy, join, new_sale, ok, pay, sign_in


async def test_price_cut_applies_to_new_reservations_only(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=5, price=1000)
    a, b = await join(client, sale, "A"), await join(client, sale, "B")
    before = await ok(await buy(client, sale.card_id, a), 201)
    card = await ok(
        await client.patch(f"/api/cards/{sale.card_id}", json={"price": 700}, headers=auth(sale.host_token))
    )
    assert card["price"] == 700
    after = await ok(await buy(client, sale.card_id, b), 201)
    assert (before["amount"], after["amount"]) == (1000, 700)
    paid = await pay(client, before["id"], a)
    assert paid["order"]["amount"] == 1000  # the reservation keeps the price it was made at


async def test_adding_stock_reopens_a_sold_out_sale(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=1)
    a, b = await join(client, sale, "A"), await join(client, sale, "B")
    await ok(await buy(client, sale.card_id, a), 201)
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(b.token)))
    assert card["status"] == "sold_out" and card["stock_left"] == 0
    assert (await buy(client, sale.card_id, b)).json()["error"] == "sold_out"
    card = await ok(
        await client.patch(f"/api/cards/{sale.card_id}", json={"add_stock": 2}, headers=auth(sale.host_token))
    )
    assert (card["stock_total"], card["stock_left"], card["status"]) == (3, 2, "open")
    assert (await buy(client, sale.card_id, b)).status_code == 201


async def test_concurrent_add_stock_and_buys_stay_exact(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=10)
    buyers = await asyncio.gather(*(join(client, sale, f"B{i}") for i in range(40)))
    adds = [
        client.patch(f"/api/cards/{sale.card_id}", json={"add_stock": 3}, headers=auth(sale.host_token))
        for _ in range(5)
    ]
    results = await asyncio.gather(*(buy(client, sale.card_id, b) for b in buyers), *adds)
    sold = sum(1 for r in results[:40] if r.status_code == 201)
    assert all(r.status_code in (201, 409) for r in results[:40])
    assert all(r.status_code == 200 for r in results[40:])
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(sale.host_token)))
    assert card["stock_total"] == 25 and card["stock_left"] == 25 - sold and 10 <= sold <= 25


class SteppedClock:
    """The app's clock, still until the test moves it (``create_app(settings, clock=...)``)."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def now_ms(self) -> int:
        return self.ms


async def test_closed_and_elapsed_sales_refuse_buyers(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A 1 s sale window on the app's clock, moved by the test: open up to its last millisecond, closed from
    its end on; however slow the machine, no real second has to pass."""
    clock = SteppedClock()
    settings = make_settings(database_url, redis_url, tmp_path)
    async with (
        LiveServer(settings, clock=clock) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=5, per_user_limit=2, duration_seconds=1)
        a = await join(client, sale, "A")
        assert (await buy(client, sale.card_id, a)).status_code == 201
        clock.ms += 999  # the window's last millisecond
        assert (await buy(client, sale.card_id, a)).status_code == 201
        clock.ms += 1
        late = await buy(client, sale.card_id, a)
        assert late.status_code == 409 and late.json()["error"] == "sale_not_open"
        card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
        assert card["status"] == "closed"

        other = await new_sale(client, stock=5)
        b = await join(client, other, "B")
        closed = await ok(
            await client.post(f"/api/cards/{other.card_id}/close", headers=auth(other.host_token))
        )
        assert closed["status"] == "closed"
        assert (await buy(client, other.card_id, b)).json()["error"] == "sale_not_open"


async def test_pinned_card_is_not_on_sale_until_opened(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=5, open_sale=False)
    a = await join(client, sale, "A")
    assert (await buy(client, sale.card_id, a)).json()["error"] == "sale_not_open"
    await ok(await client.post(f"/api/cards/{sale.card_id}/open", headers=auth(sale.host_token)))
    assert (await buy(client, sale.card_id, a)).status_code == 201


async def test_ending_the_show_closes_its_cards(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=5)
    a = await join(client, sale, "A")
    ended = await ok(await client.post(f"/api/rooms/{sale.room_id}/end", headers=auth(sale.host_token)))
    assert ended["status"] == "ended"
    assert (await buy(client, sale.card_id, a)).json()["error"] == "sale_not_open"
    again = await client.post(f"/api/rooms/{sale.room_id}/live", headers=auth(sale.host_token))
    assert again.status_code == 409
    # Nobody joins an ended show: neither a newcomer (signed in) nor A coming back.
    for customer in (await sign_in(client, sale.room_id), a.customer or ""):
        joined = await client.post(
            f"/api/rooms/{sale.room_id}/join",
            json={"invite": sale.invite, "name": "Late"},
            headers=auth(customer),
        )
        assert joined.status_code == 403 and joined.json()["error"] == "invalid_invite", joined.text


async def test_ship_a_paid_order(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=5)
    a = await join(client, sale, "A")
    order = await ok(await buy(client, sale.card_id, a), 201)
    h = auth(sale.host_token)
    unpaid = await client.post(f"/api/orders/{order['id']}/ship", json={"tracking_number": "SF1"}, headers=h)
    assert unpaid.status_code == 409
    await pay(client, order["id"], a)
    shipped = await ok(
        await client.post(f"/api/orders/{order['id']}/ship", json={"tracking_number": "SF1"}, headers=h)
    )
    assert shipped["tracking_number"] == "SF1"
    mine = await ok(await client.get(f"/api/orders/{order['id']}", headers=auth(a.token)))
    assert mine["tracking_number"] == "SF1"


async def test_first_touch_attribution_and_one_level(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client, stock=5)
    ann = await join(client, sale, "Ann")
    bob = await join(client, sale, "Bob", invite=ann.share_code)
    cat = await join(client, sale, "Cat", invite=bob.share_code)  # Ann earns nothing on Cat: one level
    # Bob, signed in as before, rejoins through Cat's link: the same viewer, and his referrer stays Ann
    # (first touch).
    again = await ok(
        await client.post(
            f"/api/rooms/{sale.room_id}/join",
            json={"invite": cat.share_code, "name": "Bob"},
            headers=auth(bob.customer or ""),
        ),
        200,
    )
    assert again["viewer_id"] == bob.viewer_id and again["referrer_id"] == ann.viewer_id
    order = await ok(await buy(client, sale.card_id, cat), 201)
    await pay(client, order["id"], cat)
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    earned = {p["viewer_id"]: p["commission"] for p in stats["promoters"]}
    assert earned == {ann.viewer_id: 0, bob.viewer_id: 99}
