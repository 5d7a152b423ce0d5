"""The host console's safety in real Chromium: "End show" asks first (cancel keeps the show live, confirm
ends it); a guest room is labelled "limits can be dodged" wherever it shows; the sessions panel lists the
host's signed-in devices and signs one out (its token stops working) or all; the stream key is made on
request and shown once, with the OBS settings; a session that ends elsewhere sends the console back to
sign in, saying why.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import Problems, api, open_page
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration


async def signed_in_console(site: LiveServer, page: Page, token: str) -> None:
    await page.goto(f"{site.url}/host")
    await page.fill("#signin-form textarea", token)
    await page.click("#signin-form button")
    await expect(page.locator("#console")).to_be_visible()


async def test_end_show_asks_first_and_guest_rooms_say_limits_can_be_dodged(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        token = (await ok(await client.post("/api/hosts", json={"name": "Mei"})))["token"]
    _, host = await open_page(browser, problems, "host")
    await signed_in_console(site, host, token)

    await host.fill("#room-form input[name=title]", "Open house")
    await host.select_option("#room-form select[name=sign_in]", "guest")
    await host.click("#room-form button")
    await expect(host.locator("#room-title")).to_have_text("Open house")
    await expect(host.locator("#room-guest")).to_have_text("Guest room: limits can be dodged")
    await expect(host.locator("#room-list li .badge.guest")).to_have_text(
        ["Guest room: limits can be dodged"]
    )
    await expect(host.locator("#promoter-form")).to_be_visible()  # a guest room's promoter link: a join
    await host.fill("#room-form input[name=title]", "Members only")
    await host.click("#room-form button")  # verified, the default
    await expect(host.locator("#room-title")).to_have_text("Members only")
    await expect(host.locator("#room-guest")).to_be_hidden()
    await expect(host.locator("#promoter-form")).to_be_hidden()
    await expect(host.locator("#promoter-verified-note")).to_be_visible()
    await expect(host.locator("#room-list li .badge.guest")).to_have_count(1)
    await host.locator("#room-list li", has_text="Open house").get_by_role("link", name="Open").click()
    await expect(host.locator("#room-guest")).to_be_visible()
    room_id = host.url.split("room=")[1]

    await host.click("#go-live")
    await expect(host.locator("#room-status")).to_have_text("live")
    await host.click("#end-show")
    dialog = host.locator("#end-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("This cannot be undone")
    await host.click("#end-cancel")
    await expect(dialog).to_be_hidden()
    await expect(host.locator("#room-status")).to_have_text("live")
    async with api(site) as client:
        room = await ok(await client.get(f"/api/rooms/{room_id}", headers=auth(token)))
        assert room["status"] == "live"  # nothing was sent
    await host.click("#end-show")
    await host.keyboard.press("Escape")  # closing the dialog any other way keeps the show too
    await expect(dialog).to_be_hidden()
    await expect(host.locator("#room-status")).to_have_text("live")
    await host.click("#end-show")
    await host.click("#end-confirm")
    await expect(host.locator("#room-status")).to_have_text("ended")
    async with api(site) as client:
        room = await ok(await client.get(f"/api/rooms/{room_id}", headers=auth(token)))
        assert room["status"] == "ended"
    assert problems.seen == []


async def test_sessions_stream_key_and_a_session_that_ends(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    _, host = await open_page(browser, problems, "host")
    await host.goto(f"{site.url}/host")
    await host.fill("#signup-form input[name=name]", "Mei")
    await host.fill("#signup-form input[name=phone]", "13800138000")
    await host.click("#signup-form button")
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#token-value")).to_have_attribute("type", "password")
    await expect(host.locator("#token-show")).to_have_text("Show")
    token = await host.input_value("#token-value")
    sessions = host.locator("#session-list li")
    await expect(sessions).to_have_count(1)
    await expect(sessions.first.locator(".badge")).to_have_text("this device")

    # Another device signs in (by phone code): the panel lists it; signing it out ends its token.
    async with api(site) as client:
        code = await ok(await client.post("/api/host-sign-in/code", json={"phone": "13800138000"}), 202)
        other = await ok(
            await client.post("/api/host-sign-in", json={"phone": "13800138000", "code": code["dev_code"]})
        )
        assert (await client.get("/api/products", headers=auth(other["token"]))).status_code == 200
    await host.click("#sessions-refresh")
    await expect(sessions).to_have_count(2)
    await sessions.filter(has_not=host.locator(".badge")).get_by_role("button", name="Sign out").click()
    await expect(sessions).to_have_count(1)
    async with api(site) as client:
        refused = await client.get("/api/products", headers=auth(other["token"]))
        assert refused.status_code == 401 and refused.json()["error"] == "token_expired"

    # The stream key: made on request, shown once, with what OBS needs.
    await expect(host.locator("#stream-key-box")).to_be_hidden()
    await host.click("#stream-key-rotate")
    await expect(host.locator("#stream-key-box")).to_be_visible()
    key = await host.input_value("#stream-key")
    assert key and key != token
    await expect(host.locator("#obs-server")).to_contain_text(f"{site.url}/api/rooms/")
    await host.reload()
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#stream-key-box")).to_be_hidden()  # shown once
    await expect(host.locator("#token-box")).to_be_hidden()

    # This session is signed out from elsewhere: the next call sends the console back to sign in.
    async with api(site) as client:
        await ok(await client.delete("/api/sessions", headers=auth(token)))
    await host.click("#sessions-refresh")
    await expect(host.locator("#signin")).to_be_visible()
    await expect(host.locator("#console")).to_be_hidden()
    await expect(host.locator("#signin-reason")).to_have_text(
        "Your session has expired or was signed out; sign in again."
    )
    assert await host.evaluate("() => localStorage.getItem('livecart.host.token')") is None
    assert problems.seen == []
