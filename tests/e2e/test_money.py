# The pages are Chinese first: their words carry full-width punctuation (，：（）) and ×.
# ruff: noqa: RUF001, RUF002, RUF003
"""Money on the pages, in real Chromium (SPEC §10, issue 13), the buyer on a 390×844 phone in Chinese:

- the checkout sheet through the dev provider: the amount, the address form (a phone that is not one is
  refused in the sheet's words; the address goes on the order, the phone in E.164), 去支付, then the dev
  provider's 支付成功; 我的订单 shows the order 已支付; the next buy offers the same address again;
- after-sale: the host ships from the console (快递公司 + 运单号) and the buyer sees 已发货 with both;
  a request for part of it (仅退款) is rejected with a reason the buyer reads; one filed and withdrawn
  (撤销); then 退货退款 of all of it, which the host approves from the 售后 tab, putting the unit back on
  sale: the buyer sees 已退款 and 已同意 — 退款 ¥9.90, the refunds list shows the provider's refund done;
- WeChat Pay Native against the fake WeChat Pay (``tests/fake_wechatpay.py``, the real SDK): 微信支付 is
  offered first, 去支付 draws the ``code_url`` as a QR code, which this test DECODES from a screenshot of
  the canvas (no QR decoder package is installed here, so ``read_qr`` below reads it: finder → module
  grid → format bits → unmasked codewords → Reed–Solomon check → byte-mode text, and it must equal the
  ``code_url`` WeChat answered); then the test sends WeChat's signed, encrypted notification and the page
  shows 已支付 without a reload. The host refunds it while WeChat fails: the console's refunds list shows
  the refund highlighted with its attempts and last error; 重试 sends it again, WeChat takes it (处理中)
  and its refund notification makes it 已退款. On a phone's browser (an iPhone's User-Agent) WeChat Pay is
  H5: 去支付 takes the page to the ``h5_url`` WeChat answered, with the way back to the show appended.

Writes docs/checkout-address.png, docs/checkout-wechat-qr.png, docs/checkout-after-sale.png and the console's
docs/host-after-sale.png (Chinese).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from loadtests.harness import new_host, new_phone, new_room
from tests.conftest import LiveServer
from tests.e2e.conftest import ADDRESS, DOCS, Problems, api, open_page, pay_on_page, sign_in_on_page
from tests.fake_wechatpay import FakeWeChatPay
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

PRICE = 990
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Mobile/15E148 Safari/604.1"
)


async def new_sale(client: httpx.AsyncClient, host: str, room_id: str, name: str, *, stock: int = 5) -> str:
    """A product (which ships) and its card, open, in the room; the card's id."""
    product = await ok(
        await client.post("/api/products", json={"name": name, "price": 1990}, headers=auth(host))
    )
    card = await ok(
        await client.post(
            f"/api/rooms/{room_id}/cards",
            json={"product_id": product["id"], "price": PRICE, "stock": stock},
            headers=auth(host),
        ),
        201,
    )
    await ok(await client.post(f"/api/cards/{card['id']}/open", json={}, headers=auth(host)))
    return str(card["id"])


async def shop(client: httpx.AsyncClient, *names: str) -> tuple[str, dict[str, Any], list[str]]:
    """A host, a live room and a card per product name: the host's token, the room, the cards' ids."""
    host = await new_host(client, "梅的小店")
    room = await new_room(client, host, "周五茶叶专场")
    return host, room, [await new_sale(client, host, room["id"], name) for name in names]


async def buyer_in(
    site: LiveServer, browser: Browser, problems: Problems, room: dict[str, Any], **options: Any
) -> Page:
    """A new buyer on a phone, in Chinese, signed in and in the show (``options``: the browser context's)."""
    _, page = await open_page(browser, problems, "buyer", phone=True, locale="zh-CN", **options)
    await page.goto(f"{site.url}/r/{room['id']}?invite={room['invite_token']}")
    await sign_in_on_page(page, new_phone(), name="小张")
    await expect(page.locator("#show")).to_be_visible()
    return page


