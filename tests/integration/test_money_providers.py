"""Real money through the app (SPEC §10), one test body per provider: the app runs each provider's real SDK
against a local server in that provider's format (``tests/fake_wechatpay.py``, ``fake_alipay.py``,
``fake_stripe.py``), which signs and encrypts its notifications with keys the test made, exactly as the
provider documents. SQLite and PostgreSQL, real Redis.

- a checkout is created with the right fields, and a correctly signed notification makes the order paid;
- a tampered, forged, stale or replayed notification, or one for the wrong amount, changes nothing
  (401 for what is not genuine, acknowledged and ignored for a genuine one that must not apply);
- a payment whose notification never arrives is settled by the query;
- a reservation that expires first closes its payment at the provider, so it can no longer be paid;
- a refund reaches the provider with the right amounts, and its notification (or answer) completes it;
- a refund the provider refuses is kept, shown with its error, and sent again until it is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlalchemy import func, select

from loadtests.harness import join, new_sale
from shop.models import Payment, PaymentEvent, Refund
from shop.payments.service import NOTIFY_PATHS
from tests.conftest import LiveServer, make_settings
from tests.fake_alipay import FakeAlipay, fen
from tests.fake_stripe import FakeStripe
from tests.fake_wechatpay import FakeWeChatPay
from tests.shop_api import ADDRESS, Buyer, Sale, auth, buy, ok

pytestmark = pytest.mark.integration

Notification = tuple[dict[str, str], bytes]


@dataclass
class Rig:
    """One provider's fake, and how this test speaks to it."""

    name: str
    notify_path: str
    fake: Any
    #: what the checkout answer holds for the channel the test pays by
    checkout_key: str
    #: ``(payment_id)``: the buyer pays at the provider (no notification; ``ValueError`` if it cannot)
    pay: Callable[[str], object]
    #: ``(payment_id, amount=None, timestamp=None) -> (headers, body)``: the signed payment notification
    paid: Callable[..., Notification]
    #: ``(payment_id) -> (headers, body)``: a notification signed with a key that is not the provider's
    forged: Callable[[str], Notification]
    #: ``(refund_id) -> (headers, body)``: the refund succeeded, signed; ``None`` if the provider answers
    #: refunds at once (the refund's own answer completes it)
    refunded: Callable[[str], Notification] | None
    #: ``(payment_id) -> bool``: the provider closed this payment (nobody can pay it now)
    closed: Callable[[str], bool]
    #: ``(refund id) -> amount`` the provider refunded, or ``None`` if it never saw it
    refund_amount: Callable[[str], int | None]
    #: make every API call fail (``True``) or work again (``False``)
    failing: Callable[[bool], None]
    #: ``(notification) -> notification``: the same without its signature
    unsigned: Callable[[Notification], Notification] = lambda n: (
        {"Content-Type": n[0].get("Content-Type", "application/json")},
        n[1],
    )
    #: ``(checkout) -> None``: the buyer opens the checkout (Alipay makes its trade only then)
    open: Callable[[dict[str, Any]], Awaitable[object]] | None = None


def wechat_rig() -> Rig:
    fake = FakeWeChatPay()
    other = FakeWeChatPay()  # another "platform": its signatures must not verify

    def forged(payment_id: str) -> Notification:
        headers, body = fake.payment_notification(payment_id)
        return {
            **headers,
            **fake.signed_headers(body, timestamp=None, serial=None, key=other.platform_key),
        }, body

    def failing(on: bool) -> None:
        fake.fail_with = (500, "SYSTEM_ERROR", "系统错误") if on else None

    def refund_amount(refund_id: str) -> int | None:
        refund = fake.refunds.get(refund_id)
        return refund.refund if refund else None

    return Rig(
        name="wechat",
        notify_path=NOTIFY_PATHS["wechat"],
        fake=fake,
        checkout_key="code_url",
        pay=fake.pay,
        paid=fake.payment_notification,
        forged=forged,
        refunded=lambda rid: fake.refund_notification(rid, status="SUCCESS"),
        closed=lambda pid: fake.payments[pid].trade_state == "CLOSED",
        refund_amount=refund_amount,
        failing=failing,
    )


