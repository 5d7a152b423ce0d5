"""The Alipay provider (``shop.payments.alipay``) with the real ``python-alipay-sdk`` against a local gateway
that answers in Alipay's format, checks every request's RSA2 signature with the app's public key and signs its
answers and notifications with keys it made up as "Alipay" (``tests/fake_alipay.py``).

A checkout is a signed gateway URL with the amount in yuan, our ids, notify and return URLs and the expiry in
Beijing time; a notification is applied only when its signature, app id and notify time check out, and a
redelivery keeps its event id; a refund notification is never taken for a payment closing; query, close and
refund ask Alipay and read its answers; a failing or hanging gateway is a ``ProviderError`` within the
timeout; a broken set-up refuses to start.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from base.settings import Settings
from shop.payments.alipay import Alipay
from shop.payments.provider import (
    Channel,
    NotificationRejected,
    PaymentAlreadyPaid,
    PaymentNotice,
    PaymentRequest,
    PaymentState,
    ProviderError,
    RefundNotice,
    RefundRequest,
    RefundState,
    Reply,
)
from tests.fake_alipay import BEIJING, FakeAlipay, new_rsa_key, private_pem, public_pem

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
TOLERANCE = 300


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlipay]:
    fake = FakeAlipay()
    async with fake.server():
        yield fake


def settings_for(fake: FakeAlipay, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **fake.settings(tmp_path),
        "payment_provider_timeout_seconds": TIMEOUT,
        "webhook_tolerance_seconds": TOLERANCE,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def alipay(fake: FakeAlipay, tmp_path: Path) -> Alipay:
    return Alipay(settings_for(fake, tmp_path))


def payment(
    payment_id: str = "pay_01HZX3", *, channel: Channel = Channel.WAP, amount: int = 1234
) -> PaymentRequest:
    return PaymentRequest(
        payment_id=payment_id,
        amount=amount,
        currency="CNY",
        description="云南古树普洱 357g / 饼",
        channel=channel,
        expires_ms=int((time.time() + 900) * 1000),
        notify_url="https://shop.example.com/api/payments/alipay/notify",
        return_url="https://shop.example.com/orders/o1",
        client_ip="203.0.113.7",
    )


async def paid(fake: FakeAlipay, alipay: Alipay, request: PaymentRequest) -> None:
    checkout = await alipay.create(request)
    await fake.open(checkout.data["redirect_url"])
    fake.pay(request.payment_id)


def refund(refund_id: str, amount: int, *, payment_id: str = "pay_01HZX3") -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment_id,
        provider_ref=None,
        amount=amount,
        payment_amount=1234,
        currency="CNY",
        reason="买家申请退款",
        notify_url="https://shop.example.com/api/payments/alipay/notify",
    )


def now() -> int:
    return int(time.time())


# -- create ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "method", "product_code"),
    [
        (Channel.WAP, "alipay.trade.wap.pay", "QUICK_WAP_PAY"),
        (Channel.PAGE, "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    ],
)
async def test_a_checkout_is_a_signed_gateway_url_with_the_trade_fields(
    fake: FakeAlipay, alipay: Alipay, channel: Channel, method: str, product_code: str
) -> None:
    request = payment(channel=channel)
    checkout = await alipay.create(request)
    url = checkout.data["redirect_url"]
    assert set(checkout.data) == {"redirect_url"} and url.startswith(fake.gateway + "?")

    trade = await fake.open(url)
    assert fake.bad_signatures == 0 and fake.refused == []
    assert trade.method == method and trade.status == "WAIT_BUYER_PAY"
    assert trade.out_trade_no == "pay_01HZX3" and trade.total_amount == "12.34"
    assert trade.biz_content["product_code"] == product_code
    assert trade.biz_content["subject"] == "云南古树普洱 357g 饼"  # Alipay forbids "/" in a subject
    assert trade.notify_url == request.notify_url and trade.return_url == request.return_url
    # The expiry in Beijing time, to the second (never after the reservation's end).
    expires = trade.expires_at()
    assert expires is not None and 0 <= request.expires_ms / 1000 - expires < 1
    (call,) = fake.calls
    assert call.params["sign_type"] == "RSA2" and call.params["app_id"] == fake.app_id
    # The request's timestamp is Beijing time (the fake refuses one more than 30 minutes off).
    stamped = call.params["timestamp"]
    assert abs(time.time() - _beijing_epoch(stamped)) < 60


def _beijing_epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()


async def test_a_checkout_whose_amount_is_changed_is_refused_by_the_cashier(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    url = (await alipay.create(payment())).data["redirect_url"]
    base, _, query = url.partition("?")
    params = dict(parse_qsl(query))
    biz = json.loads(params["biz_content"])
    params["biz_content"] = json.dumps(biz | {"total_amount": "0.01"}, separators=(",", ":"))
    with pytest.raises(RuntimeError, match=r"isv\.invalid-signature"):
        await fake.open(f"{base}?{urlencode(params)}")
    assert fake.bad_signatures == 1 and fake.trades == {}


async def test_a_currency_other_than_cny_is_refused(alipay: Alipay) -> None:
    with pytest.raises(ProviderError, match="CNY"):
        await alipay.create(dataclasses.replace(payment(), currency="USD"))


# -- notifications -------------------------------------------------------------------------------------


async def test_a_signed_payment_notification_is_a_succeeded_notice(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3")
    notification = alipay.verify(headers, body, now_s=now())
    assert notification.reply == Reply(status=200, body=b"success", media_type="text/plain")
    (notice,) = notification.notices
    event_id = dict(parse_qsl(body.decode()))["notify_id"]
    trade = fake.trade("pay_01HZX3")
    assert notice == PaymentNotice(
        payment_id="pay_01HZX3",
        state=PaymentState.SUCCEEDED,
        event_id=event_id,
        amount=1234,
        currency="CNY",
        provider_ref=trade.trade_no,
    )


@pytest.mark.parametrize(
    ("trade_status", "state"),
    [
        ("TRADE_FINISHED", PaymentState.SUCCEEDED),
        ("WAIT_BUYER_PAY", PaymentState.PENDING),
        ("TRADE_CLOSED", PaymentState.CLOSED),
    ],
)
async def test_each_trade_status_maps_to_its_state(
    fake: FakeAlipay, alipay: Alipay, trade_status: str, state: PaymentState
) -> None:
    await fake.open((await alipay.create(payment())).data["redirect_url"])
    headers, body = fake.payment_notification("pay_01HZX3", state=trade_status)
    (notice,) = alipay.verify(headers, body, now_s=now()).notices
    assert isinstance(notice, PaymentNotice) and notice.state == state


async def test_the_amount_is_reported_as_alipay_says_for_the_service_to_check(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3", amount=1)
    (notice,) = alipay.verify(headers, body, now_s=now()).notices
    assert isinstance(notice, PaymentNotice) and notice.amount == 1


async def test_a_redelivery_has_the_same_event_id_and_a_new_notify_time(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    await paid(fake, alipay, payment())
    sent = now()
    first_headers, first = fake.payment_notification("pay_01HZX3", timestamp=sent - 240)
    again_headers, again = fake.payment_notification("pay_01HZX3", timestamp=sent)  # Alipay's retry
    assert dict(parse_qsl(first.decode()))["notify_time"] != dict(parse_qsl(again.decode()))["notify_time"]
    (notice,) = alipay.verify(first_headers, first, now_s=sent).notices
    (redelivered,) = alipay.verify(again_headers, again, now_s=sent).notices
    assert notice == redelivered and notice.event_id == dict(parse_qsl(again.decode()))["notify_id"]


async def test_a_tampered_body_is_rejected(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3", state="WAIT_BUYER_PAY")
    forged = body.replace(b"trade_status=WAIT_BUYER_PAY", b"trade_status=TRADE_SUCCESS")
    assert forged != body
    with pytest.raises(NotificationRejected, match="does not verify"):
        alipay.verify(headers, forged, now_s=now())


async def test_a_notification_signed_by_another_key_is_rejected(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3", signed_by=new_rsa_key())
    with pytest.raises(NotificationRejected, match="does not verify"):
        alipay.verify(headers, body, now_s=now())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sign": None}, "no sign"),
        ({"sign": "not base64!"}, "does not verify"),
        ({"sign_type": "RSA"}, "RSA2"),
        ({"sign_type": None}, "RSA2"),
    ],
)
async def test_a_missing_or_unusable_sign_is_rejected(
    fake: FakeAlipay, alipay: Alipay, change: dict[str, str | None], reason: str
) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3")
    params = dict(parse_qsl(body.decode()))
    for name, value in change.items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    with pytest.raises(NotificationRejected, match=reason):
        alipay.verify(headers, urlencode(params).encode(), now_s=now())


async def test_another_apps_notification_is_rejected(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3", app_id="2021000000000001")
    with pytest.raises(NotificationRejected, match="app_id"):
        alipay.verify(headers, body, now_s=now())


@pytest.mark.parametrize("offset", [-TOLERANCE - 5, TOLERANCE + 5])
async def test_a_stale_or_future_notify_time_is_rejected(
    fake: FakeAlipay, alipay: Alipay, offset: int
) -> None:
    await paid(fake, alipay, payment())
    sent = now()
    headers, body = fake.payment_notification("pay_01HZX3", timestamp=sent)
    assert alipay.verify(headers, body, now_s=sent + TOLERANCE).notices  # at the edge: accepted
    with pytest.raises(NotificationRejected, match="notify_time"):
        alipay.verify(headers, body, now_s=sent - offset)


@pytest.mark.parametrize(
    "body",
    [b"", b"\xff\xfe", b"<xml><a>1</a></xml>", b"trade_status=TRADE_SUCCESS&sign=a&sign=b"],
)
async def test_a_body_that_is_no_notification_is_rejected(alipay: Alipay, body: bytes) -> None:
    with pytest.raises(NotificationRejected):
        alipay.verify({}, body, now_s=now())


async def test_a_notification_alipay_signed_but_that_names_no_payment_is_rejected(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    await paid(fake, alipay, payment())
    headers, body = fake.payment_notification("pay_01HZX3", state="TRADE_PENDING_SOMETHING")
    with pytest.raises(NotificationRejected, match="trade_status"):
        alipay.verify(headers, body, now_s=now())


# -- query and close ------------------------------------------------------------------------------------


async def test_query_follows_the_trade(fake: FakeAlipay, alipay: Alipay) -> None:
    checkout = await alipay.create(payment())
    unopened = await alipay.query("pay_01HZX3")  # Alipay knows no trade before the buyer opens the checkout
    assert (unopened.state, unopened.event_id) == (PaymentState.PENDING, "query:pay_01HZX3:pending")
    trade = await fake.open(checkout.data["redirect_url"])
    waiting = await alipay.query("pay_01HZX3")
    assert (waiting.state, waiting.provider_ref, waiting.amount) == (
        PaymentState.PENDING,
        trade.trade_no,
        1234,
    )
    fake.pay("pay_01HZX3")
    assert await alipay.query("pay_01HZX3") == PaymentNotice(
        payment_id="pay_01HZX3",
        state=PaymentState.SUCCEEDED,
        event_id="query:pay_01HZX3:succeeded",
        amount=1234,
        currency="CNY",
        provider_ref=trade.trade_no,
    )
    assert [c.method for c in fake.calls].count("alipay.trade.query") == 3


async def test_an_expired_trade_is_closed_and_cannot_be_paid(fake: FakeAlipay, alipay: Alipay) -> None:
    request = payment()
    await fake.open((await alipay.create(request)).data["redirect_url"])
    fake.clock = lambda: request.expires_ms / 1000 + 1
    assert (await alipay.query("pay_01HZX3")).state == PaymentState.CLOSED
    with pytest.raises(ValueError, match="TRADE_CLOSED"):
        fake.pay("pay_01HZX3")


async def test_close_closes_an_open_trade_and_needs_none(fake: FakeAlipay, alipay: Alipay) -> None:
    await alipay.close("pay_never_opened")  # ACQ.TRADE_NOT_EXIST: nothing to close
    await fake.open((await alipay.create(payment())).data["redirect_url"])
    await alipay.close("pay_01HZX3")
    assert fake.trade("pay_01HZX3").status == "TRADE_CLOSED"
    assert (await alipay.query("pay_01HZX3")).state == PaymentState.CLOSED
    with pytest.raises(ValueError):
        fake.pay("pay_01HZX3")
    assert [c.biz_content for c in fake.calls if c.method == "alipay.trade.close"] == [
        {"out_trade_no": "pay_never_opened"},
        {"out_trade_no": "pay_01HZX3"},
    ]


async def test_close_after_the_buyer_paid_is_already_paid(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    with pytest.raises(PaymentAlreadyPaid):
        await alipay.close("pay_01HZX3")
    assert fake.trade("pay_01HZX3").status == "TRADE_SUCCESS"


# -- refunds --------------------------------------------------------------------------------------------


async def test_partial_then_full_refund(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    first = await alipay.refund(refund("rf_1", 500))
    assert first == RefundNotice("rf_1", RefundState.SUCCEEDED, event_id="refund:rf_1:succeeded")
    trade = fake.trade("pay_01HZX3")
    assert trade.status == "TRADE_SUCCESS" and trade.refunds["rf_1"].refund_amount == "5.00"
    second = await alipay.refund(refund("rf_2", 734))
    assert second.state == RefundState.SUCCEEDED
    assert trade.refunds["rf_2"].refund_amount == "7.34" and trade.status == "TRADE_CLOSED"
    (sent,) = [c.biz_content for c in fake.calls if c.biz_content.get("out_request_no") == "rf_2"]
    assert sent == {
        "out_trade_no": "pay_01HZX3",
        "refund_amount": "7.34",
        "out_request_no": "rf_2",
        "refund_reason": "买家申请退款",
    }
    assert await alipay.query_refund("rf_1") == RefundNotice(
        "rf_1", RefundState.SUCCEEDED, event_id="refund:rf_1:succeeded", amount=500
    )
    assert (await alipay.query_refund("rf_2")).amount == 734


async def test_refund_notifications_are_refund_notices_never_a_payment_closing(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    await paid(fake, alipay, payment())
    await alipay.refund(refund("rf_1", 500))
    headers, body = fake.refund_notification("rf_1")
    assert dict(parse_qsl(body.decode()))["trade_status"] == "TRADE_SUCCESS"
    (partial,) = alipay.verify(headers, body, now_s=now()).notices
    assert isinstance(partial, RefundNotice)
    assert (partial.refund_id, partial.state) == ("rf_1", RefundState.SUCCEEDED)
    await alipay.refund(refund("rf_2", 734))
    headers, body = fake.refund_notification("rf_2")
    assert dict(parse_qsl(body.decode()))["trade_status"] == "TRADE_CLOSED"
    notification = alipay.verify(headers, body, now_s=now())
    assert notification.reply.body == b"success"
    (full,) = notification.notices
    assert isinstance(full, RefundNotice) and full.refund_id == "rf_2" and full.event_id != partial.event_id


async def test_a_refund_asked_again_moves_no_money_and_is_confirmed(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    await alipay.refund(refund("rf_1", 500))
    again = await alipay.refund(refund("rf_1", 500))  # fund_change N: the refund is asked for
    assert again == RefundNotice("rf_1", RefundState.SUCCEEDED, event_id="refund:rf_1:succeeded", amount=500)
    assert fake.trade("pay_01HZX3").refunded == 500
    assert [c.method for c in fake.calls][-2:] == ["alipay.trade.refund", "alipay.trade.fastpay.refund.query"]


async def test_a_refund_past_what_was_paid_fails_with_alipays_words(fake: FakeAlipay, alipay: Alipay) -> None:
    await paid(fake, alipay, payment())
    notice = await alipay.refund(refund("rf_1", 1235))
    assert notice.state == RefundState.FAILED and notice.error is not None
    assert "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" in notice.error
    assert fake.trade("pay_01HZX3").refunds == {}


async def test_a_refund_alipay_never_made_is_failed_when_queried(
    fake: FakeAlipay, alipay: Alipay, tmp_path: Path
) -> None:
    await paid(fake, alipay, payment())
    notice = await alipay.query_refund("rf_lost", payment_id="pay_01HZX3")
    assert notice.state == RefundState.FAILED and notice.event_id == "refund:rf_lost:failed"
    await alipay.refund(refund("rf_1", 100))
    restarted = Alipay(settings_for(fake, tmp_path))  # (knows no refund asked before)
    with pytest.raises(ProviderError, match="not known"):
        await restarted.query_refund("rf_1")
    assert (await restarted.query_refund("rf_1", payment_id="pay_01HZX3")).amount == 100


# -- failures -------------------------------------------------------------------------------------------


async def test_a_gateway_answering_500_is_a_provider_error(fake: FakeAlipay, alipay: Alipay) -> None:
    fake.fail_with_status = 500
    with pytest.raises(ProviderError, match="HTTP 500"):
        await alipay.query("pay_01HZX3")
    with pytest.raises(ProviderError):
        await alipay.refund(refund("rf_1", 100))


async def test_a_hanging_gateway_is_a_provider_error_within_the_timeout(
    fake: FakeAlipay, alipay: Alipay
) -> None:
    fake.delay = TIMEOUT * 3
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        await alipay.close("pay_01HZX3")
    assert time.monotonic() - started < TIMEOUT + 0.5


async def test_an_answer_alipay_did_not_sign_is_a_provider_error(fake: FakeAlipay, alipay: Alipay) -> None:
    fake.sign_answers_with = new_rsa_key()
    with pytest.raises(ProviderError, match="sign does not verify"):
        await alipay.query("pay_01HZX3")


async def test_requests_signed_with_a_key_alipay_does_not_know_are_refused(
    fake: FakeAlipay, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    assert settings.alipay_private_key_file is not None
    settings.alipay_private_key_file.write_bytes(private_pem(new_rsa_key()))
    with pytest.raises(ProviderError, match=r"isv\.invalid-signature") as refused:
        await Alipay(settings).query("pay_01HZX3")
    assert "PRIVATE KEY" not in str(refused.value) and fake.bad_signatures == 1


# -- set-up ---------------------------------------------------------------------------------------------


def _broken(fake: FakeAlipay, tmp_path: Path, what: str) -> Settings:
    settings = settings_for(fake, tmp_path)
    private_file, public_file = settings.alipay_private_key_file, settings.alipay_public_key_file
    assert private_file is not None and public_file is not None
    if what == "missing private key file":
        private_file.unlink()
    elif what == "garbage private key":
        private_file.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    elif what == "public key as the private key":
        private_file.write_bytes(public_pem(fake.app_key))
    elif what == "private key as Alipay's public key":
        public_file.write_bytes(private_pem(fake.platform_key))
    elif what == "not base64":
        public_file.write_text("this is not a key")
    elif what == "no app id":
        return settings.model_copy(update={"alipay_app_id": None})
    elif what == "gateway with a query":
        return settings.model_copy(update={"alipay_api_base": fake.gateway + "?charset=utf-8"})
    return settings


@pytest.mark.parametrize(
    "what",
    [
        "missing private key file",
        "garbage private key",
        "public key as the private key",
        "private key as Alipay's public key",
        "not base64",
        "no app id",
        "gateway with a query",
    ],
)
def test_a_broken_set_up_refuses_to_start(fake: FakeAlipay, tmp_path: Path, what: str) -> None:
    with pytest.raises(ValueError, match="LIVECART_ALIPAY_") as refused:
        Alipay(_broken(fake, tmp_path, what))
    assert "BEGIN" not in str(refused.value)


async def test_keys_as_bare_base64_from_alipays_console_are_taken(fake: FakeAlipay, tmp_path: Path) -> None:
    settings = settings_for(fake, tmp_path)
    assert settings.alipay_public_key_file is not None
    pem = public_pem(fake.platform_key).decode()
    bare = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert base64.b64decode(bare)
    settings.alipay_public_key_file.write_text(bare + "\n")
    alipay = Alipay(settings)
    await paid(fake, alipay, payment())
    assert (await alipay.query("pay_01HZX3")).state == PaymentState.SUCCEEDED  # answers verified with it


def test_the_provider_says_who_it_is(alipay: Alipay) -> None:
    assert alipay.name == "alipay" and alipay.channels == (Channel.WAP, Channel.PAGE)