def card(page: Page, card_id: str) -> Any:
    return page.locator(f'[data-card-id="{card_id}"]')


async def test_paying_with_the_dev_provider_and_a_shipping_address(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        host, room, (tea, cups) = await shop(client, "云南普洱 357g", "青花茶杯一对")
    page = await buyer_in(site, browser, problems, room)

    await card(page, tea).locator("button.buy").click()
    sheet = page.locator("#checkout")
    await expect(sheet).to_be_visible()
    await expect(page.locator("#checkout-amount")).to_have_text("¥9.90")
    await expect(page.locator("#checkout-product")).to_have_text("云南普洱 357g")
    await expect(page.locator("#checkout-address")).to_be_visible()  # the product ships
    choices = page.locator("#checkout-provider-list label")
    await expect(choices).to_have_text(["测试支付"])  # this server has the dev provider only
    await expect(choices.locator("input")).to_be_checked()  # the first is chosen
    for name, value in {**ADDRESS, "phone": "12345"}.items():
        await page.fill(f"#checkout-address input[name={name}]", value)
    await page.click("#checkout-submit")
    await expect(page.locator("#checkout-error")).to_have_text("收货人手机号不正确。")  # 422 invalid_phone
    await page.fill("#checkout-address input[name=phone]", ADDRESS["phone"])
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "checkout-address.png"))
    await page.click("#checkout-submit")
    await expect(page.locator("#checkout-dev")).to_be_visible()
    await expect(page.locator("#checkout-error")).to_have_text("")
    await page.click("#checkout-pay")
    await expect(sheet).to_be_hidden()
    order = page.locator("#my-orders li").first
    await expect(order.locator(".status")).to_have_text("已支付")  # its `order` frame

    await page.click("#mine-button")
    mine = page.locator("#mine-orders li")
    await expect(mine).to_have_count(1)
    await expect(mine.locator(".status")).to_have_text("已支付")
    await expect(mine.locator(".title")).to_contain_text("云南普洱 357g × 1 · ¥9.90 · 周五茶叶专场")

    async with api(site) as client:
        orders = await ok(await client.get(f"/api/rooms/{room['id']}/orders", headers=auth(host)))
    assert [(o["status"], o["address"]) for o in orders] == [("paid", {**ADDRESS, "phone": "+8613800138000"})]

    # The next buy in this shop offers the address given last time; paying needs no typing.
    await card(page, cups).locator("button.buy").click()
    await expect(page.locator("#checkout-submit")).to_be_enabled()
    await expect(page.locator("#checkout-address input[name=name]")).to_have_value(ADDRESS["name"])
    await expect(page.locator("#checkout-address input[name=line]")).to_have_value(ADDRESS["line"])
    await expect(page.locator("#checkout-address input[name=phone]")).to_have_value("+8613800138000")
    await page.click("#checkout-submit")
    await page.click("#checkout-fail")  # the dev provider's failure: the order stays to be paid
    await expect(page.locator("#checkout-status")).to_have_text("支付没有成功，可以再试一次。")
    await page.click("#checkout-submit")
    await page.click("#checkout-pay")
    await expect(sheet).to_be_hidden()
    await expect(page.locator("#my-orders li .status")).to_have_text(["已支付", "已支付"])
    assert problems.seen == []


