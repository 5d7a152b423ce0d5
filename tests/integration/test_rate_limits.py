"""Rate limits against the real app and Redis (SPEC §13, issue 11): each limit answers 429 ``rate_limited``
with ``Retry-After`` at its threshold, changes nothing, and lets the next legitimate request through (another
address, another customer, or the same one once the window has passed); the counters live in Redis, so two
app processes share them. The sign-in code limits and the lockout are tested in ``test_sign_in.py``, chat
and sockets in ``test_limits_transport.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from base.limits import Limit, RateLimits, rate_of
from base.settings import Settings
from live.models import Host, Leader, Viewer
from loadtests.harness import new_card, new_host, new_room, new_sale, sign_in
from shop.models import AfterSale, Payment
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.shop_api import ADDRESS, Buyer, auth, buy, join, ok, pay

#: Every rate limit tested here at a small figure, production's scale.
SMALL = {"limits_scale": 1}


@asynccontextmanager
async def app(tmp_path: Path, redis_url: str, **settings: Any) -> AsyncIterator[LiveServer]:
    url = await fresh_database("sqlite", tmp_path)
    async with LiveServer(make_settings(url, redis_url, tmp_path, **SMALL, **settings)) as live:
        yield live


def from_address(server: LiveServer, address: str) -> httpx.AsyncClient:
    """A client whose requests come from another loopback address (another IP to the server)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30)


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "rate_limited" and body["retry_after"] >= 1
    assert int(response.headers["retry-after"]) == body["retry_after"]


async def count(server: LiveServer, model: Any) -> int:
    async with server.state.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_sign_up_per_ip(tmp_path: Path, redis_url: str) -> None:
    async with app(tmp_path, redis_url, limit_signup_per_ip="3/hour") as server:  # noqa: SIM117
        async with from_address(server, "127.0.0.1") as one, from_address(server, "127.0.0.2") as two:
            for _ in range(3):
                await ok(await one.post("/api/hosts", json={"name": "H"}), 201)
            assert_limited(await one.post("/api/hosts", json={"name": "H"}))
            assert await count(server, Host) == 3  # the refused one made nothing
            await ok(await two.post("/api/hosts", json={"name": "H"}), 201)  # another address is served


async def test_joins_per_ip_and_per_customer(tmp_path: Path, redis_url: str) -> None:
    async with (
        app(
            tmp_path,
            redis_url,
            limit_join_per_ip="6/hour",
            limit_join_per_customer="2/hour",
            limit_sign_in_per_ip="100/hour",
            limit_sign_in_code_per_ip="100/hour",
        ) as server,
        from_address(server, "127.0.0.1") as one,
        from_address(server, "127.0.0.2") as two,
    ):
        host = await new_host(one)
        room = await new_room(one, host)
        body = {"invite": room["invite_token"], "name": "Mei"}
        url = f"/api/rooms/{room['id']}/join"
        mei = await sign_in(one, room["id"])
        for _ in range(2):
            await ok(await one.post(url, json=body, headers=auth(mei)))
        assert_limited(await one.post(url, json=body, headers=auth(mei)))  # Mei: her 3rd join
        others = [await sign_in(one, room["id"]) for _ in range(4)]
        for customer in others[:3]:  # the address's 4th-6th joins
            await ok(await one.post(url, json=body, headers=auth(customer)), 201)
        assert_limited(await one.post(url, json=body, headers=auth(others[3])))  # the address's 7th
        await ok(await two.post(url, json=body, headers=auth(others[3])), 201)  # from elsewhere: served
        async with server.state.sessions() as session:
            viewers = (await session.execute(select(func.count()).select_from(Viewer))).scalar_one()
        assert viewers == 5


