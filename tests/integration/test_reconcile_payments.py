"""``livecart reconcile-payments`` (issue 13, "Money is exact"): one day of our ledger against the provider's
statement — WeChat Pay's trade bill, Stripe's balance transactions — each fetched by the real SDK from its
fake (``tests/fake_wechatpay.py``, ``fake_stripe.py``), which makes the statement from what it saw happen.
Orders are paid and refunded through the app, on SQLite and PostgreSQL, with real Redis.

- a day paid and (in part) refunded through the app reconciles with no difference, counts and sums the same
  on both sides, through ``reconcile_day`` and through the command (exit 0);
- a statement made to differ — a line left out, an amount changed, a payment our ledger never saw, a
  payment the provider took that our ledger still holds pending — gives exactly those differences, and
  the command exits 1 and prints them;
- a day without trades is an empty statement on both sides;
- the command exits 2, saying why on stderr, for a bad date, a provider without statements or not
  configured, and a provider that cannot give its statement; a WeChat bill that does not match its SHA-1
  is refused, and a Stripe day of several pages is read to its end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from base.settings import Settings
from loadtests.harness import join, new_sale
from shop.models import Refund
from shop.payments.provider import ProviderError
from shop.payments.reconcile_payments import Report, reconcile_day
from shop.payments.service import NOTIFY_PATHS
from shop.payments.statements import Totals
from shop.payments.wechatpay import BEIJING, WeChatPay
from tests.conftest import LiveServer, make_settings
from tests.fake_stripe import FakeStripe
from tests.fake_wechatpay import FakeWeChatPay
from tests.shop_api import ADDRESS, auth, buy, ok

pytestmark = pytest.mark.integration

Notification = tuple[dict[str, str], bytes]
PRICE = 1234


@dataclass
class Rig:
    """One provider's fake, and how this test speaks to it."""

    name: str
    fake: Any
    zone: Any
    #: ``(payment_id) -> notification``: the buyer pays; the signed notification of it
    paid: Callable[[str], Notification]
    #: ``(refund_id) -> notification`` of the refund's success, or ``None`` (the refund's answer is final)
    refunded: Callable[[str], Notification] | None
    #: ``(payment_id)``: the buyer pays at the provider, and no notification ever comes
    pay_silently: Callable[[str], object]
    #: ``(amount) -> payment_id`` of a payment at the provider that our ledger never saw
    outside_payment: Callable[[int], str]
    #: ``(our id)``: the statement leaves this payment's or refund's line out
    leave_out: Callable[[str], None]
    #: ``(our id, amount)``: the statement shows this amount for it
    misstate: Callable[[str, int], None]
    #: make every API call fail (``True``) or work again
    failing: Callable[[bool], None]
    #: how many requests the provider has answered for statements so far
    statement_requests: Callable[[], int]


def wechat_rig() -> Rig:
    fake = FakeWeChatPay()

    def failing(on: bool) -> None:
        fake.fail_with = (500, "SYSTEM_ERROR", "系统错误") if on else None

    return Rig(
        name="wechat",
        fake=fake,
        zone=BEIJING,
        paid=fake.payment_notification,
        refunded=lambda rid: fake.refund_notification(rid, status="SUCCESS"),
        pay_silently=fake.pay,
        outside_payment=lambda amount: fake.outside_payment(amount).out_trade_no,
        leave_out=fake.bill_left_out.add,
        misstate=fake.bill_amounts.__setitem__,
        failing=failing,
        statement_requests=lambda: sum(1 for _, path in fake.calls if path.startswith("/v3/bill")),
    )


def stripe_rig() -> Rig:
    fake = FakeStripe(max_page=2)  # a day's few transactions take several pages

    def paid(payment_id: str) -> Notification:
        fake.pay(payment_id)
        return fake.payment_notification(payment_id)

    def failing(on: bool) -> None:
        fake.fail_with = 500 if on else None

    return Rig(
        name="stripe",
        fake=fake,
        zone=UTC,
        paid=paid,
        refunded=None,
        pay_silently=fake.pay,
        outside_payment=lambda amount: str(fake.outside_payment(amount)["metadata"]["payment_id"]),
        leave_out=fake.statement_left_out.add,
        misstate=fake.statement_amounts.__setitem__,
        failing=failing,
        statement_requests=lambda: len(fake.calls("GET", "/v1/balance_transactions")),
    )


