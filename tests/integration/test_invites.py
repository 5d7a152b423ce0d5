"""Per-invitee invites and share links over HTTP, on SQLite and PostgreSQL with the real Redis (SPEC §2
invariant 8, §1 promoter, §8 customers): create, list and revoke; uses consumed atomically, also under
concurrent joins; expired, tampered, revoked, over-used, wrong-room and wrong-purpose tokens refused with
nothing written; attribution (first touch, no self-referral, one level) and commission exact through pay
and refund.

Rooms are verified, as new rooms are: whoever joins has signed in as a customer of the room's host, an
invite's use is taken by a customer's first join only, and the same customer coming back (another invite,
a share code, another device) is the same viewer and takes none. Where a test is about v1 guests (a new
viewer per join, a returning guest known by their viewer token) it makes a ``guest`` room and says so.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from identity.tokens import TokenSigner
from live.models import Invite, Viewer
from shop.models import Commission
from tests.conftest import LiveServer, make_settings
from tests.shop_api import Buyer, Sale, auth, buy, join, new_phone, new_sale, ok, pay, sign_in

WEEK_S = 7 * 24 * 3600


# -- helpers -------------------------------------------------------------------------------------------


def assert_invalid_invite(r: httpx.Response, detail_has: str) -> None:
    assert r.status_code == 403, f"expected 403 invalid_invite, got {r.status_code} {r.text}"
    body = r.json()
    assert body["error"] == "invalid_invite", body
    assert detail_has in body["detail"], body


def assert_sign_in_required(r: httpx.Response) -> None:
    assert r.status_code == 401, f"expected 401 sign_in_required, got {r.status_code} {r.text}"
    assert r.json()["error"] == "sign_in_required", r.text


async def host_room(
    client: httpx.AsyncClient, title: str = "Show", *, sign_in: str = "verified"
) -> tuple[dict[str, str], str]:
    host = await ok(await client.post("/api/hosts", json={"name": "Host"}), 201)
    h = auth(host["token"])
    body = {"title": title, "sign_in": sign_in}
    room = await ok(await client.post("/api/rooms", json=body, headers=h), 201)
    assert room["sign_in"] == sign_in
    return h, str(room["id"])


async def customer(client: httpx.AsyncClient, room_id: str, phone: str | None = None) -> dict[str, str]:
    """A buyer signed in at the room's shop (a new one, or the owner of ``phone`` again): their headers."""
    return auth(await sign_in(client, room_id, phone))


async def join_as(
    client: httpx.AsyncClient, room_id: str, who: dict[str, str], invite: str, name: str = "Guest", **kw: Any
) -> httpx.Response:
    return await client.post(f"/api/rooms/{room_id}/join", json=join_body(invite, name, **kw), headers=who)


async def new_invite(
    client: httpx.AsyncClient, headers: dict[str, str], room_id: str, **body: Any
) -> dict[str, Any]:
    return await ok(await client.post(f"/api/rooms/{room_id}/invites", json=body, headers=headers), 201)  # type: ignore[no-any-return]


async def invites_of(client: httpx.AsyncClient, headers: dict[str, str], room_id: str) -> dict[str, Any]:
    listed = await ok(await client.get(f"/api/rooms/{room_id}/invites", headers=headers), 200)
    return {i["id"]: i for i in listed}


def join_body(invite: str, name: str = "Guest", ref: str | None = None) -> dict[str, Any]:
    return {"invite": invite, "name": name, **({"ref": ref} if ref else {})}


async def viewers_in(server: LiveServer, room_id: str) -> int:
    async with server.state.sessions() as session:
        return int(
            (await session.execute(select(func.count()).where(Viewer.room_id == room_id))).scalar_one()
        )


async def uses_in_sql(server: LiveServer, invite_id: str) -> int:
    async with server.state.sessions() as session:
        return int((await session.execute(select(Invite.uses).where(Invite.id == invite_id))).scalar_one())


async def referrer_in_sql(server: LiveServer, viewer_id: str) -> str | None:
    async with server.state.sessions() as session:
        viewer = await session.get(Viewer, viewer_id)
        assert viewer is not None
        referrer: str | None = viewer.referrer_id
        return referrer


