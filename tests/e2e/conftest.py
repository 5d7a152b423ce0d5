"""Browser end-to-end fixtures: the real app on uvicorn (SQLite and the test Redis) and Debian's Chromium
driven by Playwright through its executable path (Playwright's own browser download cannot work here;
``make browser`` installs the ``chromium`` package when it is missing).

The app's ``base_url`` is the server's own address: the websocket's Origin allowlist is derived from it,
and invite and share links must lead back to this server.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from loadtests.harness import Port
from tests.conftest import LiveServer, _unavailable, make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying to reach Google's services, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A synthetic camera and microphone, granted without a prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=900)


@pytest.fixture
def site_settings() -> dict[str, Any]:
    """Settings of the ``site`` besides the test defaults; a test module overrides this fixture for more."""
    return {}


def api(site: LiveServer) -> httpx.AsyncClient:
    """The tests' own API client, with no kept-alive connections: the browser steps between two of its
    calls can outlast uvicorn's keep-alive timeout (5 s), and a request sent on a connection the server is
    closing at that moment fails with ReadError (seen once, on a loaded machine)."""
    return httpx.AsyncClient(base_url=site.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture
async def site(redis_url: str, tmp_path: Path, site_settings: dict[str, Any]) -> AsyncIterator[LiveServer]:
    """SQLite only: what these tests check is the pages, and a browser test is slow enough already. The
    Redis database is ``LIVECART_TEST_REDIS_URL``'s; the port is a free one the system picks, held until
    the server listens on it."""
    port = Port()
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}",
        redis_url,
        tmp_path,
        base_url=port.url,
        **site_settings,
    )
    async with LiveServer(settings, port=port) as live:
        yield live


@pytest.fixture
async def browser(site: LiveServer) -> AsyncIterator[Browser]:
    """Depends on ``site`` so that it closes first: no page is left talking to a stopping server."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium at {CHROMIUM} (`make browser` installs it)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Problems:
    """What went wrong inside the pages: uncaught exceptions and Content-Security-Policy refusals."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page, name: str) -> Page:
        def console(message: ConsoleMessage) -> None:
            # A refused fetch (409 while the show is not live yet) is logged too, and is expected.
            if message.type == "error" and "Failed to load resource" not in message.text:
                self.seen.append(f"{name} console: {message.text}")

        def crashed(error: Error) -> None:
            self.seen.append(f"{name} exception: {error}")

        page.on("console", console)
        page.on("pageerror", crashed)
        return page


@pytest.fixture
def problems() -> Problems:
    return Problems()


async def open_page(
    browser: Browser, problems: Problems, name: str, *, phone: bool = False, **options: Any
) -> tuple[BrowserContext, Page]:
    """A page in a context of its own (its own localStorage), as a separate person's browser. Its language is
    English (``Accept-Language: en-US``) unless ``locale`` says otherwise: the pages' default is Chinese."""
    options.setdefault("locale", "en-US")
    context = await browser.new_context(
        viewport=PHONE if phone else DESKTOP,
        has_touch=phone,
        permissions=["clipboard-read", "clipboard-write", *options.pop("permissions", [])],
        **options,
    )
    context.set_default_timeout(15_000)
    return context, problems.watch(await context.new_page(), name)


async def sign_in_on_page(page: Page, phone: str, *, name: str | None = None, code: str | None = None) -> str:
    """Sign in on the viewer page with ``phone`` and the code the dev SMS provider shows (or ``code``);
    returns the dev code."""
    await page.fill("#code-form input[name=phone]", phone)
    await page.click("#code-form button")
    await expect(page.locator("#dev-code")).to_have_text(re.compile(r"\d{6}"))
    hint = await page.locator("#dev-code").inner_text()
    found = re.search(r"\d{6}", hint)
    assert found is not None, hint
    await page.fill("#signin-form input[name=code]", code or found[0])
    if name is not None:
        await page.fill("#signin-form input[name=name]", name)
    await page.click("#signin-form button")
    return found[0]


#: A shipping address as a buyer types it into the checkout sheet.
ADDRESS = {"name": "王小明", "phone": "13800138000", "region": "上海市 浦东新区", "line": "世纪大道 100 号"}


async def pay_on_page(
    page: Page, *, provider: str = "dev", address: dict[str, str] = ADDRESS, outcome: str = "paid"
) -> None:
    """Pay the order whose checkout sheet is open (checkout.js) through the dev provider: the address where
    the sheet asks for one (a field it prefilled is left as it is), ``provider`` chosen, 去支付, then the
    dev provider's button for ``outcome`` (``paid`` or ``failed``)."""
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#checkout-submit")).to_be_enabled()
    if await page.locator("#checkout-address").is_visible():
        for name, value in address.items():
            field = page.locator(f"#checkout-address input[name={name}]")
            if not await field.input_value():
                await field.fill(value)
    await page.locator(f'#checkout-provider-list input[value="{provider}"]').check()
    await page.click("#checkout-submit")
    await page.click("#checkout-pay" if outcome == "paid" else "#checkout-fail")


def forget_mdns() -> None:
    """Drop aioice's process-wide mDNS resolver. It is a module global guarded by an ``asyncio.Lock``, which
    binds to the event loop of the first test whose WHEP offers (Chromium's host candidates are mDNS
    names) contend for it; a later test's server, on its own loop, then answers every offer that contends
    for it with ``400 invalid_sdp`` ("bound to a different event loop"). One loop per process in
    production; one per test here."""
    for name in ("lock", "protocol", "subscribers"):
        if hasattr(aioice.ice._mdns, name):
            delattr(aioice.ice._mdns, name)


@pytest.fixture(autouse=True)
def mdns_of_this_loop() -> Iterator[None]:
    forget_mdns()
    yield
    forget_mdns()
