"""The leader page (/l/{host}) and the viewer page's 我的订单 in real Chromium (SPEC §9): a host makes a
customer a leader; the leader signs in on the page with their phone and the dev code and sees their link
and its QR code (the image loads); a customer comes in through the leader's code, buys and pays; the
leader's page then lists that customer (phone masked) and the accrual. A second leader, signed in in
another browser, sees none of it. A buyer's 我的订单 on the viewer page lists their orders from two shows
of the host. Data is set up through the API, as a host's and a buyer's own apps would.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from identity.phones import masked
from loadtests.harness import join, new_card, new_host, new_phone, new_room
from tests.conftest import LiveServer
from tests.e2e.conftest import DOCS, Problems, api, open_page, pay_on_page, sign_in_on_page
from tests.shop_api import Buyer, auth, buy, ok, pay

pytestmark = pytest.mark.integration

PRICE = 990  #: each card's price; the shop's default rate (10 %) accrues 99 on it


async def sign_in_on_leader_page(page: Page, phone: str) -> None:
    await page.fill("#code-form input[name=phone]", phone)
    await page.click("#code-form button")
    await expect(page.locator("#dev-code")).to_have_text(re.compile(r"\d{6}"))
    found = re.search(r"\d{6}", await page.locator("#dev-code").inner_text())
    assert found is not None
    await page.fill("#signin-form input[name=code]", found[0])
    await page.click("#signin-form button")
    await expect(page.locator("#page")).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()


async def bought(client: httpx.AsyncClient, card_id: str, buyer: Buyer) -> dict[str, Any]:
    order = await ok(await buy(client, card_id, buyer), 201)
    assert (await pay(client, order["id"], buyer))["order"]["status"] == "paid"
    return order  # type: ignore[no-any-return]


async def test_a_leader_sees_their_link_customers_and_commission_and_nobody_elses(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        host = await new_host(client, "梅的小店")
        shop = await ok(await client.get("/api/shop", headers=auth(host)))
        room = await new_room(client, host, "周五秒杀")
        _, card = await new_card(client, host, room["id"], stock=10, price=PRICE)
        first_phone, second_phone = new_phone(), new_phone()
        first = await ok(
            await client.post(
                "/api/leaders", json={"phone": first_phone, "name": "阿花"}, headers=auth(host)
            ),
            201,
        )
        await ok(
            await client.post(
                "/api/leaders", json={"phone": second_phone, "name": "小李"}, headers=auth(host)
            ),
            201,
        )

    # An unsigned browser is asked to sign in; the leader does, with the phone and the dev code.
    _, page = await open_page(browser, problems, "leader", phone=True, locale="zh-CN")
    await page.goto(f"{site.url}/l/{shop['id']}")
    await expect(page.locator("#signin h2")).to_have_text("手机号登录")
    await expect(page.locator("#shop-name")).to_have_text("梅的小店")
    await sign_in_on_leader_page(page, first_phone)
    await expect(page.locator("#who")).to_contain_text(masked(first_phone))
    await expect(page.locator("#not-leader")).to_be_hidden()
    await expect(page.locator("#leader-url")).to_have_value(first["url"])
    qr = page.locator("#leader-qr")
    await expect(qr).to_have_attribute("src", first["qr_url"])
    await page.wait_for_function("document.querySelector('#leader-qr').complete")
    assert await qr.evaluate("img => img.naturalWidth") > 0  # the QR code loaded (an SVG from /j/…/qr.svg)
    await expect(page.locator("#next-title")).to_have_text("周五秒杀")
    await expect(page.locator("#next-open")).to_have_attribute("href", re.compile(f"/r/{room['id']}"))
    await expect(page.locator("#customers-none")).to_be_visible()
    await expect(page.locator("#customers li")).to_have_count(0)
    await page.click("#copy-link")
    await expect(page.locator("#copy-status")).to_have_text("链接已复制，发到你的群里吧。")  # noqa: RUF001
    assert await page.evaluate("navigator.clipboard.readText()") == first["url"]

    # A customer comes in through the leader's code (its link's invite), buys and pays.
    customer_phone = new_phone()
    async with api(site) as client:
        sent = await ok(
            await client.post(f"/api/rooms/{room['id']}/sign-in/code", json={"phone": customer_phone}), 202
        )
        signed = await client.post(
            f"/api/rooms/{room['id']}/sign-in", json={"phone": customer_phone, "code": sent["dev_code"]}
        )
        token = (await ok(signed))["token"]
        client.cookies.clear()
        buyer = await join(client, room["id"], first["code"], "小王", customer=token)
        order = await bought(client, card, buyer)

    await page.reload()
    await expect(page.locator("#page")).to_be_visible()  # the cookie signs the page in again
    customers = page.locator("#customers li")
    await expect(customers).to_have_count(1)
    await expect(customers.locator(".phone")).to_have_text(masked(customer_phone))
    await expect(customers).to_contain_text("小王")
    await expect(customers).not_to_contain_text(customer_phone)  # never the whole number
    rows = page.locator("#commissions li")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-kind", "accrual")
    await expect(rows.locator(".amount")).to_have_text("¥0.99")
    await expect(rows.first).to_contain_text("周五秒杀")
    await expect(rows.first).to_contain_text("未结算")
    await expect(page.locator("[data-figure=accrued] strong")).to_have_text("¥0.99")
    await expect(page.locator("[data-figure=owed] strong")).to_have_text("¥0.99")
    await expect(page.locator("[data-figure=payable] strong")).to_have_text("¥0.00")  # within 7 days
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "leader-page.png"), full_page=True)

    # The second leader, in another browser, sees none of the first leader's customers or money.
    _, other = await open_page(browser, problems, "second leader", phone=True)
    await other.goto(f"{site.url}/l/{shop['id']}")
    await sign_in_on_leader_page(other, second_phone)
    await expect(other.locator("#who")).to_contain_text(masked(second_phone))
    await expect(other.locator("#leader-url")).not_to_have_value(first["url"])
    await expect(other.locator("#customers-none")).to_be_visible()
    await expect(other.locator("#customers li")).to_have_count(0)
    await expect(other.locator("#commissions li")).to_have_count(0)
    await expect(other.locator("[data-figure=accrued] strong")).to_have_text("¥0.00")
    text = await other.locator("body").inner_text()
    assert masked(customer_phone) not in text and "小王" not in text and order["id"] not in text

    # "Switch account" asks for a sign-in again; the customer (no leader) is told what the page is for.
    await other.click("#switch")
    await expect(other.locator("#signin")).to_be_visible()
    await sign_in_on_leader_page(other, customer_phone)
    await expect(other.locator("#not-leader")).to_be_visible()
    await expect(other.locator("#link-panel")).to_be_hidden()
    await expect(other.locator("#customers-panel")).to_be_hidden()
    await expect(other.locator("#orders li")).to_have_count(1)
    await expect(other.locator("#orders li")).to_contain_text("周五秒杀")
    assert problems.seen == []


async def test_a_suspended_leader_sees_a_notice(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        host = await new_host(client, "梅")
        shop = await ok(await client.get("/api/shop", headers=auth(host)))
        phone = new_phone()
        leader = await ok(await client.post("/api/leaders", json={"phone": phone}, headers=auth(host)), 201)
        await ok(
            await client.patch(f"/api/leaders/{leader['id']}", json={"suspended": True}, headers=auth(host))
        )
    _, page = await open_page(browser, problems, "suspended leader", phone=True)
    await page.goto(f"{site.url}/l/{shop['id']}")
    await sign_in_on_leader_page(page, phone)
    await expect(page.locator("#suspended")).to_be_visible()
    await expect(page.locator("#suspended")).to_contain_text("suspended")
    await expect(page.locator("#next-none")).to_be_visible()  # no show scheduled
    assert problems.seen == []


async def test_my_orders_on_the_viewer_page_span_the_hosts_shows(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    phone = "13800138000"
    async with api(site) as client:
        host = await new_host(client, "梅")
        first = await new_room(client, host, "第一场")
        second = await new_room(client, host, "第二场")
        _, first_card = await new_card(client, host, first["id"], stock=5, price=PRICE)
        _, second_card = await new_card(client, host, second["id"], stock=5, price=1590)
        sent = await ok(
            await client.post(f"/api/rooms/{second['id']}/sign-in/code", json={"phone": phone}), 202
        )
        signed = await client.post(
            f"/api/rooms/{second['id']}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
        )
        token = (await ok(signed))["token"]
        client.cookies.clear()
        await bought(
            client, second_card, await join(client, second["id"], second["invite_token"], customer=token)
        )
        # Another buyer's order in the same show is not this buyer's.
        await bought(client, second_card, await join(client, second["id"], second["invite_token"]))

    _, page = await open_page(browser, problems, "buyer", phone=True)
    await page.goto(f"{site.url}/r/{first['id']}?invite={first['invite_token']}")
    await sign_in_on_page(page, phone)
    await expect(page.locator("#show")).to_be_visible()
    await expect(page.locator(f'[data-card-id="{first_card}"] button.buy')).to_be_enabled()
    await page.click(f'[data-card-id="{first_card}"] button.buy')
    await pay_on_page(page)
    await expect(page.locator("#my-orders li .status")).to_have_text("paid")

    await page.click("#mine-button")
    mine = page.locator("#mine-orders li")
    await expect(mine).to_have_count(2)
    await expect(mine.nth(0)).to_contain_text("第一场")  # newest first
    await expect(mine.nth(0)).to_contain_text("¥9.90")
    await expect(mine.nth(1)).to_contain_text("第二场")
    await expect(mine.nth(1)).to_contain_text("¥15.90")
    await expect(mine.locator(".status.paid")).to_have_count(2)

    # A reload without the invite (the address bar no longer has it) still knows the shop: the cookie.
    await page.reload()
    await expect(page.locator("#show")).to_be_visible()
    await page.click("#mine-button")
    await expect(page.locator("#mine-orders li")).to_have_count(2)
    await page.click("#mine-close")
    await expect(page.locator("#mine-panel")).to_be_hidden()
    assert problems.seen == []