def stripe_rig() -> Rig:
    fake = FakeStripe()

    def paid(payment_id: str, amount: int | None = None, timestamp: int | None = None) -> Notification:
        if fake.session_for(payment_id)["status"] == "open":
            fake.pay(payment_id)
        return fake.payment_notification(payment_id, amount=amount, timestamp=timestamp)

    def forged(payment_id: str) -> Notification:
        if fake.session_for(payment_id)["status"] == "open":
            fake.pay(payment_id)
        return fake.payment_notification(payment_id, secret="whsec_not_the_endpoint_secret")

    def failing(on: bool) -> None:
        fake.fail_with = 500 if on else None

    def refund_amount(refund_id: str) -> int | None:
        try:
            return int(fake.refund_for(refund_id)["amount"])
        except (KeyError, LookupError):
            return None

    return Rig(
        name="stripe",
        notify_path=NOTIFY_PATHS["stripe"],
        fake=fake,
        checkout_key="redirect_url",
        pay=fake.pay,
        paid=paid,
        forged=forged,
        refunded=None,
        closed=lambda pid: fake.session_for(pid)["status"] == "expired",
        refund_amount=refund_amount,
        failing=failing,
    )


def without_sign(notification: Notification) -> Notification:
    """An Alipay notification (a form that carries its own ``sign``) with the sign left out."""
    headers, body = notification
    fields = [(k, v) for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k != "sign"]
    return headers, urlencode(fields).encode()


def alipay_rig() -> Rig:
    fake = FakeAlipay()
    other = FakeAlipay()  # another "Alipay": its signatures must not verify

    def paid(payment_id: str, amount: int | None = None, timestamp: int | None = None) -> Notification:
        if fake.trade(payment_id).status == "WAIT_BUYER_PAY":
            fake.pay(payment_id)
        return fake.payment_notification(payment_id, amount=amount, timestamp=timestamp)

    def forged(payment_id: str) -> Notification:
        return fake.payment_notification(payment_id, signed_by=other.platform_key)

    def failing(on: bool) -> None:
        fake.fail_with_status = 500 if on else None

    def refund_amount(refund_id: str) -> int | None:
        for trade in fake.trades.values():
            if refund_id in trade.refunds:
                return fen(trade.refunds[refund_id].refund_amount)
        return None

    return Rig(
        name="alipay",
        notify_path=NOTIFY_PATHS["alipay"],
        fake=fake,
        checkout_key="redirect_url",
        pay=fake.pay,
        paid=paid,
        forged=forged,
        refunded=None,
        closed=lambda pid: fake.trade(pid).status == "TRADE_CLOSED",
        refund_amount=refund_amount,
        failing=failing,
        open=lambda checkout: fake.open(checkout["checkout"]["redirect_url"]),
        unsigned=without_sign,
    )


RIGS = {"wechat": wechat_rig, "alipay": alipay_rig, "stripe": stripe_rig}


@dataclass
class World:
    rig: Rig
    server: LiveServer
    client: httpx.AsyncClient

    async def notify(self, notification: Notification) -> httpx.Response:
        headers, body = notification
        return await self.client.post(self.rig.notify_path, content=body, headers=headers)

    async def sql(self, query: Any) -> Any:
        async with self.server.state.sessions() as session:
            return (await session.execute(query)).scalars().all()

    async def events(self) -> int:
        """Provider notifications applied so far (each recorded by its id)."""
        async with self.server.state.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(PaymentEvent))).scalar_one())


