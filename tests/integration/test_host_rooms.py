"""``GET /api/rooms``, the host's own rooms, on SQLite and PostgreSQL: newest first, exactly the objects
``GET /api/rooms/{room}`` gives the host, never another host's; the status filter; keyed pages (``limit``,
``before``) that neither skip nor repeat a room; bad query values refused with a 422 in the house shape.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from loadtests.harness import join
from tests.conftest import LiveServer
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration


async def new_host(client: httpx.AsyncClient, name: str = "Host") -> dict[str, str]:
    host = await ok(await client.post("/api/hosts", json={"name": name}), 201)
    return auth(host["token"])


async def new_rooms(client: httpx.AsyncClient, h: dict[str, str], titles: list[str]) -> list[dict[str, Any]]:
    rooms = []
    for title in titles:
        rooms.append(await ok(await client.post("/api/rooms", json={"title": title}, headers=h), 201))
        await asyncio.sleep(0.003)  # a millisecond clock: "newest first" is then the order of creation
    return rooms


async def listed(client: httpx.AsyncClient, h: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    return await ok(await client.get("/api/rooms", params=params, headers=h), 200)  # type: ignore[no-any-return]


def assert_unprocessable(r: httpx.Response, detail_has: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request" and detail_has in body["detail"], body
    assert set(body) == {"error", "detail"}, body


async def test_a_hosts_rooms_newest_first_as_the_host_sees_them(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    mei, li = await new_host(client, "Mei"), await new_host(client, "Li")
    assert await listed(client, mei) == []
    mine = await new_rooms(client, mei, ["Monday", "Tuesday", "Wednesday"])
    theirs = await new_rooms(client, li, ["Li's show"])
    await ok(await client.post(f"/api/rooms/{mine[0]['id']}/live", headers=mei), 200)

    rooms = await listed(client, mei)
    assert [r["title"] for r in rooms] == ["Wednesday", "Tuesday", "Monday"]
    for room in rooms:  # the very object the host gets for the room alone: invite token and link included
        assert room == await ok(await client.get(f"/api/rooms/{room['id']}", headers=mei), 200)
        assert room["invite_token"] and room["invite_url"].endswith(f"?invite={room['invite_token']}")
    assert rooms[-1]["status"] == "live" and rooms[-1]["started_at"]
    assert [r["id"] for r in await listed(client, li)] == [theirs[0]["id"]]


async def test_the_status_filter(client: httpx.AsyncClient, server: LiveServer) -> None:
    h = await new_host(client)
    ended, live, scheduled = await new_rooms(client, h, ["Ended", "Live", "Scheduled"])
    await ok(await client.post(f"/api/rooms/{live['id']}/live", headers=h), 200)
    await ok(await client.post(f"/api/rooms/{ended['id']}/end", headers=h), 200)
    for status, expected in (("scheduled", [scheduled]), ("live", [live]), ("ended", [ended])):
        rooms = await listed(client, h, status=status)
        assert [(r["id"], r["status"]) for r in rooms] == [(e["id"], status) for e in expected]
    assert len(await listed(client, h)) == 3
    other = await new_host(client, "Other")
    await new_rooms(client, other, ["Other scheduled"])
    assert [r["id"] for r in await listed(client, h, status="scheduled")] == [scheduled["id"]]


async def test_pages_neither_skip_nor_repeat(client: httpx.AsyncClient, server: LiveServer) -> None:
    h = await new_host(client)
    rooms = await new_rooms(client, h, [f"Show {i}" for i in range(7)])
    newest_first = [r["id"] for r in reversed(rooms)]
    assert [r["id"] for r in await listed(client, h, limit=200)] == newest_first

    seen: list[str] = []
    page = await listed(client, h, limit=3)
    while page:
        assert len(page) <= 3
        seen += [r["id"] for r in page]
        page = await listed(client, h, limit=3, before=page[-1]["id"])
    assert seen == newest_first

    # A room created meanwhile goes on the first page and shifts nothing after the cursor.
    first = await listed(client, h, limit=3)
    (newer,) = await new_rooms(client, h, ["Late addition"])
    assert [r["id"] for r in await listed(client, h, limit=3, before=first[-1]["id"])] == newest_first[3:6]
    assert (await listed(client, h, limit=1))[0]["id"] == newer["id"]

    # The cursor and the filter combine.
    await ok(await client.post(f"/api/rooms/{newest_first[1]}/live", headers=h), 200)
    await ok(await client.post(f"/api/rooms/{newest_first[4]}/live", headers=h), 200)
    live = await listed(client, h, status="live", limit=1)
    assert [r["id"] for r in live] == [newest_first[1]]
    after = await listed(client, h, status="live", before=live[0]["id"])
    assert [r["id"] for r in after] == [newest_first[4]]


async def test_bad_queries_get_a_422_in_the_house_shape(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    h = await new_host(client)
    (room,) = await new_rooms(client, h, ["Show"])
    other_room = (await new_rooms(client, await new_host(client, "Other"), ["Theirs"]))[0]
    for query, detail in (
        ("status=paused", "status"),
        ("status=", "status"),
        ("status=LIVE", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=10&limit=20", "limit: give this query parameter once"),
        ("before=not%2Fan%2Fid", "before"),
        ("before=rm_nope", "before: this is not one of your rooms"),
        (f"before={other_room['id']}", "before: this is not one of your rooms"),  # as unknown as rm_nope
    ):
        assert_unprocessable(await client.get(f"/api/rooms?{query}", headers=h), detail)
    # Names this version does not read are ignored (a cache-buster, a newer client's option).
    assert [r["id"] for r in await listed(client, h, page=2, _=123)] == [room["id"]]
    assert [r["id"] for r in await listed(client, h, limit=200, status="scheduled")] == [room["id"]]


async def test_only_a_host_lists_rooms(client: httpx.AsyncClient, server: LiveServer) -> None:
    h = await new_host(client)
    (room,) = await new_rooms(client, h, ["Show"])
    viewer = await join(client, room["id"], room["invite_token"], "V")
    assert viewer.customer is not None
    for headers, status, code in (
        ({}, 401, "unauthorized"),
        (auth("h.forged"), 401, "unauthorized"),
        (auth("s.forged"), 401, "unauthorized"),
        (auth(viewer.token), 403, "forbidden"),
        (auth(viewer.customer), 403, "forbidden"),  # a customer token only signs in and joins
    ):
        r = await client.get("/api/rooms", headers=headers)
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
    # Authentication comes before the query: a stranger learns nothing from a 422.
    r = await client.get("/api/rooms?status=bogus")
    assert r.status_code == 401, r.text