async def test_after_sale_filed_by_the_buyer_decided_by_the_host(
    site: LiveServer, browser: Browser, problems: Problems
) -> None:
    async with api(site) as client:
        host, room, (tea,) = await shop(client, "云南普洱 357g")
    page = await buyer_in(site, browser, problems, room)
    await card(page, tea).locator("button.buy").click()
    await pay_on_page(page)
    order = page.locator("#my-orders li").first
    await expect(order.locator(".status")).to_have_text("已支付")
    await expect(card(page, tea).locator(".stock-left")).to_have_text("4")

    # -- the host ships it from the console: the buyer's page says so (its frame) ----------------------------
    _, console = await open_page(browser, problems, "host", locale="zh-CN")
    await console.goto(f"{site.url}/host")
    await console.fill("#signin-form textarea", host)
    await console.click("#signin-form button")
    await expect(console.locator("#console")).to_be_visible()
    await console.locator(f"#room-list li[data-room-id='{room['id']}'] a").click()
    row = console.locator("#order-list tr").first
    await expect(row.locator(".status")).to_have_text("已支付")
    await expect(row.locator(".address")).to_have_text("王小明 +8613800138000上海市 浦东新区 世纪大道 100 号")
    await row.locator("input[name=carrier]").fill("顺丰速运")
    await row.locator("input[name=tracking_number]").fill("SF1234567890")
    await row.get_by_role("button", name="发货").click()
    await expect(row.locator(".status")).to_have_text("已发货")
    await expect(row.locator(".tracking")).to_have_text("已发货 · 顺丰速运 SF1234567890")
    await expect(order.locator(".status")).to_have_text("已发货")
    await expect(order.locator(".detail")).to_have_text("顺丰速运 SF1234567890")
    await expect(order.locator("button.receive")).to_be_visible()

    # -- part of it back (仅退款): rejected, with a reason the buyer reads -----------------------------------
    await order.locator("button.after-sale-open").click()
    form = order.locator("form.after-sale-form")
    await form.locator("select[name=kind]").select_option("refund")
    await form.locator("input[name=reason]").fill("少发了赠品")
    await form.locator("input[name=amount]").fill("2")
    await form.locator("button[type=submit]").click()
    request = order.locator(".after-sale-status")
    await expect(request).to_have_text("售后（仅退款）：处理中")
    await expect(order.locator("button.after-sale-withdraw")).to_be_visible()
    await expect(order.locator("button.after-sale-open")).to_be_hidden()  # one open request at a time

    await console.click("#tabs [data-tab=aftersale]")
    # The shop's payment methods: every provider this server has (the dev one here), offered while unchosen.
    choices = console.locator("#provider-choices label")
    await expect(choices).to_have_text(["测试支付"])
    await expect(choices.locator("input")).to_be_checked()
    await choices.locator("input").uncheck()
    await console.locator("#provider-form button").click()
    await expect(console.locator("#provider-error")).to_have_text("请至少选择一种收款方式。")
    await choices.locator("input").check()
    async with console.expect_response(
        lambda r: r.url.endswith("/api/shop") and r.request.method == "PATCH"
    ) as saved:
        await console.locator("#provider-form button").click()
    assert (await (await saved.value).json())["payment_providers"] == ["dev"]
    await expect(console.locator("#provider-error")).to_have_text("")
    asked = console.locator("#after-sale-list tr")
    await expect(asked).to_have_count(1)
    await expect(asked.locator(".kind")).to_have_text("仅退款")
    await expect(asked.locator(".reason")).to_have_text("少发了赠品")
    await expect(asked.locator(".asked")).to_have_text("¥2.00")
    await expect(asked.locator(".address")).to_contain_text("世纪大道 100 号")
    await asked.locator("input[name=reason]").fill("赠品已补发")
    await asked.get_by_role("button", name="拒绝").click()
    await expect(asked.locator(".after-sale-state")).to_have_text("已拒绝 — 赠品已补发")
    await page.click("#mine-button")  # 我的订单 (the shop's cookie) reads the request too
    await expect(page.locator("#mine-orders li .after-sale-status")).to_have_text(
        "售后（仅退款）：已拒绝 — 赠品已补发"
    )
    await page.click("#mine-close")
    await order.locator("button.after-sale-open").wait_for()
    await page.reload()  # the request is the server's, not this page's memory
    await expect(order.locator(".after-sale-status")).to_have_text("售后（仅退款）：已拒绝 — 赠品已补发")

    # -- one filed and withdrawn -----------------------------------------------------------------------------
    await order.locator("button.after-sale-open").click()
    await form.locator("input[name=reason]").fill("不想要了")
    await form.locator("button[type=submit]").click()
    await expect(request).to_have_text("售后（仅退款）：处理中")
    await order.locator("button.after-sale-withdraw").click()
    await expect(request).to_have_text("售后（仅退款）：已撤销")
    await expect(order.locator("button.after-sale-withdraw")).to_be_hidden()

    # -- 退货退款 of all of it: the host approves and puts the unit back on sale -----------------------------
    await order.locator("button.after-sale-open").click()
    await form.locator("select[name=kind]").select_option("return_refund")
    await form.locator("input[name=reason]").fill("茶饼受潮")
    await form.locator("button[type=submit]").click()
    await expect(request).to_have_text("售后（退货退款）：处理中")
    await console.locator("#after-sale-filter button").click()
    await expect(asked).to_have_count(1)
    await expect(asked.locator(".kind")).to_have_text("退货退款")
    await expect(asked.locator(".asked")).to_have_text("全部（¥9.90）")
    await expect(asked.locator("input[name=amount]")).to_have_value("9.90")
    await asked.locator("input[name=restock]").check()
    await asked.get_by_role("button", name="同意").click()
    await expect(asked.locator(".after-sale-state")).to_have_text("已同意 — 退款 ¥9.90")
    await expect(asked.locator(".order .status")).to_have_text("已退款")
    refund = console.locator("#refund-list tr")
    await expect(refund).to_have_count(1)
    await expect(refund.locator(".amount")).to_have_text("¥9.90")
    await expect(refund.locator(".refund-status")).to_have_text("已退款")  # the dev provider refunds at once
    await expect(refund).not_to_have_class(re.compile("failing"))
    await console.screenshot(path=str(DOCS / "host-after-sale.png"), full_page=True)

    await expect(order.locator(".status")).to_have_text("已退款")  # its frame
    await expect(order.locator(".after-sale-status")).to_have_text("售后（退货退款）：已同意 — 退款 ¥9.90")
    await expect(order.locator("button.after-sale-open")).to_be_hidden()  # nothing left to refund
    await expect(order.locator("button.receive")).to_be_hidden()
    await expect(card(page, tea).locator(".stock-left")).to_have_text("5")  # restocked
    await page.screenshot(path=str(DOCS / "checkout-after-sale.png"), full_page=True)

    async with api(site) as client:
        requests = await ok(
            await client.get(
                f"/api/orders/{await order.get_attribute('data-order-id')}/after-sales", headers=auth(host)
            )
        )
    assert [(r["kind"], r["status"]) for r in requests] == [
        ("refund", "rejected"),
        ("refund", "withdrawn"),
        ("return_refund", "approved"),
    ]
    assert problems.seen == []


