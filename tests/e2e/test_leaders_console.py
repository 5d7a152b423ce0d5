"""The console's shop-wide tabs in real Chromium (SPEC §9), on SQLite and PostgreSQL: the host sets the
shop's rate and adds a leader by phone with a rate of their own, and sees the leader's link and QR code; a
customer comes in through the leader's code and buys and pays (over the API); the show's leaderboard (the
room's stats) names the leader, the 团长 tab and the settlement report show the accrual. With the after-sale
window at 0 days the commission is payable at once: a double click on 付款 pays once (one payout, the line
owes nothing after), the same report left open on another device pays nothing more, and both CSVs
download. The customers tab lists the buyer with the leader who brought them, opens their orders across
shows, and makes customers leaders (from its row, or picked in the 团长 form); a leader is suspended and
resumed, their own rate cleared back to the shop's. A guest room's promoter link is made in the console and
shown, not kept: the leaderboard lists the promoter from the room's stats, after a reload too.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Download, Page, expect

from loadtests.harness import Port
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.e2e.conftest import Problems, api, open_page
from tests.shop_api import auth, buy, join, new_sale, ok, pay

pytestmark = pytest.mark.integration

LEADER_PHONE = "13912345678"


@pytest.fixture
async def site(redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The e2e server on SQLite, as every browser test's (the figures these tabs show are the API's, which
    ``tests/integration/test_leaders.py`` checks on both databases), with no after-sale window: a
    commission is payable as soon as its order is paid."""
    port = Port()
    database_url = await fresh_database("sqlite", tmp_path)
    settings = make_settings(database_url, redis_url, tmp_path, base_url=port.url, after_sale_days=0)
    async with LiveServer(settings, port=port) as live:
        yield live


async def rows_of(download: Download) -> list[dict[str, str]]:
    path = await download.path()
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


async def download(page: Page, button: str) -> list[dict[str, str]]:
    async with page.expect_download() as info:
        await page.click(button)
    return await rows_of(await info.value)


async def sign_in(site: LiveServer, page: Page, token: str) -> None:
    await page.goto(f"{site.url}/host")
    await page.fill("#signin-form textarea", token)
    await page.click("#signin-form button")
    await expect(page.locator("#console")).to_be_visible()