RIGS = {"wechat": wechat_rig, "stripe": stripe_rig}


@dataclass
class World:
    rig: Rig
    server: LiveServer
    client: httpx.AsyncClient
    settings: Settings

    async def notify(self, notification: Notification) -> None:
        headers, body = notification
        r = await self.client.post(NOTIFY_PATHS[self.rig.name], content=body, headers=headers)
        assert r.status_code in (200, 204), r.text

    async def reconcile(self, day: date) -> Report:
        state = self.server.state
        return await reconcile_day(state.sessions, state.payments.providers, self.rig.name, day)

    def today(self) -> date:
        return datetime.now(self.rig.zone).date()

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """``livecart reconcile-payments ARGS`` as an operator runs it: its settings from the environment."""
        env = {**os.environ, **environment(self.settings)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecart.cli",
            "reconcile-payments",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


def environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``LIVECART_*`` environment variables that make them."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str | int | float | bool | Path):
            env[f"LIVECART_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


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
            # a payment paid without a notification stays pending in our ledger throughout the test
            payment_query_after_seconds=600.0,
            **rig.fake.settings(tmp_path),
        )
        server = await stack.enter_async_context(LiveServer(settings))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=30))
        yield World(rig, server, client, settings)


async def checkout(w: World) -> tuple[str, str, dict[str, str]]:
    """A new order, checked out with the world's provider: ``(order id, payment id, host headers)``."""
    sale = await new_sale(w.client, stock=5, price=PRICE)
    buyer = await join(w.client, sale.room_id, sale.invite)
    order = await ok(await buy(w.client, sale.card_id, buyer), 201)
    desktop = {**auth(buyer.token), "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120"}
    started = await ok(
        await w.client.post(
            f"/api/orders/{order['id']}/pay",
            json={"provider": w.rig.name, "address": ADDRESS},
            headers=desktop,
        )
    )
    return order["id"], started["payment_id"], auth(sale.host_token)


async def paid_order(w: World) -> tuple[str, str, dict[str, str]]:
    order_id, payment_id, host = await checkout(w)
    await w.notify(w.rig.paid(payment_id))
    return order_id, payment_id, host


async def refund(w: World, order_id: str, host: dict[str, str], amount: int) -> str:
    """A partial refund through the app, completed at the provider: its refund id."""
    before = {r["id"] for r in await refunds_of(w, order_id)}
    await ok(await w.client.post(f"/api/orders/{order_id}/refund", json={"amount": amount}, headers=host))
    [made] = [r for r in await refunds_of(w, order_id) if r["id"] not in before]
    if w.rig.refunded is not None:
        await w.notify(w.rig.refunded(made["id"]))
    return str(made["id"])


async def refunds_of(w: World, order_id: str) -> list[dict[str, Any]]:
    async with w.server.state.sessions() as session:
        rows = (await session.execute(select(Refund).where(Refund.order_id == order_id))).scalars().all()
    return [{"id": r.id, "amount": r.amount, "status": r.status} for r in rows]


def what(differences: list[Any]) -> set[tuple[str, str, str]]:
    """Differences as ``(what, kind, our id)``, from a ``Report`` or the command's JSON."""
    found = set()
    for d in differences:
        d = d if isinstance(d, dict) else d.as_json()
        found.add((d["what"], d["kind"], d["refund_id"] or d["payment_id"]))
    return found