async def test_orders_per_customer_and_per_ip(tmp_path: Path, redis_url: str) -> None:
    async with (
        app(
            tmp_path,
            redis_url,
            limit_orders_per_customer="3/hour",
            limit_orders_per_ip="5/hour",
            limit_sign_in_code_per_ip="100/hour",
            limit_sign_in_per_ip="100/hour",
            limit_join_per_ip="100/hour",
        ) as server,
        from_address(server, "127.0.0.1") as one,
        from_address(server, "127.0.0.2") as two,
    ):
        host = await new_host(one)
        room = await new_room(one, host)
        _, card = await new_card(one, host, room["id"], stock=100, per_user_limit=50)

        async def buyer(client: httpx.AsyncClient) -> Buyer:
            token = await sign_in(client, room["id"])
            me = await ok(
                await client.post(
                    f"/api/rooms/{room['id']}/join",
                    json={"invite": room["invite_token"]},
                    headers=auth(token),
                )
            )
            return Buyer(me["viewer_id"], me["token"], me["share_code"])

        mei, ann, bob, cid = [await buyer(one) for _ in range(4)]
        first = await ok(await buy(one, card, mei, key="mei-1"), 201)
        for _ in range(2):
            await ok(await buy(one, card, mei), 201)
        assert_limited(await buy(one, card, mei))  # Mei's 4th order attempt this hour
        replay = await buy(one, card, mei, key="mei-1")  # a retry is no new attempt: it is answered
        assert replay.status_code == 200 and replay.json()["id"] == first["id"]
        await ok(await buy(one, card, ann), 201)  # other customers: served (the address's 4th, 5th)
        await ok(await buy(one, card, bob), 201)
        assert_limited(await buy(one, card, cid))  # the address's 6th order attempt
        await ok(await buy(two, card, cid), 201)  # Cid from another address: served
        card_now = await ok(await one.get(f"/api/cards/{card}", headers=auth(host)))
        assert card_now["stock_left"] == 100 - 6  # the refused orders reserved nothing
        # The buy's rate gate counts per card (it runs inside the card's own Redis call: see
        # docs/benchmarks.md), so another card of the show still takes Mei's order.
        _, other = await new_card(one, host, room["id"], stock=10, per_user_limit=5)
        await ok(await buy(two, other, mei), 201)


async def test_the_counters_are_shared_by_every_process(tmp_path: Path, redis_url: str) -> None:
    """Two app processes on one Redis (two workers, or two machines): the limit is the deployment's."""
    url = await fresh_database("sqlite", tmp_path)
    settings = make_settings(url, redis_url, tmp_path, limits_scale=1, limit_signup_per_ip="4/hour")
    async with LiveServer(settings) as a, LiveServer(settings) as b:  # noqa: SIM117
        async with httpx.AsyncClient(base_url=a.url) as ca, httpx.AsyncClient(base_url=b.url) as cb:
            for client in (ca, cb, ca, cb):
                await ok(await client.post("/api/hosts", json={"name": "H"}), 201)
            assert_limited(await ca.post("/api/hosts", json={"name": "H"}))
            assert_limited(await cb.post("/api/hosts", json={"name": "H"}))