def epoch_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


# -- create, list, revoke ------------------------------------------------------------------------------


async def test_create_list_and_revoke(client: httpx.AsyncClient, server: LiveServer) -> None:
    h, room_id = await host_room(client)
    before = int(time.time() * 1000)
    aunt = await new_invite(client, h, room_id, label="  Aunt Li ", max_uses=2, expires_in_seconds=3600)
    assert aunt["id"].startswith("inv_") and aunt["room_id"] == room_id
    assert (aunt["label"], aunt["max_uses"], aunt["uses"], aunt["revoked"]) == ("Aunt Li", 2, 0, False)
    assert aunt["token"].startswith("i.")
    base = server.settings.base_url.rstrip("/")
    assert aunt["url"] == f"{base}/r/{room_id}?invite={aunt['token']}"
    assert before + 3_600_000 - 1000 <= epoch_ms(aunt["expires_at"]) <= int(time.time() * 1000) + 3_600_000

    plain = await new_invite(client, h, room_id)  # the defaults: one use, a week
    assert (plain["label"], plain["max_uses"]) == (None, 1)
    assert abs(epoch_ms(plain["expires_at"]) - epoch_ms(plain["created_at"]) - WEEK_S * 1000) <= 1

    listed = await invites_of(client, h, room_id)
    assert set(listed) == {aunt["id"], plain["id"]}
    assert listed[aunt["id"]] == aunt  # the same token and link as when it was made

    # Aunt Li signs in and joins; the count shows it; then the host revokes it and nobody new gets in with it.
    first = await ok(await join_as(client, room_id, await customer(client, room_id), aunt["token"]), 201)
    assert (await invites_of(client, h, room_id))[aunt["id"]]["uses"] == 1
    r = await client.delete(f"/api/rooms/{room_id}/invites/{aunt['id']}", headers=h)
    revoked = await ok(r, 200)
    assert (revoked["id"], revoked["revoked"], revoked["uses"]) == (aunt["id"], True, 1)
    assert (await invites_of(client, h, room_id))[aunt["id"]]["revoked"] is True
    assert (await invites_of(client, h, room_id))[plain["id"]]["revoked"] is False
    again = await client.delete(f"/api/rooms/{room_id}/invites/{aunt['id']}", headers=h)
    assert (await ok(again, 200))["revoked"] is True  # idempotent
    uncle = await customer(client, room_id)
    assert_invalid_invite(await join_as(client, room_id, uncle, aunt["token"], "Uncle"), "revoked")
    assert await uses_in_sql(server, aunt["id"]) == 1
    assert await viewers_in(server, room_id) == 1
    # Whoever joined before the revocation keeps their viewer token.
    assert (await client.get(f"/api/rooms/{room_id}", headers=auth(first["token"]))).status_code == 200


async def test_only_the_rooms_host_manages_its_invites(client: httpx.AsyncClient, server: LiveServer) -> None:
    h, room_id = await host_room(client)
    other_h, other_room = await host_room(client, "Other show")
    inv = await new_invite(client, h, room_id)
    buyer = await customer(client, room_id)
    viewer = await ok(await join_as(client, room_id, buyer, inv["token"]), 201)
    paths = (f"/api/rooms/{room_id}/invites", f"/api/rooms/{room_id}/invites/{inv['id']}")

    for headers, status, code in (
        (other_h, 403, "forbidden"),
        (auth(viewer["token"]), 403, "forbidden"),
        (buyer, 403, "forbidden"),  # a customer token only signs in and joins
        ({}, 401, "unauthorized"),
        (auth(inv["token"]), 401, "unauthorized"),  # an invite is never a bearer token
    ):
        for method, path in (("POST", paths[0]), ("GET", paths[0]), ("DELETE", paths[1])):
            r = await client.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert (r.status_code, r.json()["error"]) == (status, code), (method, path, headers, r.text)
    assert set(await invites_of(client, h, room_id)) == {inv["id"]}
    assert (await invites_of(client, h, room_id))[inv["id"]]["revoked"] is False

    # Another room's invite id through this room, unknown ids and rooms: 404.
    theirs = await new_invite(client, other_h, other_room)
    for path in (f"/api/rooms/{room_id}/invites/{theirs['id']}", f"/api/rooms/{room_id}/invites/inv_nope"):
        r = await client.delete(path, headers=h)
        assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
    assert (await invites_of(client, other_h, other_room))[theirs["id"]]["revoked"] is False
    r = await client.post("/api/rooms/rm_nope/invites", json={}, headers=h)
    assert r.status_code == 404, r.text

    # Bad bodies: 422, nothing made.
    for body in ({"max_uses": 0}, {"max_uses": "2"}, {"expires_in_seconds": 0}, {"label": "x" * 101}):
        r = await client.post(paths[0], json=body, headers=h)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", (body, r.text)
    assert set(await invites_of(client, h, room_id)) == {inv["id"]}

    # An ended show takes no new invites.
    await ok(await client.post(f"/api/rooms/{room_id}/end", headers=h), 200)
    r = await client.post(paths[0], json={}, headers=h)
    assert (r.status_code, r.json()["error"]) == (409, "invalid_room_state"), r.text


