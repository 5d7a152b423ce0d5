"""The host console lists the host's rooms from the server (``GET /api/rooms``), not from the browser: a host
who signs in on a browser that never saw their rooms gets them all, newest first with their status, a
"More shows" page past the first 50, and opens one; another host signing in on that browser sees only theirs.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import Problems, api, open_page
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

PAGE = 50  # the console's page of rooms (ROOMS_PAGE in host.js)


async def test_a_host_finds_their_rooms_on_a_new_browser(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        mei = (await ok(await client.post("/api/hosts", json={"name": "Mei"}))).get("token")
        li = (await ok(await client.post("/api/hosts", json={"name": "Li"}))).get("token")
        titles = [f"Old show {i}" for i in range(PAGE - 1)] + ["Tuesday", "Wednesday", "Thursday"]
        rooms = {}
        for title in titles:
            rooms[title] = await ok(await client.post("/api/rooms", json={"title": title}, headers=auth(mei)))
            await asyncio.sleep(0.002)  # distinct creation times: "newest first" is the reverse order
        await ok(await client.post(f"/api/rooms/{rooms['Wednesday']['id']}/live", headers=auth(mei)))
        await ok(await client.post(f"/api/rooms/{rooms['Tuesday']['id']}/end", headers=auth(mei)))
        await ok(await client.post("/api/rooms", json={"title": "Li's own show"}, headers=auth(li)))

    _, host = await open_page(browser, problems, "host on a new browser")
    await host.goto(f"{site.url}/host")
    await host.fill("#signin-form textarea", mei)
    await host.click("#signin-form button")
    await expect(host.locator("#console")).to_be_visible()

    items = host.locator("#room-list li")
    newest = list(reversed(titles))
    await expect(items.locator(".title")).to_have_text(newest[:PAGE])
    await expect(items.locator(".badge").nth(0)).to_have_text("scheduled")
    await expect(items.locator(".badge").nth(1)).to_have_text("live")
    await expect(items.locator(".badge").nth(2)).to_have_text("ended")
    await host.click("#rooms-more")
    await expect(items.locator(".title")).to_have_text(newest)
    await expect(host.locator("#rooms-more")).to_be_hidden()

    # Pick one: the room opens with its invite link and its live connection.
    await items.filter(has_text="Wednesday").get_by_role("link", name="Open").click()
    await expect(host.locator("#room-title")).to_have_text("Wednesday")
    await expect(host.locator("#room-status")).to_have_text("live")
    await expect(host.locator("#invite-url")).to_have_value(rooms["Wednesday"]["invite_url"])
    await expect(host.locator("#socket-status")).to_have_text("hub connected")

    # Another host on the same browser sees only their own room.
    await host.click("#sign-out")
    await host.fill("#signin-form textarea", li)
    await host.click("#signin-form button")
    await expect(items.locator(".title")).to_have_text(["Li's own show"])
    await expect(host.locator("#rooms-more")).to_be_hidden()
    assert problems.seen == []