async def test_leaders_settlement_and_customers(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        sale = await new_sale(client, host="Mei's Kitchen", title="Friday tea", price=2000, stock=5)
    _, host = await open_page(browser, problems, "host")
    await sign_in(site, host, sale.host_token)
    await expect(host.locator("#leaders")).to_be_hidden()

    # -- the shop's rate, and a leader added by phone with a rate of their own -----------------------------
    await host.click("#tabs [data-tab=leaders]")
    await expect(host.locator("#leaders")).to_be_visible()
    await expect(host.locator("#products")).to_be_hidden()
    await expect(host.locator("#shop-rate-note")).to_contain_text("the server's default 10%")
    await expect(host.locator("#leader-list")).to_contain_text("No leaders yet")
    await host.fill("#shop-rate-form input[name=rate]", "12")
    await host.click("#shop-rate-form button")
    await expect(host.locator("#shop-rate-note")).to_contain_text("The shop's rate is 12%")
    await host.fill("#leader-form input[name=phone]", LEADER_PHONE)
    await host.fill("#leader-form input[name=name]", "Leader Lin")
    await host.fill("#leader-form input[name=rate]", "15")
    await host.click("#leader-form button")
    card = host.locator("#leader-list article.leader-card")
    await expect(card).to_have_count(1)
    await expect(card.locator(".name")).to_have_text("Leader Lin")
    await expect(card.locator(".phone")).to_have_text("+86139****5678")
    await expect(card.locator(".badge.rate")).to_have_text("15%")
    async with api(site) as client:
        (leader,) = await ok(await client.get("/api/leaders", headers=auth(sale.host_token)))
    assert leader["commission_bps"] == 1500 and leader["customer_id"]
    await expect(card.locator("input.link")).to_have_value(f"{site.url}/j/{leader['code']}")
    await expect(card.locator(".code")).to_contain_text(leader["code"])
    qr = card.locator(".qr img")
    await expect(qr).to_have_attribute("src", leader["qr_url"])
    await host.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=await qr.element_handle())
    await host.fill("#leader-form input[name=phone]", LEADER_PHONE)  # the same person again: refused
    await host.click("#leader-form button")
    await expect(host.locator("#leader-error")).to_have_text("This customer is already one of your leaders.")
    await expect(card).to_have_count(1)
    await card.get_by_role("button", name="Copy").click()
    assert await host.evaluate("() => navigator.clipboard.readText()") == leader["url"]

    # -- a customer comes in through the leader's code and buys; another through the room's invite --------
    async with api(site) as client:
        buyer = await join(client, sale, "Xiao Zhang", invite=leader["code"])
        await join(client, sale, "Aunt Wang")
        response = await buy(client, sale.card_id, buyer)
        order = await ok(response, 201)
        paid = await pay(client, order["id"], buyer)
        assert paid["order"]["status"] == "paid"

    # -- the show's leaderboard is the room's stats: the leader, their buyer, their commission --------------
    await host.click("#tabs [data-tab=shows]")
    await host.locator("#room-list li", has_text="Friday tea").get_by_role("link", name="Open").click()
    row = host.locator(f"#leaderboard tr[data-promoter-id='{leader['customer_id']}']")
    await expect(row.locator(".name")).to_have_text("Leader Lin")
    await expect(row.locator(".badge.leader")).to_have_text("leader")
    await expect(row.locator(".gmv")).to_have_text("¥20.00")
    await expect(row.locator(".commission")).to_have_text("¥3.00")  # 15 % of ¥20.00
    await expect(host.locator("#leaderboard tr")).to_have_count(1)

    # -- the leaders tab: the accrual, payable at once (no after-sale window here) -------------------------
    await host.click("#tabs [data-tab=leaders]")
    await expect(host.locator("#room")).to_be_hidden()
    for key, value in (
        ("customers", "1"),
        ("orders_paid", "1"),
        ("gmv", "¥20.00"),
        ("accrued", "¥3.00"),
        ("owed", "¥3.00"),
        ("payable", "¥3.00"),
        ("paid_out", "¥0.00"),
    ):
        await expect(card.locator(f".tile.{key} strong")).to_have_text(value)

    # -- settlement: the report's line, one payout for a double click -------------------------------------
    await host.click("#tabs [data-tab=settlement]")
    await expect(host.locator("#settlement-note")).to_contain_text("(0 days from payment)")
    await host.select_option("#period-form select[name=period]", "all")
    line = host.locator(f"#report-list tr[data-promoter-id='{leader['customer_id']}']")
    await expect(line.locator(".badge.kind")).to_have_text("leader")
    await expect(line.locator(".accrued")).to_have_text("¥3.00")
    await expect(line.locator(".net")).to_have_text("¥3.00")
    await expect(line.locator(".owed")).to_have_text("¥3.00")
    await expect(line.locator(".payable")).to_have_text("¥3.00")
    await expect(host.locator("#payout-list")).to_contain_text("No payouts yet")
    report = await download(host, "#report-csv")
    assert [(r["promoter_id"], r["kind"], r["accrued"], r["payable"]) for r in report] == [
        (leader["customer_id"], "leader", "300", "300")
    ]
    _, other = await open_page(browser, problems, "the host's other device")  # the report open there too
    await sign_in(site, other, sale.host_token)
    await other.click("#tabs [data-tab=settlement]")
    await other.select_option("#period-form select[name=period]", "all")
    stale = other.locator(f"#report-list tr[data-promoter-id='{leader['customer_id']}']")
    await expect(stale.locator(".payable")).to_have_text("¥3.00")
    await line.get_by_role("button", name="Pay ¥3.00").dblclick()
    await expect(host.locator("#payout-result")).to_have_text("Paid Leader Lin ¥3.00 (1 commission rows).")
    await expect(line.locator(".owed")).to_have_text("¥0.00")
    await expect(line.locator(".paid_out")).to_have_text("¥3.00")
    await expect(line.locator("button.pay")).to_have_count(0)
    payouts = host.locator("#payout-list tr[data-payout-id]")
    await expect(payouts).to_have_count(1)
    await expect(payouts.locator(".amount")).to_have_text("¥3.00")
    await stale.get_by_role("button", name="Pay ¥3.00").click()  # paid meanwhile: nothing is paid twice
    await expect(other.locator("#settlement-error")).to_have_text(re.compile("^Nothing to pay"))
    await expect(other.locator("#payout-list tr[data-payout-id]")).to_have_count(1)
    await expect(stale.locator(".owed")).to_have_text("¥0.00")  # the report read again
    async with api(site) as client:
        listed = await ok(await client.get("/api/payouts", headers=auth(sale.host_token)))
    assert [(p["promoter_id"], p["amount"], p["rows"]) for p in listed] == [(leader["customer_id"], 300, 1)]
    transfers = await download(host, "#payouts-csv")
    assert [(r["promoter_id"], r["amount"], r["phone"]) for r in transfers] == [
        (leader["customer_id"], "300", f"'+86{LEADER_PHONE}")  # the full phone ("'": no spreadsheet formula)
    ]
    await host.click("#tabs [data-tab=leaders]")
    await expect(card.locator(".tile.paid_out strong")).to_have_text("¥3.00")
    await expect(card.locator(".tile.owed strong")).to_have_text("¥0.00")

    # -- customers: the buyer with the leader who brought them, their orders, "make leader" ----------------
    await host.click("#tabs [data-tab=customers]")
    customers = host.locator("#customer-list tr[data-customer-id]")
    await expect(customers).to_have_count(3)  # the buyer, the other viewer and the leader
    zhang = customers.filter(has_text="Xiao Zhang")
    await expect(zhang.locator(".promoter")).to_have_text("Leader Lin")
    await expect(zhang.locator(".badge.leader")).to_have_text("leader")
    await expect(zhang.locator(".spent")).to_have_text("¥20.00")
    lin_as_customer = customers.filter(has_text="+86139****5678")  # made by phone, named as the leader
    await expect(lin_as_customer.locator(".leader .badge")).to_have_text("leader")
    await zhang.get_by_role("button", name="Xiao Zhang").click()
    await expect(host.locator("#customer-page")).to_be_visible()
    await expect(host.locator("#customer-name")).to_have_text("Xiao Zhang")
    bought = host.locator("#customer-orders tr[data-order-id]")
    await expect(bought).to_have_count(1)
    await expect(bought.locator(".room")).to_have_text("Friday tea")
    await expect(bought.locator(".product")).to_have_text("Tea")
    await expect(bought.locator(".amount")).to_have_text("¥20.00")
    await expect(bought.locator(".status")).to_have_text("paid")
    exported = await download(host, "#customers-csv")
    assert {r["name"]: r["promoter_name"] for r in exported} == {
        "Xiao Zhang": "Leader Lin",
        "Aunt Wang": "",
        "Leader Lin": "",  # the leader made by phone: the roster's name is the new customer's name too
    }
    await zhang.get_by_role("button", name="Make leader").click()
    await expect(zhang.locator(".leader .badge")).to_have_text("leader")

    # -- the leaders tab: Aunt Wang picked from the customers; suspend, resume, the shop's rate again -------
    await host.click("#tabs [data-tab=leaders]")
    await expect(card).to_have_count(2)
    picker = host.locator("#leader-form select[name=customer_id] option")
    await expect(picker).to_have_count(2)  # "by phone", and the one customer who is not a leader
    wang = await picker.filter(has_text="Aunt Wang").get_attribute("value")
    assert wang and wang.startswith("cus_")
    await host.select_option("#leader-form select[name=customer_id]", wang)
    await host.click("#leader-form button")
    await expect(card).to_have_count(3)
    await expect(card.nth(2).locator(".name")).to_have_text("Aunt Wang")
    await expect(card.nth(2).locator(".badge.rate")).to_have_text("shop's rate 12%")
    lin = card.filter(has_text="Leader Lin")
    await lin.get_by_role("button", name="Suspend").click()
    await expect(lin.locator(".badge.suspended")).to_have_text("suspended")
    await lin.locator("input[name=rate]").fill("")
    await lin.get_by_role("button", name="Save").click()
    await expect(lin.locator(".badge.rate")).to_have_text("shop's rate 12%")
    async with api(site) as client:
        changed = await ok(await client.get(f"/api/leaders/{leader['id']}", headers=auth(sale.host_token)))
    assert (changed["suspended"], changed["commission_bps"]) == (True, None)
    await lin.get_by_role("button", name="Resume").click()
    await expect(lin.locator(".badge.suspended")).to_have_count(0)
    async with api(site) as client:
        listed = await ok(await client.get("/api/leaders", headers=auth(sale.host_token)))
    assert [(entry["name"], entry["suspended"]) for entry in listed] == [
        ("Leader Lin", False),
        ("Xiao Zhang", False),
        ("Aunt Wang", False),
    ]
    assert problems.seen == []