# -- using an invite -----------------------------------------------------------------------------------


async def test_uses_are_counted_per_customer(client: httpx.AsyncClient, server: LiveServer) -> None:
    """A verified room: an invite's use is a customer's. The invitee coming back (the same sign-in, or a new
    sign-in with their phone on another device) is the same viewer and takes no use, even while uses are
    left; the one other person the invite is for gets the second use, anyone else with the forwarded link
    finds it used up, and a caller who has not signed in at this shop gets 401."""
    h, room_id = await host_room(client)
    inv = await new_invite(client, h, room_id, max_uses=2)
    phone = new_phone()
    invitee = await customer(client, room_id, phone)
    guest = await ok(await join_as(client, room_id, invitee, inv["token"], "Guest"), 201)
    assert guest["customer_id"] and await uses_in_sql(server, inv["id"]) == 1

    other_device = await customer(client, room_id, phone)  # the same phone signs in again elsewhere
    for who in (invitee, invitee, other_device):
        back = await ok(await join_as(client, room_id, who, inv["token"], "Guest"), 200)
        assert (back["viewer_id"], back["share_code"], back["customer_id"]) == (
            guest["viewer_id"],
            guest["share_code"],
            guest["customer_id"],
        )
    assert await uses_in_sql(server, inv["id"]) == 1

    # The second invitee takes the second use; someone else, signed in at this shop, with the forwarded
    # link: used up. The first invitee still comes back.
    partner = await ok(await join_as(client, room_id, await customer(client, room_id), inv["token"]), 201)
    assert partner["viewer_id"] != guest["viewer_id"]
    forwarded = await customer(client, room_id)
    assert_invalid_invite(await join_as(client, room_id, forwarded, inv["token"], "Forwarded"), "used 2 of 2")
    back = await ok(await join_as(client, room_id, other_device, inv["token"], "Guest"), 200)
    assert back["viewer_id"] == guest["viewer_id"]
    # Without a customer of this shop, nobody joins: no token, a host token, the invitee's own viewer
    # token, another room's viewer token, another shop's customer token.
    other_h, other_room = await host_room(client, "Other")
    other_invite = await new_invite(client, other_h, other_room)
    stranger = await customer(client, other_room)
    elsewhere = await ok(await join_as(client, other_room, stranger, other_invite["token"]), 201)
    for headers in ({}, h, other_h, auth(guest["token"]), auth(elsewhere["token"]), stranger):
        assert_sign_in_required(await join_as(client, room_id, headers, inv["token"], "Forwarded"))
    assert await uses_in_sql(server, inv["id"]) == 2
    assert await viewers_in(server, room_id) == 2

    # The room's own invite and share codes keep working beside it: for new customers, new viewers; the
    # invitee through them is still the one viewer.
    room = await ok(await client.get(f"/api/rooms/{room_id}", headers=h), 200)
    await ok(await join_as(client, room_id, forwarded, room["invite_token"], "Via room invite"), 201)
    await ok(
        await join_as(client, room_id, await customer(client, room_id), guest["share_code"], "Share"), 201
    )
    for code in (room["invite_token"], guest["share_code"]):
        back = await ok(await join_as(client, room_id, invitee, code, "Guest"), 200)
        assert back["viewer_id"] == guest["viewer_id"]
    assert await viewers_in(server, room_id) == 4
    assert await uses_in_sql(server, inv["id"]) == 2