async def test_a_window_passes_and_the_scale_multiplies(redis_url: str) -> None:
    """The library's window, measured: at the threshold refused, a moment after the window served again;
    ``LIVECART_LIMITS_SCALE`` multiplies every limit (a load test raises it instead of switching off)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        limits = RateLimits(redis, Settings(limits_scale=1, limit_orders_per_customer="2/2seconds"))
        await limits.hit(Limit.ORDERS_PER_CUSTOMER, "cus_1")
        await limits.hit(Limit.ORDERS_PER_CUSTOMER, "cus_1")
        with pytest.raises(Exception) as refused:
            await limits.hit(Limit.ORDERS_PER_CUSTOMER, "cus_1")
        assert getattr(refused.value, "code", None) == "rate_limited"
        await asyncio.sleep(4.1)  # two windows: the sliding counter has forgotten both hits
        await limits.hit(Limit.ORDERS_PER_CUSTOMER, "cus_1")
    finally:
        await redis.aclose()
    assert rate_of(Settings(limits_scale=1000), Limit.SIGN_IN_CODE_PER_IP).amount == 10_000
    assert rate_of(Settings(limits_scale=0.01), Limit.SIGN_IN_CODE_PER_PHONE).amount == 1  # never 0


def test_a_rate_that_does_not_parse_is_refused_at_start() -> None:
    from livecart.app import create_app

    with pytest.raises(ValueError, match="LIVECART_LIMIT_JOIN_PER_IP"):
        create_app(Settings(limit_join_per_ip="many per minute"))


async def test_settlement_reports_my_own_and_leader_links_have_their_limits(
    tmp_path: Path, redis_url: str
) -> None:
    """Payouts and roster changes per host, the host's reads per host, a customer's own reads per customer,
    leader links per address: each refuses past its figure and a refused payout or roster change writes
    nothing; another host, customer or address is still served."""
    async with (
        app(
            tmp_path,
            redis_url,
            limit_settlement_per_host="2/hour",
            limit_reports_per_host="3/hour",
            limit_me_per_customer="2/hour",
            limit_leader_link_per_ip="2/hour",
            limit_sign_in_per_ip="100/hour",
            limit_sign_in_code_per_ip="100/hour",
        ) as server,
        from_address(server, "127.0.0.1") as one,
        from_address(server, "127.0.0.2") as two,
    ):
        host, other = await new_host(one), await new_host(one)
        room = await new_room(one, host)
        mei = await sign_in(one, room["id"])
        leader = await ok(
            await one.post("/api/leaders", json={"phone": "+8613900000001"}, headers=auth(host)), 201
        )
        await ok(await one.patch(f"/api/leaders/{leader['id']}", json={"name": "阿梅"}, headers=auth(host)))
        assert_limited(
            await one.post("/api/payouts", json={"promoter_id": leader["customer_id"]}, headers=auth(host))
        )
        assert_limited(await one.post("/api/leaders", json={"phone": "+8613900000002"}, headers=auth(host)))
        async with server.state.sessions() as session:
            assert (await session.execute(select(func.count()).select_from(Leader))).scalar_one() == 1
        await ok(await one.post("/api/leaders", json={"phone": "+8613900000003"}, headers=auth(other)), 201)

        for path in ("/api/leaders", "/api/customers", "/api/commissions"):
            await ok(await one.get(path, headers=auth(host)))
        assert_limited(await one.get("/api/payouts", headers=auth(host)))
        await ok(await one.get("/api/payouts", headers=auth(other)))

        for _ in range(2):
            await ok(await one.get("/api/me", headers=auth(mei)))
        assert_limited(await one.get("/api/me/customers", headers=auth(mei)))

        link = f"/j/{leader['code']}"
        for _ in range(2):
            assert (await one.get(link)).status_code == 302
        assert_limited(await one.get(f"{link}/qr.svg"))
        assert (await two.get(link)).status_code == 302


async def test_after_sale_requests_per_customer_and_the_shops_after_sale_reads(
    tmp_path: Path, redis_url: str
) -> None:
    """A buyer's after-sale requests and withdrawals per customer (a refused one writes nothing; another
    buyer is served); the host's after-sale and refund lists count as the host's reads, sending a refund
    again as the host's settlement changes."""
    async with (
        app(
            tmp_path,
            redis_url,
            limit_after_sale_per_customer="2/hour",
            limit_reports_per_host="2/hour",
            limit_settlement_per_host="1/hour",
            limit_sign_in_per_ip="100/hour",
            limit_sign_in_code_per_ip="100/hour",
            limit_join_per_ip="100/hour",
        ) as server,
        from_address(server, "127.0.0.1") as one,
    ):
        sale = await new_sale(one, stock=10, per_user_limit=5)
        mei, ann = await join(one, sale, "Mei"), await join(one, sale, "Ann")
        orders = []
        for buyer in (mei, mei, ann):
            order = await ok(await buy(one, sale.card_id, buyer), 201)
            await pay(one, order["id"], buyer)
            orders.append(order["id"])
        ask = {"kind": "refund", "reason": "坏了"}
        filed = await ok(
            await one.post(f"/api/orders/{orders[0]}/after-sale", json=ask, headers=auth(mei.token)), 201
        )
        await ok(await one.post(f"/api/after-sales/{filed['id']}/withdraw", headers=auth(mei.token)))
        # Mei's third after-sale call this hour, as her customer this time: the same customer.
        assert mei.customer is not None
        assert_limited(
            await one.post(f"/api/orders/{orders[1]}/after-sale", json=ask, headers=auth(mei.customer))
        )
        async with server.state.sessions() as session:
            assert (await session.execute(select(func.count()).select_from(AfterSale))).scalar_one() == 1
        await ok(
            await one.post(f"/api/orders/{orders[2]}/after-sale", json=ask, headers=auth(ann.token)), 201
        )

        h = auth(sale.host_token)
        await ok(await one.post(f"/api/orders/{orders[1]}/refund", json={}, headers=h))
        await ok(await one.get("/api/after-sales", headers=h))
        (refund,) = await ok(await one.get("/api/refunds", headers=h))
        assert_limited(await one.get("/api/after-sales?status=requested", headers=h))
        assert_limited(await one.get("/api/refunds", headers=h))
        assert (await one.post(f"/api/refunds/{refund['id']}/retry", headers=h)).status_code == 409  # sent
        assert_limited(await one.post(f"/api/refunds/{refund['id']}/retry", headers=h))