async def test_a_guest_rooms_promoter_link_and_the_leaderboard_from_the_rooms_stats(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        sale = await new_sale(client, title="Open house", sign_in="guest")
    _, host = await open_page(browser, problems, "host")
    await sign_in(site, host, sale.host_token)
    await host.locator("#room-list li", has_text="Open house").get_by_role("link", name="Open").click()
    await expect(host.locator("#leaderboard")).to_contain_text("No promoter has brought anyone yet")
    await host.fill("#promoter-form input[name=name]", "Aunt Li")
    await host.click("#promoter-form button")
    made = host.locator("#promoter-made li")
    await expect(made.locator(".title")).to_have_text("Aunt Li")
    share_url = await made.locator("input").input_value()
    assert share_url.startswith(f"{site.url}/r/{sale.room_id}?invite=")
    async with api(site) as client:
        buyer = await join(client, sale, "Passer-by", invite=share_url.split("invite=")[1], guest=True)
        order = await ok(await buy(client, sale.card_id, buyer), 201)
        await pay(client, order["id"], buyer)
    row = host.locator("#leaderboard tr[data-promoter-id]")
    await expect(row).to_have_count(1)
    await expect(row.locator(".name")).to_have_text("Aunt Li")
    await expect(row.locator(".badge")).to_have_count(0)  # a guest, not a leader
    await expect(row.locator(".gmv")).to_have_text("¥9.90")
    await expect(row.locator(".commission")).to_have_text("¥0.99")
    promoter_id = await row.get_attribute("data-promoter-id")
    assert promoter_id and promoter_id.startswith("vw_")
    # Nothing of the kind is kept in the browser: a reload lists the same promoter, from the server.
    assert await host.evaluate("() => Object.keys(localStorage).filter((k) => k.includes('promoter'))") == []
    await host.reload()
    await expect(host.locator(f"#leaderboard tr[data-promoter-id='{promoter_id}'] .name")).to_have_text(
        "Aunt Li"
    )
    await expect(host.locator("#promoter-made")).to_be_hidden()
    assert problems.seen == []