# -- WeChat Pay Native: the QR code, decoded -----------------------------------------------------------------


class TestWeChatNative:
    @pytest.fixture
    async def wechat(self) -> AsyncIterator[FakeWeChatPay]:
        fake = FakeWeChatPay()
        async with fake.server():
            yield fake

    @pytest.fixture
    def site_settings(self, wechat: FakeWeChatPay, tmp_path: Path) -> dict[str, Any]:
        return {**wechat.settings(tmp_path), "dev_payments": True}

    async def test_the_qr_code_is_the_code_url_and_the_notification_pays(
        self, site: LiveServer, browser: Browser, problems: Problems, wechat: FakeWeChatPay
    ) -> None:
        async with api(site) as client:
            host, room, (tea,) = await shop(client, "云南普洱 357g")
        page = await buyer_in(site, browser, problems, room)  # Chromium's own User-Agent: a desktop one
        await card(page, tea).locator("button.buy").click()
        await expect(page.locator("#checkout-submit")).to_be_enabled()
        choices = page.locator("#checkout-provider-list label")
        await expect(choices).to_have_text(["微信支付", "测试支付"])
        await expect(choices.first.locator("input")).to_be_checked()
        for name, value in ADDRESS.items():
            await page.fill(f"#checkout-address input[name={name}]", value)
        await page.click("#checkout-submit")

        qr = page.locator("#checkout-qr")
        await expect(qr).to_be_visible()
        await expect(qr.locator(".scan")).to_have_text("请使用微信扫一扫支付")
        await expect(page.locator("#checkout-amount")).to_have_text("¥9.90")
        [answer] = wechat.create_answers
        [payment] = wechat.payments.values()
        assert payment.trade_type == "NATIVE" and payment.amount == PRICE
        assert read_qr(await page.locator("#checkout-qr-code").screenshot()) == answer["code_url"]
        await page.screenshot(path=str(DOCS / "checkout-wechat-qr.png"))

        # The buyer scans and pays; WeChat notifies the server; the page learns it by itself.
        headers, body = wechat.payment_notification(payment.out_trade_no)
        async with api(site) as client:
            notified = await client.post("/api/payments/wechat/notify", headers=headers, content=body)
        assert notified.status_code in (200, 204), notified.text
        await expect(page.locator("#checkout")).to_be_hidden()
        await expect(page.locator("#my-orders li .status")).to_have_text("已支付")

        # -- a refund WeChat cannot take yet is shown to the host, highlighted, and sent again on 重试 ------
        order_id = await page.locator("#my-orders li").first.get_attribute("data-order-id")
        wechat.fail_with = (500, "SYSTEM_ERROR", "系统超时")
        async with api(site) as client:
            await ok(await client.post(f"/api/orders/{order_id}/refund", json={}, headers=auth(host)))
        await expect(page.locator("#my-orders li .status")).to_have_text("已退款")  # the ledger's, at once
        _, console = await open_page(browser, problems, "host", locale="zh-CN")
        await console.goto(f"{site.url}/host")
        await console.fill("#signin-form textarea", host)
        await console.click("#signin-form button")
        await console.click("#tabs [data-tab=aftersale]")
        refund = console.locator("#refund-list tr")
        await expect(refund).to_have_count(1)
        await expect(refund).to_have_class(re.compile("failing"))
        await expect(refund.locator(".refund-status")).to_contain_text("待发送")
        await expect(refund.locator(".attempts")).to_have_text("1")
        await expect(refund.locator(".last-error")).to_contain_text("SYSTEM_ERROR")
        wechat.fail_with = None
        await refund.get_by_role("button", name="重试").click()
        await expect(refund.locator(".refund-status")).to_have_text("处理中")  # WeChat took it
        await expect(refund.locator(".attempts")).to_have_text("2")
        await expect(refund).not_to_have_class(re.compile("failing"))
        await expect(refund.get_by_role("button", name="重试")).to_have_count(0)
        [out_refund_no] = wechat.refunds
        headers, body = wechat.refund_notification(out_refund_no)
        async with api(site) as client:
            notified = await client.post("/api/payments/wechat/notify", headers=headers, content=body)
        assert notified.status_code in (200, 204), notified.text
        await console.locator("#refund-filter button").click()
        await expect(refund.locator(".refund-status")).to_have_text("已退款")
        assert wechat.refunded(payment.out_trade_no) == PRICE
        assert problems.seen == []

    async def test_a_phone_browser_goes_to_wechat_pay_h5(
        self, site: LiveServer, browser: Browser, problems: Problems, wechat: FakeWeChatPay
    ) -> None:
        async with api(site) as client:
            _, room, (tea,) = await shop(client, "云南普洱 357g")
        page = await buyer_in(site, browser, problems, room, user_agent=IPHONE)
        opened: list[str] = []

        async def cashier(route: Route) -> None:  # WeChat's H5 cashier: this closed network cannot reach it
            opened.append(route.request.url)
            await route.fulfill(content_type="text/html; charset=utf-8", body="<title>微信支付</title>")

        await page.route("https://wx.tenpay.com/**", cashier)
        await card(page, tea).locator("button.buy").click()
        await pay_on_page_until_provider(page)
        await expect(page).to_have_title("微信支付")
        [payment] = wechat.payments.values()
        assert payment.trade_type == "MWEB" and payment.amount == PRICE
        [answer] = wechat.create_answers
        assert len(opened) == 1 and opened[0].startswith(answer["h5_url"]), opened
        assert "redirect_url=" in opened[0]  # WeChat brings the buyer back to the show
        assert problems.seen == []


