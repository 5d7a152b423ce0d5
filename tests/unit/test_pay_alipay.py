"""Alipay's pure translations (``shop.payments.alipay``): yuan strings and 分 exactly, Beijing time, trade
states, the subject Alipay accepts, a notification's form body and the notice it makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shop.payments.alipay import (
    beijing_time,
    fen_to_yuan,
    notice_of,
    notification_params,
    parse_beijing_time,
    subject_of,
    trade_state,
    yuan_to_fen,
)
from shop.payments.provider import PaymentNotice, PaymentState, RefundNotice, RefundState


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (1234, "12.34"),
        (100, "1.00"),
        (123456789012345, "1234567890123.45"),
    ],
)
def test_fen_and_yuan_convert_exactly(fen: int, yuan: str) -> None:
    assert fen_to_yuan(fen) == yuan and yuan_to_fen(yuan) == fen


def test_every_cent_up_to_a_thousand_yuan_round_trips() -> None:
    # (0.29 * 100 is 28.999999999999996 as a float: the conversion must not go through one)
    assert all(yuan_to_fen(fen_to_yuan(fen)) == fen for fen in range(100_001))


@pytest.mark.parametrize(("text", "fen"), [("20", 2000), ("0.1", 10), ("0.29", 29), ("19.9", 1990)])
def test_alipay_may_drop_trailing_zeros(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    "text", ["", "12.345", "-1.00", "+1", "1e3", "NaN", " 1.00", "1,00", "01.00", ".5", "1."]
)
def test_anything_but_a_plain_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(text)


def test_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        fen_to_yuan(-1)


def test_beijing_time_is_utc_plus_eight_to_the_second() -> None:
    instant = datetime(2026, 3, 1, 16, 30, 5, tzinfo=UTC).timestamp()
    assert beijing_time(instant + 0.999) == "2026-03-02 00:30:05"  # the fraction dropped, never rounded up
    assert parse_beijing_time("2026-03-02 00:30:05") == int(instant)


@pytest.mark.parametrize("text", ["", "2026-03-02T00:30:05", "2026-03-02 00:30", "2026-13-02 00:30:05"])
def test_a_malformed_beijing_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_beijing_time(text)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("TRADE_SUCCESS", PaymentState.SUCCEEDED),
        ("TRADE_FINISHED", PaymentState.SUCCEEDED),
        ("WAIT_BUYER_PAY", PaymentState.PENDING),
        ("TRADE_CLOSED", PaymentState.CLOSED),
    ],
)
def test_trade_states(status: str, state: PaymentState) -> None:
    assert trade_state(status) == state


def test_an_undocumented_trade_status_is_refused() -> None:
    with pytest.raises(ValueError, match="TRADE_UNKNOWN"):
        trade_state("TRADE_UNKNOWN")


def test_the_subject_loses_what_alipay_forbids_and_fits() -> None:
    assert subject_of("茶 / 饼=1 & 2") == "茶 饼 1 2"
    assert len(subject_of("好" * 300)) == 256
    assert subject_of(" / ") == "LiveCart"


def test_a_form_body_is_decoded_in_its_charset() -> None:
    assert notification_params(b"subject=%E8%8C%B6&charset=utf-8&a=x+y") == {
        "subject": "茶",
        "charset": "utf-8",
        "a": "x y",
    }
    assert notification_params(b"subject=%B2%E8&charset=gbk")["subject"] == "茶"


@pytest.mark.parametrize(
    "body", [b"a=1&a=2", b"subject=%B2%E8&charset=utf-8", "subject=茶".encode(), b"a=1&&b"]
)
def test_a_body_that_is_not_one_form_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        notification_params(body)


PAID = {
    "notify_id": "n1",
    "out_trade_no": "pay_1",
    "trade_no": "2026030222001",
    "trade_status": "TRADE_SUCCESS",
    "total_amount": "12.34",
}


def test_a_payment_notification_is_a_payment_notice() -> None:
    assert notice_of(PAID) == PaymentNotice(
        "pay_1", PaymentState.SUCCEEDED, "n1", 1234, "CNY", "2026030222001"
    )


@pytest.mark.parametrize("status", ["TRADE_SUCCESS", "TRADE_CLOSED"])
@pytest.mark.parametrize("refund_field", ["refund_fee", "gmt_refund"])
def test_a_refund_notification_is_a_refund_notice_whatever_the_trade_status(
    status: str, refund_field: str
) -> None:
    fields = PAID | {"trade_status": status, "out_biz_no": "rf_1", refund_field: "12.34"}
    assert notice_of(fields) == RefundNotice("rf_1", RefundState.SUCCEEDED, event_id="n1")


def test_a_refund_notification_naming_no_refund_is_no_notice() -> None:
    assert notice_of(PAID | {"trade_status": "TRADE_CLOSED", "refund_fee": "12.34"}) is None


@pytest.mark.parametrize(
    "fields",
    [
        {k: v for k, v in PAID.items() if k != "notify_id"},
        {k: v for k, v in PAID.items() if k != "out_trade_no"},
        PAID | {"trade_status": ""},
        PAID | {"total_amount": "12.345"},
    ],
)
def test_a_notification_missing_what_it_must_say_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        notice_of(fields)