@pytest.fixture(params=sorted(RIGS))
async def world(
    request: pytest.FixtureRequest, database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[World]:
    rig = RIGS[request.param]()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(rig.fake.server())
        settings = make_settings(
            database_url,
            redis_url,
            tmp_path,
            dev_payments=False,
            payment_query_after_seconds=1.0,
            refund_retry_seconds=0.3,
            **rig.fake.settings(tmp_path),
        )
        server = await stack.enter_async_context(LiveServer(settings))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=30))
        yield World(rig, server, client)


async def reserve_and_checkout(
    w: World, *, reserve_seconds: int = 300
) -> tuple[Sale, Buyer, dict[str, Any], dict[str, Any]]:
    sale = await new_sale(w.client, stock=5, price=1234, reserve_seconds=reserve_seconds)
    buyer = await join(w.client, sale.room_id, sale.invite)
    order = await ok(await buy(w.client, sale.card_id, buyer), 201)
    desktop = {**auth(buyer.token), "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"}
    checkout = await ok(
        await w.client.post(
            f"/api/orders/{order['id']}/pay",
            json={"provider": w.rig.name, "address": ADDRESS},
            headers=desktop,
        )
    )
    if w.rig.open is not None:
        await w.rig.open(checkout)
    return sale, buyer, order, checkout


async def order_of(w: World, sale: Sale, order_id: str) -> dict[str, Any]:
    return await ok(await w.client.get(f"/api/orders/{order_id}", headers=auth(sale.host_token)))  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Awaitable[bool]], *, seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.1)


async def test_a_signed_notification_pays_the_order_and_a_replay_changes_nothing(world: World) -> None:
    w = world
    sale, _, order, checkout = await reserve_and_checkout(w)
    assert checkout["provider"] == w.rig.name
    assert checkout["checkout"][w.rig.checkout_key].startswith(("weixin://", "http"))
    payment_id = checkout["payment_id"]
    notification = w.rig.paid(payment_id)
    r = await w.notify(notification)
    assert r.status_code in (200, 204), r.text
    paid = await order_of(w, sale, order["id"])
    assert paid["status"] == "paid" and paid["address"]["phone"] == "+8613800138000"
    [payment] = await w.sql(select(Payment).where(Payment.id == payment_id))
    assert payment.status == "succeeded" and payment.provider_ref
    events = await w.events()
    # The same notification again (the provider redelivers): acknowledged, nothing changes.
    r = await w.notify(notification)
    assert r.status_code in (200, 204), r.text
    assert await w.events() == events
    assert await order_of(w, sale, order["id"]) == paid


async def test_notifications_that_are_not_genuine_or_not_right_change_nothing(world: World) -> None:
    w = world
    sale, _, order, checkout = await reserve_and_checkout(w)
    payment_id = checkout["payment_id"]
    before = await order_of(w, sale, order["id"])
    headers, body = w.rig.paid(payment_id)
    # A JSON body with a character changed; a form (Alipay) with the amount paid changed.
    tampered = body.replace(b"12.34", b"0.01") if b"12.34" in body else body.replace(b'"', b"'", 1)
    assert tampered != body
    cases = {
        "tampered": (headers, tampered),
        "forged": w.rig.forged(payment_id),
        "stale": w.rig.paid(payment_id, timestamp=int(w.server.state.clock.now_ms() / 1000) - 3600),
        "unsigned": w.rig.unsigned((headers, body)),
    }
    for name, notification in cases.items():
        r = await w.notify(notification)
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert await order_of(w, sale, order["id"]) == before, name
    # Genuine, but for another amount than we asked: acknowledged (the provider must stop), not applied.
    r = await w.notify(w.rig.paid(payment_id, amount=1))
    assert r.status_code in (200, 204), r.text
    assert await order_of(w, sale, order["id"]) == before
    assert await w.events() == 0