async def pay_on_page_until_provider(page: Page) -> None:
    """The checkout sheet with the address typed and the first provider (WeChat Pay): 去支付."""
    await expect(page.locator("#checkout-submit")).to_be_enabled()
    await expect(page.locator("#checkout-provider-list label").first).to_have_text("微信支付")
    for name, value in ADDRESS.items():
        await page.fill(f"#checkout-address input[name={name}]", value)
    await page.click("#checkout-submit")


# -- reading a QR code off a screenshot ----------------------------------------------------------------------
#
# No QR decoder is installed on this project's machines (no zbar, zxing or OpenCV), so this reads one as the
# standard (ISO/IEC 18004) says, for what the checkout draws: a model 2 code of version 1-6 at level M in
# byte mode, black on white. Every codeword's Reed-Solomon check must hold: a grid misread, a wrong mask or
# a wrong text cannot pass.

#: Level M: (error correction codewords per block, blocks, data codewords per block), by version.
BLOCKS_M = {1: (10, 1, 16), 2: (16, 1, 28), 3: (26, 1, 44), 4: (18, 2, 32), 5: (24, 2, 43), 6: (16, 4, 27)}
ALIGNMENT = {2: 18, 3: 22, 4: 26, 5: 30, 6: 34}  #: the one alignment pattern's centre (row and column)
LEVELS = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}
MASKS = [
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: (r * c) % 2 + (r * c) % 3 == 0,
    lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0,
]


