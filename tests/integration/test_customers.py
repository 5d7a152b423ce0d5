"""Who a buyer is, end to end on SQLite and PostgreSQL with the real Redis (SPEC §8, issue 11): in a verified
room one customer is one viewer, whatever invite, share code or device they come back with, so the per-buyer
limit (counted by the Lua gate per viewer) counts customers, also under 50 concurrent attempts; nobody is
their own referrer; a customer of one host is a stranger at another.

Each of these failed before customers existed: every join was a new viewer with a fresh limit.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from live.models import Invite, Viewer
from loadtests.harness import new_phone, sign_in
from shop.models import Commission
from tests.conftest import LiveServer
from tests.shop_api import Buyer, auth, buy, join, new_sale, ok, pay


async def viewers_of(server: LiveServer, room_id: str) -> list[tuple[str, str | None]]:
    async with server.state.sessions() as session:
        rows = await session.execute(select(Viewer.id, Viewer.customer_id).where(Viewer.room_id == room_id))
        return [(v, c) for v, c in rows.all()]


async def invite_for(
    client: httpx.AsyncClient, host_token: str, room_id: str, max_uses: int = 1
) -> dict[str, Any]:
    body = {"max_uses": max_uses}
    made: dict[str, Any] = await ok(
        await client.post(f"/api/rooms/{room_id}/invites", json=body, headers=auth(host_token)), 201
    )
    return made


async def join_as(
    client: httpx.AsyncClient, room_id: str, customer: str, invite: str, *, ref: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"invite": invite, "name": "Mei"}
    if ref:
        body["ref"] = ref
    return await client.post(f"/api/rooms/{room_id}/join", json=body, headers=auth(customer))


async def test_one_customer_through_five_ways_in_is_one_viewer_with_one_limit(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=20, per_user_limit=2)
    ann = await join(client, sale, "Ann")  # two promoters whose share codes Mei will use
    bob = await join(client, sale, "Bob")
    invite = await invite_for(client, sale.host_token, sale.room_id)
    phone = new_phone()
    mei = await sign_in(client, sale.room_id, phone)

    first = await join_as(client, sale.room_id, mei, sale.invite)
    assert first.status_code == 201, first.text
    viewer = first.json()
    tokens = [viewer["token"]]
    # Four more ways in: a per-invitee invite, two promoters' share codes, and another device (a fresh
    # client with no cookie, signed in again with the same phone typed another way).
    for way in (invite["token"], ann.share_code, bob.share_code):
        again = await join_as(client, sale.room_id, mei, way, ref=bob.share_code)
        assert again.status_code == 200, again.text
        assert again.json()["viewer_id"] == viewer["viewer_id"]
        tokens.append(again.json()["token"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as phone_two:
        local = "139" + phone[6:] if phone.startswith("+86139") else phone
        mei_there = await sign_in(phone_two, sale.room_id, local)
        other_device = await join_as(phone_two, sale.room_id, mei_there, ann.share_code)
    assert other_device.status_code == 200 and other_device.json()["viewer_id"] == viewer["viewer_id"]
    assert other_device.json()["customer_id"] == viewer["customer_id"]
    tokens.append(other_device.json()["token"])

    in_room = await viewers_of(server, sale.room_id)
    assert [c for v, c in in_room if v == viewer["viewer_id"]] == [viewer["customer_id"]]
    assert len(in_room) == 3  # Ann, Bob, Mei: one viewer for Mei's five ways in
    assert viewer["referrer_id"] is None  # first touch was the room's own invite: nobody's referral
    async with server.state.sessions() as session:
        assert (await session.get(Invite, invite["id"])).uses == 0  # a return takes no use

    # The limit is 2 units for Mei, whichever of her tokens buys.
    results = [await buy(client, sale.card_id, Buyer(viewer["viewer_id"], t, "")) for t in tokens]
    assert [r.status_code for r in results] == [201, 201, 409, 409, 409]
    assert {r.json()["error"] for r in results[2:]} == {"limit_exceeded"}


async def test_fifty_concurrent_joins_and_buys_of_one_customer_stay_one_viewer_within_the_limit(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=100, per_user_limit=3)
    promoters = [await join(client, sale, f"P{i}") for i in range(3)]
    single_use = await invite_for(client, sale.host_token, sale.room_id, max_uses=1)
    mei = await sign_in(client, sale.room_id)
    ways = [sale.invite, single_use["token"], *(p.share_code for p in promoters)]

    async def attempt(i: int) -> tuple[int, str, int]:
        joined = await join_as(client, sale.room_id, mei, ways[i % len(ways)])
        assert joined.status_code in (200, 201), joined.text
        me = joined.json()
        bought = await buy(
            client, sale.card_id, Buyer(me["viewer_id"], me["token"], ""), key=uuid.uuid4().hex
        )
        return joined.status_code, me["viewer_id"], bought.status_code

    outcomes = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert len({viewer for _, viewer, _ in outcomes}) == 1
    assert [status for status, _, _ in outcomes].count(201) == 1  # the one join that made the viewer
    assert [bought for _, _, bought in outcomes].count(201) == 3  # exactly the limit, never more
    assert set(bought for _, _, bought in outcomes) == {201, 409}
    assert len(await viewers_of(server, sale.room_id)) == 4
    async with server.state.sessions() as session:
        uses = (await session.get(Invite, single_use["id"])).uses
    assert uses <= 1  # only a join that made the viewer can have taken its use
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(sale.host_token)))
    assert card["stock_left"] == 97


async def test_self_referral_earns_nothing_and_a_real_referral_does(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """Ann shares her link, then opens it herself (another device, the same phone): still her own viewer,
    no referrer, and her paid order earns her nothing; Bob's order through her link earns her 10 %."""
    sale = await new_sale(client, stock=10, price=1000, per_user_limit=5)
    phone = new_phone()
    ann_token = await sign_in(client, sale.room_id, phone)
    ann = (await join_as(client, sale.room_id, ann_token, sale.invite)).json()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as other_device:
        again = await sign_in(other_device, sale.room_id, phone)
        via_own_link = await join_as(
            other_device, sale.room_id, again, ann["share_code"], ref=ann["share_code"]
        )
    assert via_own_link.status_code == 200
    assert via_own_link.json()["viewer_id"] == ann["viewer_id"] and via_own_link.json()["referrer_id"] is None
    ann_buyer = Buyer(ann["viewer_id"], via_own_link.json()["token"], ann["share_code"])
    own = await ok(await buy(client, sale.card_id, ann_buyer), 201)
    assert own["referrer_id"] is None
    await pay(client, own["id"], ann_buyer)

    bob = await join(client, sale, "Bob", invite=ann["share_code"])
    theirs = await ok(await buy(client, sale.card_id, bob), 201)
    assert theirs["referrer_id"] == ann["viewer_id"]
    await pay(client, theirs["id"], bob)

    async with server.state.sessions() as session:
        earned = (
            await session.execute(
                select(func.coalesce(func.sum(Commission.amount), 0)).where(
                    Commission.promoter_id == ann["viewer_id"]
                )
            )
        ).scalar_one()
    assert earned == 100  # 10 % of Bob's 1,000; nothing of her own
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    assert {p["viewer_id"]: p["commission"] for p in stats["promoters"]} == {ann["viewer_id"]: 100}


