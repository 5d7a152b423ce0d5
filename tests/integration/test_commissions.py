"""The one-level commission ledger on SQLite and PostgreSQL with the real Redis: a referred order that is paid
accrues ``floor(rate x amount)`` to its referrer, once; an order whose referrer is its own buyer accrues
nothing (SPEC §1 promoter: no self-referral), whichever way such an order came about.

Joining never makes a viewer their own referrer, so these tests make the order self-referred directly: a
viewer token signed by the server's own ``TokenSigner`` that names the viewer as its own referrer (what a
bug in join would hand out), and, at the level of ``commissions.accrue``, a row whose ``referrer_id`` is its
``buyer_id``.
"""

from __future__ import annotations

import httpx
from sqlalchemy import select

from shop import commissions
from shop.models import Commission, Order
from tests.conftest import LiveServer
from tests.shop_api import Buyer, auth, buy, join, new_sale, ok, pay

RATE_BPS = 1000  # make_settings leaves the default commission rate: 10 %


async def ledger(server: LiveServer, order_id: str) -> list[tuple[str, str, int]]:
    """The ledger rows of one order: (kind, promoter, amount)."""
    async with server.state.sessions() as session:
        rows = (await session.execute(select(Commission).where(Commission.order_id == order_id))).scalars()
        return sorted((c.kind, c.promoter_id, c.amount) for c in rows)


async def test_a_self_referred_paid_order_earns_no_commission(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    assert server.settings.commission_rate_bps == RATE_BPS
    sale = await new_sale(client, stock=5, price=990, per_user_limit=2)
    ann = await join(client, sale, "Ann")
    bob = await join(client, sale, "Bob", invite=ann.share_code)  # Ann's real referral: the control
    token = server.state.signer.viewer_token(ann.viewer_id, sale.room_id, ann.viewer_id)
    self_referred = Buyer(ann.viewer_id, token, ann.share_code)

    mine = await ok(await buy(client, sale.card_id, self_referred), 201)
    assert (mine["buyer_id"], mine["referrer_id"]) == (ann.viewer_id, ann.viewer_id)
    assert (await pay(client, mine["id"], self_referred))["order"]["status"] == "paid"
    referred = await ok(await buy(client, sale.card_id, bob), 201)
    assert (await pay(client, referred["id"], bob))["order"]["status"] == "paid"

    assert await ledger(server, mine["id"]) == [], "a self-referred order accrued commission"
    assert await ledger(server, referred["id"]) == [("accrual", ann.viewer_id, 99)]
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    earned = {p["viewer_id"]: p["commission"] for p in stats["promoters"]}
    assert earned[ann.viewer_id] == 99, stats["promoters"]  # Bob's order only, not her own

    refunded = await client.post(
        f"/api/orders/{mine['id']}/refund", json={"restock": True}, headers=auth(sale.host_token)
    )
    assert (await ok(refunded, 200))["status"] == "refunded"
    assert await ledger(server, mine["id"]) == [], "nothing accrued, so nothing to claw back"


async def test_accrue_credits_the_referrer_and_never_the_buyer(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    # A guest room (v1): attribution is the order's referrer viewer (a customer's is their binding).
    sale = await new_sale(client, stock=5, price=995, sign_in="guest")
    ann, bob = await join(client, sale, "Ann", guest=True), await join(client, sale, "Bob", guest=True)
    placed = await ok(await buy(client, sale.card_id, ann), 201)
    now = server.state.clock.now_ms()
    terms = commissions.Terms.of(server.settings)

    async with server.state.sessions() as session, session.begin():
        order = await session.get(Order, placed["id"])
        assert order is not None
        assert await commissions.accrue(session, order, terms=terms, now_ms=now) == 0  # no referrer
        order.referrer_id = order.buyer_id  # self-referred
        await session.flush()
        assert await commissions.accrue(session, order, terms=terms, now_ms=now) == 0
    assert await ledger(server, placed["id"]) == []

    async with server.state.sessions() as session, session.begin():
        order = await session.get(Order, placed["id"])
        assert order is not None
        order.referrer_id = bob.viewer_id
        await session.flush()
        assert await commissions.accrue(session, order, terms=terms, now_ms=now) == 99  # floor(99.5)
        await commissions.accrue(session, order, terms=terms, now_ms=now)  # at most once
    assert await ledger(server, placed["id"]) == [("accrual", bob.viewer_id, 99)]