def png_luminance(png: bytes) -> list[list[int]]:
    """The rows of a screenshot's pixels as luminance 0-255 (8-bit RGB or RGBA, not interlaced)."""
    stream = io.BytesIO(png)
    assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    data = b""
    while True:
        length, kind = struct.unpack(">I4s", stream.read(8))
        chunk = stream.read(length)
        stream.read(4)
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            data += chunk
        elif kind == b"IEND":
            break
    raw = zlib.decompress(data)
    size = 3 if colour == 2 else 4
    stride = width * size
    rows: list[list[int]] = []
    previous = bytearray(stride)
    for y in range(height):
        kind_byte, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up, corner = previous[i], previous[i - size] if i >= size else 0
            if kind_byte == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind_byte == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind_byte == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind_byte == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(
            [(line[x] * 299 + line[x + 1] * 587 + line[x + 2] * 114) // 1000 for x in range(0, stride, size)]
        )
        previous = line
    return rows


def module_grid(pixels: list[list[int]]) -> list[list[bool]]:
    """The modules (dark: True): the dark area's bounds, the module size from the top-left finder pattern's
    7-module top edge, each module sampled at its centre."""
    dark = [[value < 128 for value in row] for row in pixels]
    ys = [y for y, row in enumerate(dark) if any(row)]
    xs = [x for x in range(len(dark[0])) if any(row[x] for row in dark)]
    top, left, right = ys[0], xs[0], xs[-1]
    run = next(x for x in range(left, right + 2) if not dark[top][x]) - left
    module = run / 7
    count = round((right - left + 1) / module)
    assert (count - 17) % 4 == 0, count
    return [
        [dark[round(top + (r + 0.5) * module)][round(left + (c + 0.5) * module)] for c in range(count)]
        for r in range(count)
    ]


def function_modules(count: int, version: int) -> list[list[bool]]:
    """Which modules are not data: finders with separators and format areas, timing, the alignment pattern."""
    taken = [[False] * count for _ in range(count)]

    def block(top: int, left: int, height: int, width: int) -> None:
        for r in range(top, top + height):
            for c in range(left, left + width):
                taken[r][c] = True

    block(0, 0, 9, 9)
    block(0, count - 8, 9, 8)
    block(count - 8, 0, 8, 9)
    for i in range(count):
        taken[6][i] = taken[i][6] = True
    if version >= 2:
        centre = ALIGNMENT[version]
        block(centre - 2, centre - 2, 5, 5)
    return taken


def bch_format(data: int) -> int:
    value = data << 10
    for bit in range(14, 9, -1):
        if value & (1 << bit):
            value ^= 0b10100110111 << (bit - 10)
    return ((data << 10) | value) ^ 0b101010000010010


def gf_tables() -> tuple[list[int], list[int]]:
    exp, log, x = [0] * 512, [0] * 256, 1
    for i in range(255):
        exp[i], log[x] = x, i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


def reed_solomon(data: list[int], n: int) -> list[int]:
    """The ``n`` error-correction codewords of ``data`` (generator with roots α^0 … α^(n-1))."""
    exp, log = gf_tables()

    def mul(a: int, b: int) -> int:
        return 0 if a == 0 or b == 0 else exp[log[a] + log[b]]

    generator = [1]
    for i in range(n):
        generator = [a ^ mul(b, exp[i]) for a, b in zip([*generator, 0], [0, *generator], strict=True)]
    remainder = [*data, *([0] * n)]
    for i in range(len(data)):
        factor = remainder[i]
        if factor:
            for j in range(1, len(generator)):
                remainder[i + j] ^= mul(generator[j], factor)
    return remainder[len(data) :]


def read_qr(png: bytes) -> str:
    grid = module_grid(png_luminance(png))
    count = len(grid)
    version = (count - 17) // 4
    assert version in BLOCKS_M, f"version {version}"
    # The format: 15 bits around the top-left finder, the nearest valid BCH word (up to 3 errors).
    positions = [(8, c) for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [(r, 8) for r in (7, 5, 4, 3, 2, 1, 0)]
    read = sum(int(grid[r][c]) << (14 - i) for i, (r, c) in enumerate(positions))
    distance, format_data = min((bin(bch_format(d) ^ read).count("1"), d) for d in range(32))
    assert distance <= 3, f"format bits {read:015b}"
    level, mask = LEVELS[format_data >> 3], MASKS[format_data & 0b111]
    assert level == "M", level
    # The data modules, in the standard's zigzag: two columns at a time from the right, up then down.
    taken = function_modules(count, version)
    bits: list[int] = []
    upward, column = True, count - 1
    while column > 0:
        if column == 6:
            column -= 1
        for row in range(count - 1, -1, -1) if upward else range(count):
            for c in (column, column - 1):
                if not taken[row][c]:
                    bits.append(int(grid[row][c] != mask(row, c)))
        upward, column = not upward, column - 2
    codewords = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits) - 7, 8)]
    ec_size, blocks, data_size = BLOCKS_M[version]
    data_words = codewords[: blocks * data_size]
    ec_words = codewords[blocks * data_size : blocks * (data_size + ec_size)]
    message: list[int] = []
    for b in range(blocks):
        block_data = data_words[b::blocks]
        assert reed_solomon(block_data, ec_size) == ec_words[b::blocks], (
            f"block {b}: Reed-Solomon check failed"
        )
        message += block_data
    stream = "".join(f"{word:08b}" for word in message)
    assert stream[:4] == "0100", f"mode {stream[:4]} (not byte mode)"
    length = int(stream[4:12], 2)
    return bytes(int(stream[12 + 8 * i : 20 + 8 * i], 2) for i in range(length)).decode("utf-8")