async def test_a_verified_room_admits_only_its_hosts_signed_in_customers(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5)
    other = await new_sale(client, stock=5, host="Other host")
    body = {"invite": sale.invite, "name": "Mei"}
    url = f"/api/rooms/{sale.room_id}/join"

    nobody = await client.post(url, json=body)
    assert nobody.status_code == 401 and nobody.json()["error"] == "sign_in_required"
    assert nobody.headers["www-authenticate"] == "Bearer"
    elsewhere = await sign_in(client, other.room_id)  # a customer of another host's shop
    stranger = await client.post(url, json=body, headers=auth(elsewhere))
    assert stranger.status_code == 401 and stranger.json()["error"] == "sign_in_required"
    forged = await client.post(url, json=body, headers=auth("c.forged.token"))
    assert forged.status_code == 401
    host = await client.post(url, json=body, headers=auth(sale.host_token))
    assert host.status_code == 401  # a host session is not a customer
    assert await viewers_of(server, sale.room_id) == []

    # The same phone at the other host is another customer there.
    phone = new_phone()
    here = await ok(
        await join_as(client, sale.room_id, await sign_in(client, sale.room_id, phone), sale.invite)
    )
    there = await ok(
        await join_as(client, other.room_id, await sign_in(client, other.room_id, phone), other.invite)
    )
    assert here["customer_id"] != there["customer_id"]


async def test_the_cookie_signs_the_page_in(client: httpx.AsyncClient, server: LiveServer) -> None:
    """The pages keep the customer signed in with the HttpOnly cookie sign-in sets: a join with no bearer
    but the cookie is the customer's."""
    sale = await new_sale(client, stock=5)
    phone = new_phone()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as browser:
        sent = await ok(
            await browser.post(f"/api/rooms/{sale.room_id}/sign-in/code", json={"phone": phone}), 202
        )
        signed = await browser.post(
            f"/api/rooms/{sale.room_id}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
        )
        cookie = signed.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        joined = await browser.post(f"/api/rooms/{sale.room_id}/join", json={"invite": sale.invite})
        assert joined.status_code == 201 and joined.json()["customer_id"] == signed.json()["customer_id"]
        assert joined.json()["name"]  # a default display name when none is given


async def test_guest_rooms_keep_v1_joins(client: httpx.AsyncClient, server: LiveServer) -> None:
    """A guest room: anyone with the invite joins under a name, a new viewer each time (limits can be
    dodged there, which the console says); a signed-in customer is still one viewer."""
    host = await ok(await client.post("/api/hosts", json={"name": "H"}), 201)
    room = await ok(
        await client.post(
            "/api/rooms", json={"title": "Open", "sign_in": "guest"}, headers=auth(host["token"])
        ),
        201,
    )
    assert room["sign_in"] == "guest"
    url = f"/api/rooms/{room['id']}/join"
    a = await ok(await client.post(url, json={"invite": room["invite_token"], "name": "A"}), 201)
    b = await ok(await client.post(url, json={"invite": room["invite_token"], "name": "A"}), 201)
    assert a["viewer_id"] != b["viewer_id"] and a["customer_id"] is None
    nameless = await client.post(url, json={"invite": room["invite_token"]})
    assert nameless.status_code == 422
    mei = await sign_in(client, room["id"])
    c1 = await ok(await join_as(client, room["id"], mei, room["invite_token"]))
    c2 = await ok(await join_as(client, room["id"], mei, a["share_code"]))
    assert c1["viewer_id"] == c2["viewer_id"] and c1["customer_id"] is not None
