"""A whole show in real Chromium: the host signs up (the session token shown masked until asked), signs
out (which ends the session: the old token is refused) and signs in again with a code to their phone;
creates a product whose title is an XSS payload, a verified room, pins and opens a card. On phones, a
promoter signs in with their phone and the dev code and passes on their share link; a buyer joins through
it and another viewer through the room's invite, each signing in the same way. The buyer buys and pays
(the checkout sheet: a shipping address, the dev provider) while the other's stock counter drops; the
host's dashboard shows the GMV and the promoter's commission; chat and titles render as text; price cut,
restock, ship (the host's table shows the address; the order is shipped on the buyer's page too), CSV
export; the viewer's socket reconnects with ``since``/``epoch`` after the server closed it; a reload goes
straight back in (the sign-in cookie).
Writes ``docs/host-console.png`` and ``docs/viewer-page.png``; then the parcel comes back: the host
refunds the order from the orders table and puts it back in stock, the dashboard's GMV and the promoter's
commission drop to nothing, and the buyer's page shows the order refunded (its ``order`` frame).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import DOCS, Problems, api, open_page, pay_on_page, sign_in_on_page

pytestmark = pytest.mark.integration

XSS_TITLE = '<img src=x onerror="window.__xss=1">'
XSS_DESCRIPTION = "<script>window.__xss=2</script> Hand-picked, ships tomorrow"
XSS_NAME = '<svg onload="window.__xss=3">'
XSS_CHAT = '<img src=x onerror="window.__xss=4"> hello'


def card(page: Page) -> Locator:
    return page.locator("#cards article.card").first


async def no_xss(*pages: Page) -> None:
    for page in pages:
        assert await page.evaluate("() => window.__xss") is None, page.url
        assert await page.locator("img[src=x], svg[onload], script:not([src])").count() == 0


async def test_a_show_from_sign_up_to_shipping(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    host_ctx, host = await open_page(browser, problems, "host")

    # -- the host signs up: the token is shown masked; signing out ends the session; back in by phone ------
    await host.goto(f"{site.url}/host")
    await host.fill("#signup-form input[name=name]", "Mei's Kitchen")
    await host.fill("#signup-form input[name=phone]", "138 0013 8000")
    await host.click("#signup-form button")
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#token-value")).to_have_attribute("type", "password")
    token = await host.input_value("#token-value")
    assert token.startswith("s.")
    await host.click("#token-show")
    await expect(host.locator("#token-value")).to_have_attribute("type", "text")
    await expect(host.locator("#session-list li")).to_have_count(1)
    await host.click("#sign-out")
    await expect(host.locator("#signin")).to_be_visible()
    await host.fill("#signin-form textarea", "not-a-token")
    await host.click("#signin-form button")
    await expect(host.locator("#signin-error")).to_contain_text("not a valid host token")
    await host.fill("#signin-form textarea", token)  # signed out: this session is over
    await host.click("#signin-form button")
    await expect(host.locator("#signin-error")).to_contain_text("expired or was signed out")
    await host.fill("#host-code-form input[name=phone]", "+86 13800138000")
    await host.click("#host-code-form button")
    await expect(host.locator("#host-dev-code")).to_have_text(re.compile(r"\d{6}"))
    code = re.search(r"\d{6}", await host.locator("#host-dev-code").inner_text())
    assert code is not None
    await host.fill("#host-signin-form input[name=code]", code[0])
    await host.click("#host-signin-form button")
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#signed-in")).to_have_text("Signed in as Mei's Kitchen")
    token = await host.evaluate("() => localStorage.getItem('livecart.host.token')")
    assert token.startswith("s.")

    # -- products (a voucher that does not ship, then the one on sale), a room, a promoter link, a card --
    await host.fill("#product-form input[name=name]", "Gift card")
    await host.fill("#product-form input[name=price]", "50")
    await host.uncheck("#product-form input[name=shippable]")
    await host.click("#product-form button")
    await expect(host.locator("#product-list li .badge")).to_have_text(["No shipping"])
    await expect(host.locator("#product-form input[name=shippable]")).to_be_checked()  # the form resets
    await host.fill("#product-form input[name=name]", XSS_TITLE)
    await host.fill("#product-form input[name=price]", "19.90")
    await host.fill("#product-form input[name=description]", XSS_DESCRIPTION)
    await host.click("#product-form button")
    await expect(host.locator("#product-list li .title")).to_have_text(["Gift card", XSS_TITLE])
    await expect(host.locator("#product-list li .badge")).to_have_count(1)

    await host.fill("#room-form input[name=title]", "Friday night flash sale")
    await host.click("#room-form button")
    await expect(host.locator("#room")).to_be_visible()
    await expect(host.locator("#room-status")).to_have_text("scheduled")
    await expect(host.locator("#socket-status")).to_have_text("hub connected")
    invite_url = await host.input_value("#invite-url")
    assert invite_url.startswith(f"{site.url}/r/")
    room_id = invite_url.removeprefix(f"{site.url}/r/").split("?")[0]
    await expect(host.locator("#room-list li .title")).to_have_text(["Friday night flash sale"])

    await host.fill("#invite-form input[name=label]", "Aunt Wang")
    await host.click("#invite-form button")
    await expect(host.locator("#invite-list li .title")).to_have_text("Aunt Wang")

    await host.fill("#card-form input[name=price]", "9.90")
    await host.fill("#card-form input[name=stock]", "5")
    await host.click("#card-form button")
    host_card = host.locator("#card-list article.card").first
    await expect(host_card.locator(".title")).to_have_text(XSS_TITLE)
    await expect(host_card.locator(".badge")).to_have_text("pinned")
    await host_card.locator("input[name=duration]").fill("900")
    await host_card.get_by_role("button", name="Open").click()
    await expect(host_card.locator(".badge")).to_have_text("open")
    await expect(host_card.locator(".countdown")).to_contain_text("closes in 1")
    await host.click("#go-live")
    await expect(host.locator("#room-status")).to_have_text("live")

    # -- a promoter signs in on their phone and passes on their link; two viewers join, signing in too ----
    promoter_ctx, promoter = await open_page(browser, problems, "promoter", phone=True)
    await promoter.goto(invite_url)
    await expect(promoter.locator("#intro-title")).to_have_text("Friday night flash sale")
    await expect(promoter.locator("#intro-host")).to_have_text("Mei's Kitchen")
    await sign_in_on_page(promoter, "13900139000", name="Leader Li")
    await expect(promoter.locator("#show")).to_be_visible()
    promoter_url = await promoter.input_value("#share-url")
    assert re.search(r"/r/.+\?invite=", promoter_url)
    await promoter_ctx.close()

    _, buyer = await open_page(browser, problems, "viewer 1", phone=True)
    _, watcher = await open_page(browser, problems, "viewer 2", phone=True)
    for page, url, phone, name in (
        (buyer, promoter_url, "13700137000", "Xiao Zhang"),
        (watcher, invite_url, "13600136000", XSS_NAME),
    ):
        await page.goto(url)
        await expect(page.locator("#signin")).to_be_visible()
        await sign_in_on_page(page, phone, name=name)
        await expect(page.locator("#show")).to_be_visible()
        await expect(card(page).locator(".title")).to_have_text(XSS_TITLE)
        await expect(card(page).locator(".stock-left")).to_have_text("5")
        await expect(page.locator("#room-status")).to_have_text("LIVE")
        assert "invite=" not in page.url  # the address bar is not the link to pass on
    await expect(card(watcher).locator(".desc")).to_have_text(XSS_DESCRIPTION)
    await expect(host.locator("#stat-viewers-now")).to_have_text("2", timeout=10_000)

    # -- viewer 1 buys and pays; viewer 2 watches the counter drop ----------------------------------------
    await card(buyer).locator("button.buy").click()
    await expect(buyer.locator("#checkout")).to_be_visible()
    await expect(buyer.locator("#checkout-amount")).to_have_text("¥9.90")
    await expect(card(watcher).locator(".stock-left")).to_have_text("4")
    await pay_on_page(buyer)  # the address (a new buyer has none yet), the dev provider, paid
    await expect(buyer.locator("#checkout")).to_be_hidden()
    await expect(buyer.locator("#my-orders li .status")).to_have_text("paid")
    await expect(watcher.locator("#change-log")).to_contain_text("5 → 4 left")
    await expect(card(buyer).locator("button.buy")).to_have_text(re.compile("Buy now"))

    # -- the dashboard: GMV, orders, the promoter's results ----------------------------------------------
    await expect(host.locator("#stat-gmv")).to_have_text("¥9.90")
    await expect(host.locator("#stat-orders-paid")).to_have_text("1")
    leader = host.locator("#leaderboard tr").first
    await expect(leader.locator(".name")).to_have_text("Leader Li")
    await expect(leader.locator(".gmv")).to_have_text("¥9.90")
    await expect(leader.locator(".commission")).to_have_text("¥0.99")
    await expect(host.locator("#sell-through tr").first).to_contain_text("1/5")

    # -- chat renders as text -----------------------------------------------------------------------------
    await watcher.fill("#chat-form input", XSS_CHAT)
    await watcher.click("#chat-form button")
    for page in (host, buyer, watcher):
        line = page.locator("#chat-log li").last
        await expect(line.locator(".text")).to_have_text(XSS_CHAT)
        await expect(line.locator(".from")).to_have_text(XSS_NAME)

    # -- a price cut and a restock reach the viewers, and their log -----------------------------------------
    await host_card.locator("input[name=price]").fill("7.90")
    await host_card.get_by_role("button", name="Set price").click()
    await expect(card(watcher).locator(".price-now")).to_have_text("¥7.90")
    await expect(card(watcher).locator(".price-was")).to_have_text("¥9.90")
    await host_card.locator("input[name=add_stock]").fill("3")
    await host_card.get_by_role("button", name="Add stock").click()
    await expect(card(watcher).locator(".stock-left")).to_have_text("7")
    await expect(watcher.locator("#change-log")).to_contain_text("price ¥9.90 → ¥7.90")
    await expect(watcher.locator("#change-log")).to_contain_text("+3 added to stock")

    # -- the server drops viewer 2's socket; it reconnects with since/epoch and misses nothing --------------
    sockets: list[str] = []
    watcher.on("websocket", lambda ws: sockets.append(ws.url))
    await watcher.evaluate("() => document.querySelector('#chat-form input').removeAttribute('maxlength')")
    await watcher.fill("#chat-form input", "x" * 600)  # over the hub's 500 characters: closed with 4400
    await watcher.click("#chat-form button")
    for _ in range(100):
        if sockets:
            break
        await asyncio.sleep(0.1)
    assert re.search(r"since=\d+&epoch=\w+", sockets[0]), sockets[0]
    await card(buyer).locator("button.buy").click()  # limit 1: refused, nothing changes
    await expect(card(buyer).locator(".card-message")).to_have_text(re.compile("already have"))
    await host_card.locator("input[name=add_stock]").fill("1")
    await host_card.get_by_role("button", name="Add stock").click()
    await expect(card(watcher).locator(".stock-left")).to_have_text("8")

    # -- orders: where it ships, ship with a tracking number, export CSV -----------------------------------
    row = host.locator("#order-list tr").first
    await expect(row.locator(".status")).to_have_text("paid")
    await expect(row.locator(".address")).to_contain_text("王小明 +8613800138000")
    await row.locator("input[name=tracking_number]").fill("SF1234567890")
    await row.get_by_role("button", name="Ship").click()
    await expect(row.locator(".tracking")).to_have_text("shipped · SF1234567890")
    await expect(row.locator(".status")).to_have_text("shipped")
    await expect(buyer.locator("#my-orders li .status")).to_have_text("shipped")  # its order frame
    async with host.expect_download() as download_info:
        await host.click("#orders-csv")
    download = await download_info.value
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [(r["status"], r["tracking_number"], r["amount"], r["ship_name"]) for r in rows] == [
        ("shipped", "SF1234567890", "990", "王小明")
    ]
    assert rows[0]["product"] == XSS_TITLE

    # -- the share button shows the viewer's own link -------------------------------------------------------
    share_url = await buyer.input_value("#share-url")
    assert share_url.startswith(f"{site.url}/r/") and share_url != promoter_url
    await buyer.click("#share")
    await expect(buyer.locator("#share-status")).to_contain_text("copied")

    # -- a reload goes straight back in (the cookie): same viewer, and the order (now shipped) is still there
    stored = f"() => JSON.parse(localStorage.getItem('livecart.viewer.{room_id}')).viewer_id"
    viewer_id = await buyer.evaluate(stored)
    await buyer.reload()
    await expect(buyer.locator("#show")).to_be_visible()
    await expect(buyer.locator("#signin")).to_be_hidden()
    await expect(buyer.locator("#my-orders li .status")).to_have_text("shipped")
    await expect(buyer.locator("#my-orders li .detail")).to_have_text("tracking no. SF1234567890")
    assert await buyer.input_value("#share-url") == share_url
    assert await buyer.evaluate(stored) == viewer_id

    # -- nothing ran from any payload; the pages saw no exception or CSP refusal ---------------------------
    await no_xss(host, buyer, watcher)
    assert problems.seen == []

    DOCS.mkdir(exist_ok=True)
    await host.screenshot(path=str(DOCS / "host-console.png"), full_page=True)
    await watcher.evaluate("() => window.scrollTo(0, 0)")
    await watcher.screenshot(path=str(DOCS / "viewer-page.png"), full_page=True)

    # -- the parcel comes back: the host refunds the shipped order and puts it back in stock -------------
    refund = row.get_by_role("button", name="Refund")
    await refund.click()  # armed, not sent: "Keep" takes it back
    await expect(row.get_by_role("button", name="Confirm refund")).to_be_visible()
    await row.get_by_role("button", name="Keep").click()
    await expect(row.get_by_role("button", name="Refund")).to_be_visible()
    await expect(row.locator("input[name=restock]")).to_be_hidden()
    await expect(row.locator(".status")).to_have_text("shipped")
    await row.get_by_role("button", name="Refund").click()
    await row.locator("input[name=restock]").check()
    await row.get_by_role("button", name="Confirm refund").click()
    await expect(row.locator(".status")).to_have_text("refunded")
    await expect(row.locator(".refund-note")).to_have_text("refunded · restocked")
    await expect(row.get_by_role("button", name=re.compile("Refund"))).to_have_count(0)
    await expect(host.locator("#stat-gmv")).to_have_text("¥0.00")
    await expect(host.locator("#stat-orders-paid")).to_have_text("0")
    await expect(leader.locator(".name")).to_have_text("Leader Li")
    await expect(leader.locator(".gmv")).to_have_text("¥0.00")
    await expect(leader.locator(".commission")).to_have_text("¥0.00")  # clawed back
    await expect(host.locator("#sell-through tr").first).to_contain_text("0/9")
    await expect(buyer.locator("#my-orders li .status")).to_have_text("refunded")  # its order frame
    await expect(card(watcher).locator(".stock-left")).to_have_text("9")  # the unit is on sale again
    await expect(card(buyer).locator("button.buy")).to_have_text(re.compile("Buy now"))
    async with api(site) as client:
        stats = await client.get(f"/api/rooms/{room_id}/stats", headers={"Authorization": f"Bearer {token}"})
        assert (stats.json()["gmv"], stats.json()["orders_refunded"]) == (0, 1)

    # -- nothing ran from any payload; the pages saw no exception or CSP refusal ---------------------------
    await no_xss(host, buyer, watcher)
    assert problems.seen == []
    await host_ctx.close()


async def test_pages_send_a_strict_content_security_policy(site: LiveServer) -> None:
    async with api(site) as client:
        for path in ("/host", "/r/rm_anything", "/static/viewer.js"):
            response = await client.get(path)
            assert response.status_code == 200, path
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert response.headers["x-content-type-options"] == "nosniff"
        page = (await client.get("/host")).text
        assert "<script>" not in page and 'type="module" src="/static/host.js"' in page
        assert (await client.get("/static/../live/pages.py")).status_code == 404
        assert (await client.get("/r/not%2Fan%2Fid")).status_code == 404