async def test_a_payment_whose_notification_never_comes_is_settled_by_the_query(world: World) -> None:
    w = world
    sale, _, order, checkout = await reserve_and_checkout(w)
    w.rig.pay(checkout["payment_id"])  # the buyer paid; the notification is lost

    async def paid() -> bool:
        return (await order_of(w, sale, order["id"]))["status"] == "paid"

    await eventually(paid)  # payment_query_after_seconds = 1: the sweeper asks the provider


async def test_an_expiring_reservation_closes_its_payment_at_the_provider(world: World) -> None:
    w = world
    # Three seconds: time for the checkout and the buyer opening Alipay's cashier (which creates the trade
    # there) on a loaded machine; with one, the sweeper sometimes closed the payment before the cashier
    # opened it (seen once in CI: ACQ.TRADE_HAS_CLOSE).
    sale, _, order, checkout = await reserve_and_checkout(w, reserve_seconds=3)
    payment_id = checkout["payment_id"]

    async def expired() -> bool:
        return (await order_of(w, sale, order["id"]))["status"] == "expired"

    await eventually(expired)
    assert w.rig.closed(payment_id)
    [payment] = await w.sql(select(Payment).where(Payment.id == payment_id))
    assert payment.status == "closed"
    with pytest.raises(ValueError):
        w.rig.pay(payment_id)  # nobody can pay for stock that went back on sale


async def test_refunds_reach_the_provider_and_complete(world: World) -> None:
    w = world
    sale, _, order, checkout = await reserve_and_checkout(w)
    await w.notify(w.rig.paid(checkout["payment_id"]))
    host = auth(sale.host_token)
    part = await ok(
        await w.client.post(f"/api/orders/{order['id']}/refund", json={"amount": 234}, headers=host)
    )
    assert part["status"] == "paid" and part["refunded_amount"] == 234
    rest = await ok(await w.client.post(f"/api/orders/{order['id']}/refund", json={}, headers=host))
    assert rest["status"] == "refunded" and rest["refunded_amount"] == 1234
    refunds = sorted(
        await w.sql(select(Refund).where(Refund.order_id == order["id"])), key=lambda r: r.amount
    )
    assert [r.amount for r in refunds] == [234, 1000]
    assert [w.rig.refund_amount(r.id) for r in refunds] == [234, 1000]
    if w.rig.refunded is not None:
        assert {r.status for r in refunds} == {"processing"}
        for refund in refunds:
            r = await w.notify(w.rig.refunded(refund.id))
            assert r.status_code in (200, 204), r.text
    after = await w.sql(select(Refund).where(Refund.order_id == order["id"]))
    assert {r.status for r in after} == {"succeeded"}, [(r.status, r.last_error) for r in after]
    [payment] = await w.sql(select(Payment).where(Payment.id == checkout["payment_id"]))
    assert payment.status == "refunded"


async def test_a_refund_the_provider_refuses_is_kept_shown_and_sent_again(world: World) -> None:
    w = world
    sale, _, order, checkout = await reserve_and_checkout(w)
    await w.notify(w.rig.paid(checkout["payment_id"]))
    w.rig.failing(True)
    refunded = await ok(
        await w.client.post(f"/api/orders/{order['id']}/refund", json={}, headers=auth(sale.host_token))
    )
    assert refunded["status"] == "refunded"  # our ledger has it; the money is owed to the buyer
    [refund] = await w.sql(select(Refund).where(Refund.order_id == order["id"]))
    assert refund.status == "pending" and refund.last_error and refund.attempts == 1
    assert w.rig.refund_amount(refund.id) is None
    w.rig.failing(False)

    async def taken() -> bool:  # the provider has it, and we have its answer (written just after it came)
        [row] = await w.sql(select(Refund).where(Refund.id == refund.id))
        return w.rig.refund_amount(refund.id) == 1234 and row.status != "pending"

    await eventually(taken)  # the sweeper sends it again (refund_retry_seconds = 0.3)
    [again] = await w.sql(select(Refund).where(Refund.id == refund.id))
    assert again.status in ("processing", "succeeded") and again.attempts >= 2 and again.last_error is None