async def test_a_day_through_the_app_reconciles_and_every_change_to_the_statement_is_named(
    world: World,
) -> None:
    w = world
    paid = [await paid_order(w) for _ in range(3)]
    (first_order, _, host), (_, second_payment, _), (_, third_payment, _) = paid
    refund_id = await refund(w, first_order, host, 234)
    day = w.today()

    report = await w.reconcile(day)
    # WeChat: the trade bill asked for, then its file downloaded; Stripe: three charges and a refund are
    # two pages of two (the fake's page size)
    assert w.rig.statement_requests() == 2
    assert report.differences == [], [d.as_json() for d in report.differences]
    expected = Totals(payments=3, payment_amount=3 * PRICE, refunds=1, refund_amount=234)
    assert report.ours == report.theirs == expected and report.boundary == []
    status, out, err = await w.cli("--date", day.isoformat())
    assert status == 0, err
    printed = json.loads(out)
    assert printed["differences"] == 0
    [mine] = printed["providers"]
    assert mine["provider"] == w.rig.name and mine["date"] == day.isoformat()
    assert mine["ours"] == mine["theirs"] == expected.as_json() and mine["differences"] == []

    # The statement now says other than what happened.
    w.rig.leave_out(second_payment)
    w.rig.misstate(third_payment, PRICE - 34)
    w.rig.misstate(refund_id, 300)
    outsider = w.rig.outside_payment(777)
    _, pending_payment, _ = await checkout(w)
    w.rig.pay_silently(pending_payment)  # the provider took it; its notification never came

    wanted = {
        ("missing_at_provider", "payment", second_payment),
        ("amount_differs", "payment", third_payment),
        ("amount_differs", "refund", refund_id),
        ("missing_in_ledger", "payment", outsider),
        ("status_differs", "payment", pending_payment),
    }
    report = await w.reconcile(day)
    assert what(report.differences) == wanted and len(report.differences) == len(wanted)
    by_id = {d.refund_id or d.payment_id: d for d in report.differences}
    amounts = by_id[third_payment]
    assert amounts.ours is not None and amounts.theirs is not None
    assert (amounts.ours.amount, amounts.theirs.amount) == (PRICE, PRICE - 34)
    pending = by_id[pending_payment]
    assert pending.ours is not None and pending.ours.status == "pending"
    assert report.ours == expected  # our ledger did not change
    # the first, the third misstated, the outsider and the one still pending with us (the second left out)
    assert report.theirs == Totals(
        payments=4, payment_amount=PRICE + (PRICE - 34) + 777 + PRICE, refunds=1, refund_amount=300
    )

    for args in (("--date", day.isoformat(), "--provider", w.rig.name), ("--date", day.isoformat())):
        status, out, err = await w.cli(*args)
        assert status == 1, err
        printed = json.loads(out)
        [mine] = printed["providers"]
        assert what(mine["differences"]) == wanted and printed["differences"] == len(wanted)

    # A day without trades: nothing on either side.
    quiet = await w.reconcile(day - timedelta(days=3))
    assert quiet.differences == [] and quiet.ours == quiet.theirs == Totals()


async def test_the_command_exits_2_when_the_provider_cannot_give_its_statement(world: World) -> None:
    w = world
    day = w.today().isoformat()
    w.rig.failing(True)
    status, out, err = await w.cli("--date", day)
    assert status == 2 and f"{w.rig.name}: the statement of {day} could not be had" in err
    assert json.loads(out)["providers"] == []


async def test_the_command_exits_2_for_a_bad_date_or_a_provider_without_statements(
    tmp_path: Path, redis_url: str
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", redis_url, tmp_path)
    env = {**os.environ, **environment(settings)}  # the dev provider only: it has no statement
    for args, problem in (
        (("--date", "2024-13-01"), "'2024-13-01' is not a date YYYY-MM-DD"),
        (("--date", "20240301"), "'20240301' is not a date YYYY-MM-DD"),
        (("--date", "2024-03-01"), "no configured payment provider has a statement"),
        (("--date", "2024-03-01", "--provider", "dev"), "'dev' has no statement"),
        (("--date", "2024-03-01", "--provider", "alipay"), "'alipay' is not configured"),
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livecart.cli",
            "reconcile-payments",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert (process.returncode, out) == (2, b""), (args, err.decode())
        assert problem in err.decode(), (args, err.decode())


async def test_a_wechat_bill_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    fake = FakeWeChatPay()
    async with fake.server():
        settings = make_settings("sqlite+aiosqlite://", "redis://unused", tmp_path, **fake.settings(tmp_path))
        provider = WeChatPay(settings)
        paid = fake.outside_payment(1999)
        assert paid.success_time is not None
        day = paid.success_time.astimezone(BEIJING).date()
        [line] = await provider.statement(day)
        assert (line.payment_id, line.amount, line.provider_ref) == (
            paid.out_trade_no,
            1999,
            paid.transaction_id,
        )
        assert (
            "GET",
            f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL&tar_type=GZIP",
        ) in fake.calls
        fake.corrupt_bills = True
        with pytest.raises(ProviderError, match="does not match its SHA1"):
            await provider.statement(day)
        assert await provider.statement(day - timedelta(days=1)) == []  # NO_STATEMENT_EXIST
        assert fake.bad_signatures == 0
