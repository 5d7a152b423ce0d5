"""The pure parts of the WeChat Pay provider (``shop.payments.wechatpay``): how an expiry, a description and
a return page are written for WeChat, and how WeChat's states read as ours."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from shop.payments.provider import PaymentState, RefundState
from shop.payments.wechatpay import (
    description,
    h5_url_with_return,
    jsapi_message,
    payment_state,
    refund_state,
    rejection_reply,
    time_expire,
)


def test_time_expire_is_beijing_time_rounded_down_to_the_second() -> None:
    # 2023-11-14T22:13:20Z is 2023-11-15 06:13:20 in Beijing
    assert time_expire(1_700_000_000_999) == "2023-11-15T06:13:20+08:00"
    assert datetime.fromisoformat(time_expire(1_700_000_000_999)).timestamp() == 1_700_000_000


def test_description_is_at_most_127_characters_and_never_empty() -> None:
    assert description("  苹果  ", "pay_1") == "苹果"
    assert description("果" * 200, "pay_1") == "果" * 127
    assert description("   ", "pay_1") == "pay_1"


def test_the_return_page_rides_on_the_h5_url_encoded() -> None:
    h5 = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1&package=2"
    assert h5_url_with_return(h5, "https://s.example/o?id=1&x=2") == (
        h5 + "&redirect_url=https%3A%2F%2Fs.example%2Fo%3Fid%3D1%26x%3D2"
    )
    assert h5_url_with_return("https://h5.example/pay", "https://s.example/") == (
        "https://h5.example/pay?redirect_url=https%3A%2F%2Fs.example%2F"
    )
    assert h5_url_with_return(h5, "") == h5


def test_jsapi_signs_its_four_fields_in_order() -> None:
    assert jsapi_message("wx1", "1700000000", "n", "prepay_id=p") == ["wx1", "1700000000", "n", "prepay_id=p"]


@pytest.mark.parametrize(
    ("trade_state", "state"),
    [
        ("SUCCESS", PaymentState.SUCCEEDED),
        ("REFUND", PaymentState.SUCCEEDED),
        ("NOTPAY", PaymentState.PENDING),
        ("USERPAYING", PaymentState.PENDING),
        ("CLOSED", PaymentState.CLOSED),
        ("REVOKED", PaymentState.CLOSED),
        ("PAYERROR", PaymentState.FAILED),
        ("ACCEPT", None),
        ("success", None),
        (None, None),
        (1, None),
    ],
)
def test_trade_states(trade_state: object, state: PaymentState | None) -> None:
    assert payment_state(trade_state) is state


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("SUCCESS", RefundState.SUCCEEDED),
        ("PROCESSING", RefundState.PROCESSING),
        ("CLOSED", RefundState.FAILED),
        ("ABNORMAL", RefundState.FAILED),
        ("REFUNDING", None),
        (None, None),
    ],
)
def test_refund_states(status: object, state: RefundState | None) -> None:
    assert refund_state(status) is state


def test_a_rejection_is_answered_as_wechat_documents() -> None:
    reply = rejection_reply("签名错误")
    assert reply.status == 401 and reply.media_type == "application/json"
    assert json.loads(reply.body) == {"code": "FAIL", "message": "签名错误"}