async def test_uses_are_counted_and_a_returning_guest_takes_none(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """A guest room (v1): each join without a token is a new viewer, so each takes a use; a guest coming
    back with their own viewer token is the same viewer and takes none."""
    h, room_id = await host_room(client, sign_in="guest")
    inv = await new_invite(client, h, room_id, max_uses=1)
    join_url = f"/api/rooms/{room_id}/join"
    guest = await ok(await client.post(join_url, json=join_body(inv["token"], "Guest")), 201)
    assert guest["customer_id"] is None
    assert await uses_in_sql(server, inv["id"]) == 1

    # The same person comes back (page reload) with their viewer token: same viewer, no use taken.
    for _ in range(3):
        back = await ok(
            await client.post(join_url, json=join_body(inv["token"], "Guest"), headers=auth(guest["token"])),
            201,
        )
        assert back["viewer_id"] == guest["viewer_id"] and back["share_code"] == guest["share_code"]
    assert await uses_in_sql(server, inv["id"]) == 1

    # Someone else with the forwarded link: used up. A host token or another room's viewer token as bearer
    # does not make them "returning".
    other_h, other_room = await host_room(client, "Other", sign_in="guest")
    other_invite = await new_invite(client, other_h, other_room)
    elsewhere = await ok(
        await client.post(f"/api/rooms/{other_room}/join", json=join_body(other_invite["token"])), 201
    )
    for headers in ({}, other_h, auth(elsewhere["token"])):
        r = await client.post(join_url, json=join_body(inv["token"], "Forwarded"), headers=headers)
        assert_invalid_invite(r, "used 1 of 1")
    assert await uses_in_sql(server, inv["id"]) == 1
    assert await viewers_in(server, room_id) == 1

    # The room's own invite and share codes keep working beside it.
    room = await ok(await client.get(f"/api/rooms/{room_id}", headers=h), 200)
    await ok(await client.post(join_url, json=join_body(room["invite_token"], "Via room invite")), 201)
    await ok(await client.post(join_url, json=join_body(guest["share_code"], "Via share")), 201)
    assert await viewers_in(server, room_id) == 3


async def test_concurrent_joins_never_exceed_max_uses(client: httpx.AsyncClient, server: LiveServer) -> None:
    h, room_id = await host_room(client)
    inv = await new_invite(client, h, room_id, max_uses=3)
    buyers = [await customer(client, room_id) for _ in range(10)]
    responses = await asyncio.gather(
        *(join_as(client, room_id, who, inv["token"], f"G{i}") for i, who in enumerate(buyers))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [403] * 7, [(r.status_code, r.text) for r in responses]
    for r in responses:
        if r.status_code == 403:
            assert_invalid_invite(r, "3 of 3")
    assert len({r.json()["viewer_id"] for r in responses if r.status_code == 201}) == 3
    assert await uses_in_sql(server, inv["id"]) == 3
    assert (await invites_of(client, h, room_id))[inv["id"]]["uses"] == 3
    assert await viewers_in(server, room_id) == 3


async def test_one_customer_joining_at_once_many_times_takes_one_use(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """The same customer's joins at once (a double tap, two devices) with a per-invitee invite: one viewer,
    one use, every answer that viewer."""
    h, room_id = await host_room(client)
    inv = await new_invite(client, h, room_id, max_uses=1)
    phone = new_phone()
    devices = [await customer(client, room_id, phone) for _ in range(3)]
    responses = await asyncio.gather(
        *(join_as(client, room_id, devices[i % 3], inv["token"], "Twin") for i in range(12))
    )
    assert sorted(r.status_code for r in responses) == [200] * 11 + [201], [
        (r.status_code, r.text) for r in responses
    ]
    assert len({r.json()["viewer_id"] for r in responses}) == 1
    assert await uses_in_sql(server, inv["id"]) == 1
    assert await viewers_in(server, room_id) == 1


async def test_refused_invites_change_nothing(client: httpx.AsyncClient, server: LiveServer) -> None:
    """Every way an invite can be wrong: 403 invalid_invite with a reason, no viewer, no use taken (a
    customer of the room's host tries each one)."""
    h, room_id = await host_room(client)
    other_h, other_room = await host_room(client, "Other")
    inv = await new_invite(client, h, room_id, max_uses=5)
    used_up = await new_invite(client, h, room_id, max_uses=1)
    revoked = await new_invite(client, h, room_id, max_uses=5)
    await ok(await client.delete(f"/api/rooms/{room_id}/invites/{revoked['id']}", headers=h), 200)
    theirs = await new_invite(client, other_h, other_room, max_uses=5)
    await ok(await join_as(client, room_id, await customer(client, room_id), used_up["token"]), 201)
    member_customer = await customer(client, room_id)
    member = await ok(await join_as(client, room_id, member_customer, inv["token"], "Member"), 201)
    prober = await customer(client, room_id)
    signer: TokenSigner = server.state.signer
    now_ms = int(time.time() * 1000)
    soon = now_ms + 3_600_000
    foreign = TokenSigner(["not-this-server"])
    token = inv["token"]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]

    cases = {
        # Signed by this server, with the expiry a minute ago (as if a minute had passed since it ran out).
        "expired": (signer.invite_token(inv["id"], room_id, expires_ms=now_ms - 60_000), "expired"),
        "tampered": (tampered, "altered"),
        "extended-expiry-unsigned": (
            "i."
            + signer.invite_token(inv["id"], room_id, expires_ms=now_ms + 10**10)[2:].rpartition(".")[0]
            + "."
            + token.rpartition(".")[2],
            "altered",
        ),
        "unknown-key": (foreign.invite_token(inv["id"], room_id, expires_ms=soon), "altered"),
        "revoked": (revoked["token"], "revoked"),
        "used-up": (used_up["token"], "used 1 of 1"),
        "another-rooms-invite": (theirs["token"], "another room"),
        "re-signed-for-this-room": (  # a real invite of another room, named for this one: no such row here
            signer.invite_token(theirs["id"], room_id, expires_ms=soon),
            "not valid for this room",
        ),
        "unknown-invite-id": (signer.invite_token("inv_nope", room_id, expires_ms=soon), "not valid"),
        "host-token": (h["Authorization"].removeprefix("Bearer "), "not valid"),
        "viewer-token": (member["token"], "not valid"),
        "customer-token": (member_customer["Authorization"].removeprefix("Bearer "), "not valid"),
        "viewer-token-as-invite": ("i." + member["token"][2:], "altered"),
    }
    before = (
        await viewers_in(server, room_id),
        await viewers_in(server, other_room),
        await invites_of(client, h, room_id),
        await invites_of(client, other_h, other_room),
    )
    failures = []
    for name, (bad, reason) in cases.items():
        r = await join_as(client, room_id, prober, bad, name[:60])
        try:
            assert_invalid_invite(r, reason)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    # The genuine token, but nobody signed in: refused too.
    assert_sign_in_required(await join_as(client, room_id, {}, token, "Anonymous"))
    after = (
        await viewers_in(server, room_id),
        await viewers_in(server, other_room),
        await invites_of(client, h, room_id),
        await invites_of(client, other_h, other_room),
    )
    assert not failures, "\n".join(failures)
    assert after == before
    # The genuine token still works afterwards, for the customer who tried all the bad ones too.
    await ok(await join_as(client, room_id, prober, token, "Late"), 201)
    assert await uses_in_sql(server, inv["id"]) == 2


async def test_a_refused_join_gives_the_use_back(client: httpx.AsyncClient, server: LiveServer) -> None:
    """The use is taken in the same transaction as the viewer is made: a join refused after the use was
    taken (the show ended) leaves the count as it was."""
    h, room_id = await host_room(client)
    inv = await new_invite(client, h, room_id, max_uses=2)
    buyer = await customer(client, room_id)
    await ok(await client.post(f"/api/rooms/{room_id}/end", headers=h), 200)
    assert_invalid_invite(await join_as(client, room_id, buyer, inv["token"]), "ended")
    assert await uses_in_sql(server, inv["id"]) == 0
    assert await viewers_in(server, room_id) == 0


class OffsetClock:
    """Real time, plus however far a test has moved it on."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


async def test_an_invite_expires_when_its_time_is_up(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    clock = OffsetClock()
    settings = make_settings(database_url, redis_url, tmp_path)
    async with LiveServer(settings, clock=clock) as live, httpx.AsyncClient(base_url=live.url) as client:
        h, room_id = await host_room(client)
        inv = await new_invite(client, h, room_id, max_uses=5, expires_in_seconds=600)
        invitee = await customer(client, room_id)
        guest = await ok(await join_as(client, room_id, invitee, inv["token"]), 201)
        clock.offset_ms = 599_000
        just_in = await customer(client, room_id)
        await ok(await join_as(client, room_id, just_in, inv["token"], "Just in"), 201)
        clock.offset_ms = 600_000
        too_late = await customer(client, room_id)
        assert_invalid_invite(await join_as(client, room_id, too_late, inv["token"], "Too late"), "expired")
        # Expired for a returning customer too; their viewer token still lets them in the room.
        assert_invalid_invite(await join_as(client, room_id, invitee, inv["token"]), "expired")
        assert (await client.get(f"/api/rooms/{room_id}", headers=auth(guest["token"]))).status_code == 200
        assert await uses_in_sql(live, inv["id"]) == 2
        assert await viewers_in(live, room_id) == 2


# -- attribution and commission ------------------------------------------------------------------------


async def promoters(client: httpx.AsyncClient, sale: Sale) -> dict[str, dict[str, Any]]:
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)), 200)
    return {p["viewer_id"]: p for p in stats["promoters"]}


async def ledger_of(server: LiveServer, promoter_id: str) -> list[tuple[str, str, int]]:
    async with server.state.sessions() as session:
        rows = await session.execute(
            select(Commission.order_id, Commission.kind, Commission.amount).where(
                Commission.promoter_id == promoter_id
            )
        )
        return sorted((o, k, int(a)) for o, k, a in rows.all())


async def bought_and_paid(client: httpx.AsyncClient, sale: Sale, buyer: Buyer, quantity: int = 1) -> str:
    order = await ok(await buy(client, sale.card_id, buyer, quantity), 201)
    paid = await pay(client, order["id"], buyer)
    assert paid["order"]["status"] == "paid", paid
    return str(order["id"])


async def test_commission_is_one_level_and_exact_through_pay_and_refund(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    rate = server.settings.commission_rate_bps
    assert rate == 1000  # 10 %: the figures below are written out
    sale = await new_sale(client, stock=20, price=990, per_user_limit=3)
    a = await join(client, sale, "A")  # the room invite: nobody's referral
    b = await join(client, sale, "B", invite=a.share_code)  # A's link
    c = await join(client, sale, "C", invite=b.share_code)  # B's link: B refers C, A does not
    assert [await referrer_in_sql(server, v.viewer_id) for v in (a, b, c)] == [None, a.viewer_id, b.viewer_id]

    c_order = await bought_and_paid(client, sale, c, quantity=3)  # 2970
    board = await promoters(client, sale)
    assert board[b.viewer_id]["commission"] == 297 and board[b.viewer_id]["gmv"] == 2970
    assert board[a.viewer_id]["commission"] == 0  # B's referrer earns nothing from C: one level
    assert await ledger_of(server, a.viewer_id) == []
    assert await ledger_of(server, b.viewer_id) == [(c_order, "accrual", 297)]

    b_order = await bought_and_paid(client, sale, b, quantity=1)  # 990
    board = await promoters(client, sale)
    assert (board[a.viewer_id]["commission"], board[a.viewer_id]["orders_paid"]) == (99, 1)
    assert board[b.viewer_id]["commission"] == 297
    assert (board[a.viewer_id]["viewers"], board[b.viewer_id]["viewers"]) == (1, 1)

    # Refunds claw back exactly what was accrued on that order, and nothing else.
    r = await client.post(
        f"/api/orders/{c_order}/refund", json={"restock": True}, headers=auth(sale.host_token)
    )
    assert (await ok(r, 200))["status"] == "refunded"
    board = await promoters(client, sale)
    assert (board[b.viewer_id]["commission"], board[a.viewer_id]["commission"]) == (0, 99)
    assert await ledger_of(server, b.viewer_id) == sorted(
        [(c_order, "accrual", 297), (c_order, "clawback", -297)]
    )
    r = await client.post(f"/api/orders/{b_order}/refund", json={}, headers=auth(sale.host_token))
    assert (await ok(r, 200))["status"] == "refunded"
    board = await promoters(client, sale)
    assert (board[a.viewer_id]["commission"], board[b.viewer_id]["commission"]) == (0, 0)
    # A refund a second time changes nothing.
    r = await client.post(f"/api/orders/{b_order}/refund", json={}, headers=auth(sale.host_token))
    assert r.status_code == 409, r.text
    assert (await promoters(client, sale))[a.viewer_id]["commission"] == 0


async def test_attribution_is_first_touch_and_never_self(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=20, price=500, per_user_limit=5)
    h = auth(sale.host_token)
    join_url = f"/api/rooms/{sale.room_id}/join"
    a = await join(client, sale, "A")
    x = await join(client, sale, "X")

    # A comes back through their own share link, or names it as ref: still A, still referred by nobody.
    assert a.customer is not None
    for body in (join_body(a.share_code, "A"), join_body(sale.invite, "A", ref=a.share_code)):
        back = await ok(await client.post(join_url, json=body, headers=auth(a.customer)), 200)
        assert (back["viewer_id"], back["referrer_id"]) == (a.viewer_id, None)
    assert await referrer_in_sql(server, a.viewer_id) is None
    await bought_and_paid(client, sale, a)
    assert await ledger_of(server, a.viewer_id) == []
    assert a.viewer_id not in await promoters(client, sale)

    # B arrives through A's link (a per-invitee invite with ref=A works the same), then comes back through
    # X's, on another device: A keeps B (first touch), in SQL and in B's new token, and earns on B's order;
    # X earns nothing.
    inv = await new_invite(client, h, sale.room_id)
    b_phone = new_phone()
    b_customer = await customer(client, sale.room_id, b_phone)
    b = await ok(await join_as(client, sale.room_id, b_customer, inv["token"], "B", ref=a.share_code), 201)
    assert b["referrer_id"] == a.viewer_id
    b_elsewhere = await customer(client, sale.room_id, b_phone)
    back = await ok(await join_as(client, sale.room_id, b_elsewhere, x.share_code, "B"), 200)
    assert (back["viewer_id"], back["referrer_id"]) == (b["viewer_id"], a.viewer_id)
    assert await referrer_in_sql(server, b["viewer_id"]) == a.viewer_id
    b_buyer = Buyer(back["viewer_id"], back["token"], back["share_code"])
    b_order = await bought_and_paid(client, sale, b_buyer, quantity=2)  # 1000
    assert await ledger_of(server, a.viewer_id) == [(b_order, "accrual", 100)]
    assert await ledger_of(server, x.viewer_id) == []
    board = await promoters(client, sale)
    assert board[a.viewer_id]["commission"] == 100 and x.viewer_id not in board

    # A share code of another room is not an invite here, and as a ref it is ignored.
    other = await new_sale(client)
    stranger = await join(client, other, "Stranger")
    s_customer = await customer(client, sale.room_id)
    assert_invalid_invite(
        await join_as(client, sale.room_id, s_customer, stranger.share_code, "S"), "not valid"
    )
    s = await ok(
        await join_as(client, sale.room_id, s_customer, sale.invite, "S", ref=stranger.share_code), 201
    )
    assert s["referrer_id"] is None
