"""WeChat Pay API v3 (``shop.payments.wechatpay``): the provider and the real ``wechatpayv3`` SDK against a
local server that answers in WeChat's documented format (``tests/fake_wechatpay.py``), which checks the
merchant's request signatures and signs its answers and notifications with a platform key it made up —
in both ways a merchant knows that key: the "WeChat Pay public key" and the downloaded platform
certificate.

Each channel reaches WeChat with the order's fields; a correctly signed notification is a notice, and a
tampered, forged, stale or unknown-serial one is refused; a redelivery keeps its event id; query, close,
refunds and refund notifications follow what WeChat says; a WeChat that fails, hangs or is gone is a
``ProviderError`` within the timeout; a broken set-up refuses construction.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from base.settings import Settings
from loadtests.harness import Port
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
)
from shop.payments.wechatpay import WeChatPay
from tests.conftest import make_settings
from tests.fake_wechatpay import FakeWeChatPay, new_rsa_key

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
NOTIFY_URL = "https://shop.example/api/payments/wechat/notify"
RETURN_URL = "https://shop.example/orders/ord_1?paid=1"


def settings_for(fake: FakeWeChatPay, tmp_path: Path, **overrides: Any) -> Settings:
    values = {**fake.settings(tmp_path), "payment_provider_timeout_seconds": TIMEOUT, **overrides}
    return make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/4", tmp_path, **values)


async def provider_for(settings: Settings) -> WeChatPay:
    # (certificate mode downloads at construction, blocking: in a thread, so the fake in this loop answers)
    return await asyncio.to_thread(WeChatPay, settings)


@dataclass
class Wechat:
    fake: FakeWeChatPay
    provider: WeChatPay
    settings: Settings


@pytest.fixture(params=["public_key", "certificate"])
async def wechat(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wechat]:
    fake = FakeWeChatPay(mode=request.param)
    async with fake.server():
        settings = settings_for(fake, tmp_path)
        yield Wechat(fake, await provider_for(settings), settings)


def payment(
    payment_id: str = "pay_01hzwechat000001",
    *,
    channel: Channel = Channel.NATIVE,
    amount: int = 1999,
    openid: str | None = None,
    expires_ms: int | None = None,
) -> PaymentRequest:
    return PaymentRequest(
        payment_id=payment_id,
        amount=amount,
        currency="CNY",
        description="云南高山苹果 5 斤装",
        channel=channel,
        expires_ms=expires_ms if expires_ms is not None else int(time.time() * 1000) + 15 * 60 * 1000,
        notify_url=NOTIFY_URL,
        return_url=RETURN_URL,
        client_ip="203.0.113.7",
        payer_openid=openid,
    )


def refund(
    refund_id: str, amount: int, *, payment_id: str = "pay_01hzwechat000001", ref: str | None
) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment_id,
        provider_ref=ref,
        amount=amount,
        payment_amount=1999,
        currency="CNY",
        reason="尺码不合适",
        notify_url=NOTIFY_URL,
    )


def now() -> int:
    return int(time.time())


# -- create -----------------------------------------------------------------------------------------------


async def test_native_sends_the_order_and_returns_the_code_url(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    expires_ms = int(time.time() * 1000) + 15 * 60 * 1000 + 999
    checkout = await provider.create(payment(expires_ms=expires_ms))
    seen = fake.payments["pay_01hzwechat000001"]
    assert checkout.data == {"code_url": fake.create_answers[-1]["code_url"]}
    assert checkout.data["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert (seen.trade_type, seen.amount, seen.currency) == ("NATIVE", 1999, "CNY")
    assert (seen.description, seen.notify_url) == ("云南高山苹果 5 斤装", NOTIFY_URL)
    assert (seen.request["appid"], seen.request["mchid"]) == (fake.appid, fake.mchid)
    # time_expire: Beijing time, the reservation's end rounded down to the second
    assert seen.request["time_expire"].endswith("+08:00")
    assert seen.time_expire is not None and int(seen.time_expire.timestamp()) == expires_ms // 1000
    assert fake.bad_signatures == 0


async def test_jsapi_returns_parameters_signed_by_the_merchant_key(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    checkout = await provider.create(payment(channel=Channel.JSAPI, openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"))
    seen = fake.payments["pay_01hzwechat000001"]
    assert seen.trade_type == "JSAPI" and seen.request["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    params = checkout.data["jsapi"]
    assert checkout.provider_ref == seen.prepay_id
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert (params["appId"], params["package"], params["signType"]) == (
        fake.appid,
        f"prepay_id={seen.prepay_id}",
        "RSA",
    )
    assert abs(int(params["timeStamp"]) - now()) <= 5 and len(params["nonceStr"]) == 32
    # what WeixinJSBridge checks: RSA-SHA256 of "appId\ntimeStamp\nnonceStr\npackage\n", the merchant key
    message = "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode()
    fake.merchant_key.public_key().verify(
        base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256()
    )


async def test_jsapi_without_an_openid_never_reaches_wechat(wechat: Wechat) -> None:
    with pytest.raises(ProviderError, match="openid"):
        await wechat.provider.create(payment(channel=Channel.JSAPI))
    assert wechat.fake.payments == {}


async def test_h5_sends_the_client_ip_and_returns_the_h5_url_back_to_our_page(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    checkout = await provider.create(payment(channel=Channel.H5))
    seen = fake.payments["pay_01hzwechat000001"]
    assert seen.trade_type == "MWEB"
    assert seen.request["scene_info"] == {"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}}
    h5_url = checkout.data["h5_url"]
    answered = fake.create_answers[-1]["h5_url"]
    assert h5_url.startswith(answered + "&redirect_url=")
    assert parse_qs(urlsplit(h5_url).query)["redirect_url"] == [RETURN_URL]


async def test_a_refused_order_is_a_provider_error_with_wechats_reason(wechat: Wechat) -> None:
    await wechat.provider.create(payment(amount=1999))
    with pytest.raises(ProviderError, match="INVALID_REQUEST"):
        await wechat.provider.create(payment(amount=2999))  # the same out_trade_no, another amount
    assert wechat.fake.payments["pay_01hzwechat000001"].amount == 1999


# -- notifications ----------------------------------------------------------------------------------------


async def test_a_signed_payment_notification_is_a_succeeded_notice(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    headers, body = fake.payment_notification("pay_01hzwechat000001")
    notification = provider.verify(headers, body, now_s=now())
    paid = fake.payments["pay_01hzwechat000001"]
    assert notification.notices == [
        PaymentNotice(
            payment_id="pay_01hzwechat000001",
            state=PaymentState.SUCCEEDED,
            event_id=json.loads(body)["id"],
            amount=1999,
            currency="CNY",
            provider_ref=paid.transaction_id,
        )
    ]
    assert (notification.reply.status, notification.reply.body) == (204, b"")


async def test_headers_in_any_case_verify(wechat: Wechat) -> None:
    await wechat.provider.create(payment())
    headers, body = wechat.fake.payment_notification("pay_01hzwechat000001")
    lower = {k.lower(): v for k, v in headers.items()}
    upper = {k.upper(): v for k, v in headers.items()}
    for given in (lower, upper):
        (notice,) = wechat.provider.verify(given, body, now_s=now()).notices
        assert isinstance(notice, PaymentNotice) and notice.state is PaymentState.SUCCEEDED


async def test_a_wrong_amount_is_reported_as_wechat_says_it(wechat: Wechat) -> None:
    await wechat.provider.create(payment())
    headers, body = wechat.fake.payment_notification("pay_01hzwechat000001", amount=1)
    (notice,) = wechat.provider.verify(headers, body, now_s=now()).notices
    assert isinstance(notice, PaymentNotice) and notice.amount == 1  # (the service compares it)


async def test_a_redelivery_has_the_same_event_id(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    first = fake.payment_notification("pay_01hzwechat000001", timestamp=now() - 100)
    again = fake.payment_notification("pay_01hzwechat000001")  # signed anew, as WeChat redelivers
    assert first[0]["Wechatpay-Signature"] != again[0]["Wechatpay-Signature"]
    ids = {provider.verify(h, b, now_s=now()).notices[0].event_id for h, b in (first, first, again)}
    assert ids == {json.loads(first[1])["id"]}


def _tampered(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return headers, body.replace("支付成功".encode(), "支付失败".encode())


def _forged(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return fake.signed_headers(body, key=new_rsa_key()) | {
        "Wechatpay-Serial": headers["Wechatpay-Serial"]
    }, body


def _wrong_serial(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    other = (
        "PUB_KEY_ID_0114200000000000000000000000000000"
        if fake.mode == "public_key"
        else "5157F09EFDC096DE15EB"
    )
    return fake.signed_headers(body, serial=other), body


def _stale(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return fake.signed_headers(body, timestamp=now() - 301), body


def _future(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return fake.signed_headers(body, timestamp=now() + 301), body


def _unsigned(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body


def _other_apiv3_key(
    fake: FakeWeChatPay, headers: dict[str, str], body: bytes
) -> tuple[dict[str, str], bytes]:
    # Signed by the platform, but its resource sealed with a key that is not our APIv3 key.
    other = FakeWeChatPay(apiv3_key="0" * 32, platform_key=fake.platform_key, merchant_key=fake.merchant_key)
    other.payments = fake.payments
    _, sealed = other.payment_notification("pay_01hzwechat000001")
    return fake.signed_headers(sealed), sealed


def _not_json(fake: FakeWeChatPay, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    garbage = b"<xml><return_code>SUCCESS</return_code></xml>"
    return fake.signed_headers(garbage), garbage


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_tampered, "signature does not verify"),
        (_forged, "signature does not verify"),
        (_wrong_serial, "no WeChat Pay key known here"),
        (_stale, "beyond the 300 s tolerance"),
        (_future, "beyond the 300 s tolerance"),
        (_unsigned, "no Wechatpay-Signature header"),
        (_other_apiv3_key, "does not decrypt"),
        (_not_json, "does not parse"),
    ],
)
async def test_a_notification_that_is_not_wechats_is_rejected(
    wechat: Wechat, change: Any, reason: str
) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    headers, body = fake.payment_notification("pay_01hzwechat000001")
    assert provider.verify(headers, body, now_s=now()).notices  # the genuine one verifies
    downloads = fake.certificate_downloads
    bad_headers, bad_body = change(fake, headers, body)
    with pytest.raises(NotificationRejected, match=reason):
        provider.verify(bad_headers, bad_body, now_s=now())
    assert fake.certificate_downloads == downloads  # verify never goes to the network


async def test_the_tolerance_is_measured_from_now_s(wechat: Wechat) -> None:
    await wechat.provider.create(payment())
    headers, body = wechat.fake.payment_notification("pay_01hzwechat000001", timestamp=1_700_000_000)
    assert wechat.provider.verify(headers, body, now_s=1_700_000_300).notices
    with pytest.raises(NotificationRejected, match="tolerance"):
        wechat.provider.verify(headers, body, now_s=1_700_000_301)


async def test_another_event_type_is_acknowledged_with_no_notice(wechat: Wechat) -> None:
    headers, body = wechat.fake.notification(
        notification_id="EV-2018022511223320873",
        event_type="MCHTRANSFER.BILL.FINISHED",
        summary="商家转账单据终态通知",
        original_type="mch_payment",
        resource={"out_bill_no": "x", "state": "SUCCESS"},
    )
    notification = wechat.provider.verify(headers, body, now_s=now())
    assert notification.notices == [] and notification.reply.status == 204


# -- query and close --------------------------------------------------------------------------------------


async def test_query_before_and_after_the_buyer_pays(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    assert await provider.query("pay_01hzwechat000001") == PaymentNotice(
        payment_id="pay_01hzwechat000001",
        state=PaymentState.PENDING,
        event_id="query:pay_01hzwechat000001:pending",
    )
    paid = fake.pay("pay_01hzwechat000001")
    assert await provider.query("pay_01hzwechat000001") == PaymentNotice(
        payment_id="pay_01hzwechat000001",
        state=PaymentState.SUCCEEDED,
        event_id="query:pay_01hzwechat000001:succeeded",
        amount=1999,
        currency="CNY",
        provider_ref=paid.transaction_id,
    )
    assert fake.calls[-1] == (
        "GET",
        f"/v3/pay/transactions/out-trade-no/pay_01hzwechat000001?mchid={fake.mchid}",
    )


async def test_query_of_an_order_wechat_does_not_have_is_a_provider_error(wechat: Wechat) -> None:
    with pytest.raises(ProviderError, match="ORDER_NOT_EXIST"):
        await wechat.provider.query("pay_01hznosuchorder")


async def test_close_stops_the_payment(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    await provider.close("pay_01hzwechat000001")
    assert fake.payments["pay_01hzwechat000001"].trade_state == "CLOSED"
    assert fake.calls[-1] == ("POST", "/v3/pay/transactions/out-trade-no/pay_01hzwechat000001/close")
    with pytest.raises(ValueError, match="cannot pay"):
        fake.pay("pay_01hzwechat000001")
    notice = await provider.query("pay_01hzwechat000001")
    assert (notice.state, notice.event_id) == (PaymentState.CLOSED, "query:pay_01hzwechat000001:closed")
    await provider.close("pay_01hzwechat000001")  # again: still done
    await provider.close("pay_01hznosuchorder")  # never created: nobody can pay it


async def test_close_after_the_buyer_paid_is_payment_already_paid(wechat: Wechat) -> None:
    await wechat.provider.create(payment())
    wechat.fake.pay("pay_01hzwechat000001")
    with pytest.raises(PaymentAlreadyPaid):
        await wechat.provider.close("pay_01hzwechat000001")
    assert wechat.fake.payments["pay_01hzwechat000001"].trade_state == "SUCCESS"


# -- refunds ----------------------------------------------------------------------------------------------


async def test_partial_then_full_refunds_reach_wechat_and_notifications_complete_them(wechat: Wechat) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    paid = fake.pay("pay_01hzwechat000001")
    first = await provider.refund(refund("ref_01hzpart", 500, ref=paid.transaction_id))
    seen = fake.refunds["ref_01hzpart"]
    assert seen.request["amount"] == {"refund": 500, "total": 1999, "currency": "CNY"}
    assert (seen.request["transaction_id"], seen.request["notify_url"]) == (paid.transaction_id, NOTIFY_URL)
    assert seen.request["reason"] == "尺码不合适"
    assert first == RefundNotice(
        refund_id="ref_01hzpart",
        state=RefundState.PROCESSING,
        event_id="refund:ref_01hzpart:processing",
        amount=500,
        provider_ref=seen.refund_id,
    )
    # the rest, by out_trade_no (the transaction id not known)
    rest = await provider.refund(refund("ref_01hzrest", 1499, ref=None))
    assert fake.refunds["ref_01hzrest"].request["out_trade_no"] == "pay_01hzwechat000001"
    assert rest.amount == 1499 and fake.refunded("pay_01hzwechat000001") == 1999
    with pytest.raises(ProviderError, match="INVALID_REQUEST"):
        await provider.refund(refund("ref_01hztoomuch", 1, ref=paid.transaction_id))
    assert "ref_01hztoomuch" not in fake.refunds
    # a retried refund is the same refund, not a second one
    assert (
        await provider.refund(refund("ref_01hzpart", 500, ref=paid.transaction_id))
    ).provider_ref == seen.refund_id
    assert len(fake.refunds) == 2

    headers, body = fake.refund_notification("ref_01hzpart")
    assert provider.verify(headers, body, now_s=now()).notices == [
        RefundNotice(
            refund_id="ref_01hzpart",
            state=RefundState.SUCCEEDED,
            event_id=json.loads(body)["id"],
            amount=500,
            provider_ref=seen.refund_id,
        )
    ]
    assert await provider.query_refund("ref_01hzpart") == RefundNotice(
        refund_id="ref_01hzpart",
        state=RefundState.SUCCEEDED,
        event_id="query:ref_01hzpart:succeeded",
        amount=500,
        provider_ref=seen.refund_id,
    )
    assert (
        await provider.query("pay_01hzwechat000001")
    ).state is PaymentState.SUCCEEDED  # REFUND: it was paid


@pytest.mark.parametrize("status", ["ABNORMAL", "CLOSED"])
async def test_a_refund_that_fails_is_a_failed_notice_with_the_reason(wechat: Wechat, status: Any) -> None:
    fake, provider = wechat.fake, wechat.provider
    await provider.create(payment())
    paid = fake.pay("pay_01hzwechat000001")
    await provider.refund(refund("ref_01hzfails", 1999, ref=paid.transaction_id))
    headers, body = fake.refund_notification("ref_01hzfails", status=status)
    (notice,) = provider.verify(headers, body, now_s=now()).notices
    assert isinstance(notice, RefundNotice)
    assert (notice.state, notice.event_id) == (RefundState.FAILED, json.loads(body)["id"])
    assert notice.error is not None and status in notice.error
    queried = await provider.query_refund("ref_01hzfails")
    assert (queried.state, queried.event_id) == (RefundState.FAILED, "query:ref_01hzfails:failed")


async def test_a_refund_wechat_finishes_at_once_is_succeeded(wechat: Wechat) -> None:
    wechat.fake.refund_answer_status = "SUCCESS"
    await wechat.provider.create(payment())
    paid = wechat.fake.pay("pay_01hzwechat000001")
    notice = await wechat.provider.refund(refund("ref_01hznow", 1999, ref=paid.transaction_id))
    assert (notice.state, notice.event_id) == (RefundState.SUCCEEDED, "refund:ref_01hznow:succeeded")


# -- failures ---------------------------------------------------------------------------------------------


async def test_a_wechat_error_is_a_provider_error_with_its_code(wechat: Wechat) -> None:
    wechat.fake.fail_with = (500, "SYSTEM_ERROR", "系统错误")
    for call in (
        wechat.provider.create(payment()),
        wechat.provider.query("pay_01hzwechat000001"),
        wechat.provider.close("pay_01hzwechat000001"),
        wechat.provider.query_refund("ref_01hzpart"),
    ):
        with pytest.raises(ProviderError, match="SYSTEM_ERROR: 系统错误"):
            await call


async def test_a_wechat_that_hangs_or_is_gone_is_a_provider_error_within_the_timeout(
    wechat: Wechat, tmp_path: Path
) -> None:
    wechat.fake.delay = 3 * TIMEOUT
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out"):
        await wechat.provider.create(payment())
    assert time.monotonic() - started < TIMEOUT + 0.5
    with Port() as gone:  # bound, never listening
        settings = wechat.settings.model_copy(update={"wechatpay_api_base": gone.url})
        # (certificate mode: the certificates are kept in the directory now, so this downloads nothing)
        provider = await provider_for(settings)
        started = time.monotonic()
        with pytest.raises(ProviderError, match="could not be reached"):
            await provider.query("pay_01hzwechat000001")
        assert time.monotonic() - started < TIMEOUT + 0.5


async def test_an_answer_not_signed_by_the_platform_is_refused(wechat: Wechat) -> None:
    wechat.fake.answer_key = new_rsa_key()
    with pytest.raises(ProviderError, match="failed to verify the signature"):
        await wechat.provider.create(payment())


async def test_a_request_signed_with_another_merchant_key_is_refused_by_wechat(
    wechat: Wechat, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(
        new_rsa_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings = wechat.settings.model_copy(update={"wechatpay_merchant_key_file": stranger})
    provider = await provider_for(settings)
    bad = wechat.fake.bad_signatures
    with pytest.raises(ProviderError, match="SIGN_ERROR"):
        await provider.create(payment())
    assert wechat.fake.bad_signatures == bad + 1 and wechat.fake.payments == {}


# -- set-up -----------------------------------------------------------------------------------------------


async def test_certificate_mode_downloads_the_certificate_once_and_keeps_it(tmp_path: Path) -> None:
    fake = FakeWeChatPay(mode="certificate")
    async with fake.server():
        settings = settings_for(fake, tmp_path)
        await provider_for(settings)
        assert fake.certificate_downloads == 1
        assert settings.wechatpay_platform_cert_dir is not None
        (kept,) = settings.wechatpay_platform_cert_dir.iterdir()
        assert kept.name == f"{fake.platform_serial}.pem"
        provider = await provider_for(settings)  # from the directory
        assert fake.certificate_downloads == 1
        await provider.create(payment())
        assert fake.certificate_downloads == 1


async def test_certificate_mode_with_a_wrong_apiv3_key_refuses_construction(tmp_path: Path) -> None:
    fake = FakeWeChatPay(mode="certificate")
    async with fake.server():
        settings = settings_for(fake, tmp_path, wechatpay_apiv3_key="1" * 32)
        with pytest.raises(ValueError, match="no WeChat Pay platform certificate"):
            await provider_for(settings)


def _garbage_pem(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    return path


def _ec_key(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda tmp: {"wechatpay_merchant_key_file": tmp / "missing.pem"}, "cannot read"),
        (lambda tmp: {"wechatpay_merchant_key_file": _garbage_pem(tmp)}, "not a PEM private key"),
        (lambda tmp: {"wechatpay_merchant_key_file": _ec_key(tmp)}, "RSA private key"),
        (lambda tmp: {"wechatpay_platform_public_key_file": _garbage_pem(tmp)}, "not a PEM public key"),
        (lambda tmp: {"wechatpay_platform_public_key_id": None}, "needs both"),
        (lambda tmp: {"wechatpay_apiv3_key": "short"}, "32-character"),
        (lambda tmp: {"wechatpay_mchid": None}, "LIVECART_WECHATPAY_MCHID"),
        (lambda tmp: {"wechatpay_merchant_serial": ""}, "LIVECART_WECHATPAY_MERCHANT_SERIAL"),
    ],
)
def test_a_broken_set_up_refuses_construction(change: Any, reason: str, tmp_path: Path) -> None:
    fake = FakeWeChatPay()
    fake.api_base = "http://127.0.0.1:9"  # (public key mode: construction makes no request)
    settings = settings_for(fake, tmp_path, **change(tmp_path))
    with pytest.raises(ValueError, match=reason):
        WeChatPay(settings)