async def test_checkouts_per_customer_and_provider_notifications_per_address(
    tmp_path: Path, redis_url: str
) -> None:
    """A buyer's checkouts (each one a call to the provider) per customer: a refused one writes no payment,
    another buyer is served. Payment notifications per address, counted before their signature is checked
    (a flood of forgeries costs no RSA work past the limit): another address is still heard."""
    async with (
        app(
            tmp_path,
            redis_url,
            limit_checkout_per_customer="3/hour",
            limit_notify_per_ip="2/hour",
            limit_sign_in_per_ip="100/hour",
            limit_sign_in_code_per_ip="100/hour",
            limit_join_per_ip="100/hour",
        ) as server,
        from_address(server, "127.0.0.1") as one,
        from_address(server, "127.0.0.2") as two,
    ):
        sale = await new_sale(one, stock=10, per_user_limit=5)
        mei, ann = await join(one, sale, "Mei"), await join(one, sale, "Ann")
        order = await ok(await buy(one, sale.card_id, mei), 201)
        pay_it = {"address": ADDRESS}
        await ok(await one.get(f"/api/orders/{order['id']}/checkout", headers=auth(mei.token)))
        await ok(await one.post(f"/api/orders/{order['id']}/pay", json=pay_it, headers=auth(mei.token)))
        await ok(await one.post(f"/api/orders/{order['id']}/pay", json=pay_it, headers=auth(mei.token)))
        payments = await count(server, Payment)
        other = await ok(await buy(one, sale.card_id, mei), 201)
        assert_limited(await one.post(f"/api/orders/{other['id']}/pay", json=pay_it, headers=auth(mei.token)))
        assert_limited(await one.get(f"/api/orders/{other['id']}/checkout", headers=auth(mei.token)))
        assert await count(server, Payment) == payments
        anns = await ok(await buy(one, sale.card_id, ann), 201)
        await ok(await one.post(f"/api/orders/{anns['id']}/pay", json=pay_it, headers=auth(ann.token)))

        forged = {"LiveCart-Signature": "t=1,v1=" + "0" * 64}
        for _ in range(2):
            r = await one.post("/api/payments/stripe/webhook", content=b"{}", headers=forged)
            assert r.status_code == 422 and r.json()["error"] == "unknown_provider", r.text  # no Stripe here
        assert_limited(await one.post("/api/payments/wechat/notify", content=b"{}", headers=forged))
        r = await two.post("/api/payments/alipay/notify", content=b"{}", headers=forged)
        assert r.status_code == 422, r.text
