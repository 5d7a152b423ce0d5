"""The pure side of payment reconciliation: ``compare`` and ``settle_edges`` (``shop.payments.statements``),
how a day is cut in a provider's time zone, and how each provider's statement reads as lines — WeChat Pay's
trade bill (``trade_bill_lines``, ``fen``) and Stripe's balance transactions (``balance_line``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shop.payments.reconcile_payments import day_window
from shop.payments.statements import (
    Boundary,
    StatementLine,
    Totals,
    compare,
    near_edge,
    settle_edges,
)
from shop.payments.stripe_pay import balance_line
from shop.payments.wechatpay import fen, trade_bill_lines

DAY = (1_700_000_000_000, 1_700_000_000_000 + 86_400_000)
HOUR = 3_600_000


def payment(
    payment_id: str, amount: int, *, at_ms: int = DAY[0] + HOUR, status: str = "succeeded"
) -> StatementLine:
    return StatementLine("payment", payment_id, None, amount, f"ref-{payment_id}", at_ms, status)


def refund(
    refund_id: str, payment_id: str, amount: int, *, at_ms: int = DAY[0] + HOUR, status: str = "succeeded"
) -> StatementLine:
    return StatementLine("refund", payment_id, refund_id, amount, f"ref-{refund_id}", at_ms, status)


ids = st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=8)
lines = st.lists(
    st.one_of(
        st.builds(payment, ids, st.integers(1, 10**9)),
        st.builds(
            refund, ids, ids, st.integers(1, 10**9), status=st.sampled_from(["succeeded", "processing"])
        ),
    ),
    max_size=20,
    unique_by=lambda line: line.key,
)


# -- compare ----------------------------------------------------------------------------------------------


@given(lines)
def test_a_statement_compared_with_itself_differs_in_nothing(statement: list[StatementLine]) -> None:
    assert compare(statement, statement) == []
    assert compare(statement, list(reversed(statement))) == []


@given(lines.filter(bool), st.data())
def test_a_line_the_provider_lacks_is_exactly_that_difference(
    statement: list[StatementLine], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(statement))
    [difference] = compare(statement, [line for line in statement if line is not gone])
    assert difference.what == "missing_at_provider"
    assert (difference.ours, difference.theirs) == (gone, None)
    assert (difference.kind, difference.payment_id, difference.refund_id) == (
        gone.kind,
        gone.payment_id,
        gone.refund_id,
    )


@given(lines.filter(bool), st.data())
def test_a_line_our_ledger_lacks_is_exactly_that_difference(
    statement: list[StatementLine], data: st.DataObject
) -> None:
    extra = data.draw(st.sampled_from(statement))
    [difference] = compare([line for line in statement if line is not extra], statement)
    assert difference.what == "missing_in_ledger"
    assert (difference.ours, difference.theirs) == (None, extra)


@given(lines.filter(bool), st.data(), st.integers(-(10**6), 10**6).filter(bool))
def test_an_amount_changed_by_any_amount_is_exactly_that_difference(
    statement: list[StatementLine], data: st.DataObject, change: int
) -> None:
    changed = data.draw(st.sampled_from(statement))
    theirs = [replace(line, amount=line.amount + change) if line is changed else line for line in statement]
    [difference] = compare(statement, theirs)
    assert difference.what == "amount_differs"
    assert difference.ours == changed
    assert difference.theirs is not None and difference.theirs.amount - changed.amount == change
    assert f"{change:+d}" in difference.detail


def test_one_minor_unit_is_a_difference() -> None:
    [difference] = compare([payment("p1", 1234)], [payment("p1", 1235)])
    assert difference.what == "amount_differs"


def test_payments_match_by_payment_id_and_refunds_by_refund_id() -> None:
    # A refund and a payment with the same id are different lines; a refund is matched by its own id.
    ours = [payment("x1", 500), refund("x1", "p9", 100)]
    theirs = [refund("x1", "another-payment", 100), payment("x1", 500)]
    assert compare(ours, theirs) == []
    differences = compare([refund("r1", "p1", 100)], [refund("r2", "p1", 100)])
    assert [(d.what, d.refund_id) for d in differences] == [
        ("missing_at_provider", "r1"),
        ("missing_in_ledger", "r2"),
    ]


def test_money_taken_on_one_side_only_is_a_status_difference() -> None:
    [difference] = compare([payment("p1", 900, status="pending")], [payment("p1", 900)])
    assert difference.what == "status_differs"
    assert "pending" in difference.detail
    [difference] = compare([refund("r1", "p1", 100)], [refund("r1", "p1", 100, status="failed")])
    assert difference.what == "status_differs"
    # On its way on one side, arrived on the other: the same money, not a difference.
    assert compare([refund("r1", "p1", 100, status="processing")], [refund("r1", "p1", 100)]) == []


def test_lines_neither_side_took_are_not_differences() -> None:
    assert compare([payment("p1", 900, status="closed")], []) == []
    assert compare([], [refund("r1", "p1", 100, status="failed")]) == []


def test_a_line_listed_twice_by_the_provider_shows_as_twice_the_amount() -> None:
    [difference] = compare([payment("p1", 700)], [payment("p1", 700), payment("p1", 700)])
    assert difference.what == "amount_differs"
    assert difference.theirs is not None and difference.theirs.amount == 1400


def test_totals_count_and_sum_what_was_taken() -> None:
    totals = Totals.of(
        [
            payment("p1", 1000),
            payment("p2", 1, status="pending"),
            refund("r1", "p1", 300),
            refund("r2", "p1", 5),
        ]
    )
    assert totals == Totals(payments=1, payment_amount=1000, refunds=2, refund_amount=305)
    assert totals.as_json()["net_amount"] == 695


# -- the edges of the day ---------------------------------------------------------------------------------


def test_near_edge_is_outside_the_day_and_within_the_boundary() -> None:
    start, end = DAY
    assert near_edge(start - 1, day=DAY, boundary_ms=HOUR)
    assert near_edge(end, day=DAY, boundary_ms=HOUR)
    assert not near_edge(start, day=DAY, boundary_ms=HOUR)  # inside the day
    assert not near_edge(end + HOUR, day=DAY, boundary_ms=HOUR)
    assert not near_edge(start - HOUR - 1, day=DAY, boundary_ms=HOUR)


def test_a_payment_the_other_side_has_just_past_midnight_is_a_boundary_line_not_a_difference() -> None:
    start, end = DAY
    theirs = payment("p1", 500, at_ms=end - 1_000)  # the buyer paid at 23:59:59
    ours_next_day = payment("p1", 500, at_ms=end + 2_000)  # we heard at 00:00:01
    differences = compare([], [theirs])
    left, boundary = settle_edges(
        differences, ours_elsewhere=[ours_next_day], theirs_elsewhere=[], day=DAY, boundary_ms=HOUR
    )
    assert left == [] and boundary == [Boundary(ours_next_day, theirs)]
    # and the other way round: ours on this day, theirs on the previous one
    ours = payment("p2", 800, at_ms=start + 5_000)
    theirs_before = payment("p2", 800, at_ms=start - 5_000)
    left, boundary = settle_edges(
        compare([ours], []), ours_elsewhere=[], theirs_elsewhere=[theirs_before], day=DAY, boundary_ms=HOUR
    )
    assert left == [] and boundary == [Boundary(ours, theirs_before)]


def test_found_on_another_day_but_otherwise_different_is_that_difference() -> None:
    start, end = DAY
    theirs = payment("p1", 500, at_ms=end - 1_000)
    # our ledger has it for another amount just after midnight
    left, boundary = settle_edges(
        compare([], [theirs]),
        ours_elsewhere=[payment("p1", 400, at_ms=end + 1_000)],
        theirs_elsewhere=[],
        day=DAY,
        boundary_ms=HOUR,
    )
    assert [d.what for d in left] == ["amount_differs"] and boundary == []
    # our ledger still holds it pending (the provider took the money; we never heard)
    left, boundary = settle_edges(
        compare([], [theirs]),
        ours_elsewhere=[payment("p1", 500, at_ms=start - 10 * HOUR, status="pending")],
        theirs_elsewhere=[],
        day=DAY,
        boundary_ms=HOUR,
    )
    assert [d.what for d in left] == ["status_differs"] and boundary == []
    # our ledger has it, days away: still missing from our ledger's day, and said where it is
    far = payment("p1", 500, at_ms=end + 5 * 86_400_000)
    left, boundary = settle_edges(
        compare([], [theirs]), ours_elsewhere=[far], theirs_elsewhere=[], day=DAY, boundary_ms=HOUR
    )
    assert [d.what for d in left] == ["missing_in_ledger"] and str(far.at_ms) in left[0].detail
    assert boundary == []


def test_what_nobody_has_elsewhere_stays_a_difference() -> None:
    differences = compare([payment("p1", 100)], [payment("p2", 100), payment("p3", 1), payment("p3", 1)])
    left, boundary = settle_edges(
        differences, ours_elsewhere=[], theirs_elsewhere=[payment("p9", 100)], day=DAY, boundary_ms=HOUR
    )
    assert left == differences and boundary == []


def test_a_day_is_cut_at_midnight_in_the_providers_time_zone() -> None:
    beijing = timezone(timedelta(hours=8))
    start, end = day_window(date(2024, 3, 1), beijing)
    assert start == 1_709_222_400_000  # 2024-02-29T16:00:00Z
    assert end - start == 86_400_000
    assert day_window(date(2024, 3, 1), UTC) == (start + 8 * HOUR, end + 8 * HOUR)


# -- WeChat Pay's trade bill ------------------------------------------------------------------------------

HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
PAID = (
    "`2024-03-01 00:00:05,`wx2421b1c4370ec43b,`1900000100,`0,`,`4200000001202403010000000001,`pay_a1b2c3,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`12.34,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`苹果,`,`0.07,`0.60%,`12.34,`0.00,`"
)
BIG = (
    "`2024-03-01 23:59:59,`wx2421b1c4370ec43b,`1900000100,`0,`,`4200000001202403010000000002,`pay_big,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`OTHERS,`CNY,`1234567.89,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`电视,`,`7407.41,`0.60%,`1234567.90,`0.00,`"
)
REFUNDED = (
    "`2024-03-01 10:00:00,`wx2421b1c4370ec43b,`1900000100,`0,`,`4200000001202403010000000001,`pay_a1b2c3,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000000000000000000000001,"
    "`rfd_1,`2.34,`0.00,`ORIGINAL,`SUCCESS,`苹果,`,`-0.01,`0.60%,`12.34,`2.34,`"
)
REVOKED = (
    "`2024-03-01 11:00:00,`wx2421b1c4370ec43b,`1900000100,`0,`,`4200000001202403010000000003,`pay_gone,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`MICROPAY,`REVOKED,`OTHERS,`CNY,`0.00,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`梨,`,`0.00,`0.60%,`3.00,`0.00,`"
)
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def bill(*rows: str, count: int | None = None) -> str:
    stated = len(rows) if count is None else count
    return "\r\n".join([HEADER, *rows, SUMMARY, f"`{stated},`0.00,`0.00,`0.00,`0.00,`0.00,`0.00"]) + "\r\n"


def test_a_trade_bill_reads_as_payments_and_refunds_in_exact_fen() -> None:
    lines = trade_bill_lines("\ufeff" + bill(PAID, REFUNDED, REVOKED, BIG))
    assert lines == [
        StatementLine("payment", "pay_a1b2c3", None, 1234, "4200000001202403010000000001", 1_709_222_405_000),
        StatementLine(
            "refund",
            "pay_a1b2c3",
            "rfd_1",
            234,
            "50300000000000000000000000001",
            1_709_258_400_000,
            "succeeded",
        ),
        # 订单金额 (what the buyer was asked), not 应结订单金额
        StatementLine(
            "payment", "pay_big", None, 123456790, "4200000001202403010000000002", 1_709_308_799_000
        ),
    ]


def test_a_refund_still_processing_or_closed_reads_so() -> None:
    processing = REFUNDED.replace("`ORIGINAL,`SUCCESS", "`ORIGINAL,`PROCESSING")
    closed = REFUNDED.replace("`ORIGINAL,`SUCCESS", "`ORIGINAL,`REFUNDCLOSE")
    assert [line.status for line in trade_bill_lines(bill(processing, closed))] == ["processing", "failed"]


def test_an_older_bill_without_order_amount_reads_the_settlement_amount() -> None:
    header = HEADER.removesuffix(",订单金额,申请退款金额,费率备注")
    row = PAID.removesuffix(",`12.34,`0.00,`")
    text = "\r\n".join([header, row, SUMMARY, "`1,`12.34,`0.00,`0.00,`0.07,`12.34,`0.00"])
    [line] = trade_bill_lines(text)
    assert line.amount == 1234


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (bill(PAID).replace("商户订单号", "订单号"), "no column 商户订单号"),
        (bill(PAID.replace("`NATIVE", "NATIVE")), "starting with `"),
        (bill(PAID + ",`extra"), "27 fields"),
        (bill(PAID.replace("`12.34,`0.00,`", "`12.345,`0.00,`")), "at most two decimals"),
        (bill(PAID.replace("`SUCCESS", "`PAID")), "unknown 交易状态"),
        (bill(PAID.replace("2024-03-01 00:00:05", "2024/03/01 00:00")), "not a trade time"),
        (bill(PAID, count=2), "counts 2 trades, its rows 1"),
        ("\r\n".join([HEADER, PAID]), "no summary"),
    ],
)
def test_a_bill_not_in_wechats_format_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        trade_bill_lines(text)


def test_yuan_read_exactly_as_fen() -> None:
    assert fen("0.01") == 1
    assert fen("0.1") == 10
    assert fen("19.99") == 1999  # binary floating point would make 1998.9999...
    assert fen("1234567.89") == 123456789
    assert fen("-0.01") == -1
    for bad in ("0.001", "abc", "NaN", "Infinity", ""):
        with pytest.raises(ValueError):
            fen(bad)


# -- Stripe's balance transactions ------------------------------------------------------------------------


def txn(kind: str, source: object, *, amount: int = 0) -> dict[str, object]:
    return {
        "id": "txn_1",
        "object": "balance_transaction",
        "type": kind,
        "amount": amount,
        "created": 1_709_251_200,
        "source": source,
    }


INTENT = {"id": "pi_1", "object": "payment_intent", "metadata": {"payment_id": "pay_1"}}


def test_a_charge_is_a_payment_of_the_payment_id_its_payment_intent_names() -> None:
    charge = {"id": "ch_1", "object": "charge", "amount": 1999, "payment_intent": INTENT, "metadata": {}}
    # (the transaction's own amount is in the balance's currency: the charge's is the one we asked)
    line = balance_line(txn("charge", charge, amount=262))
    assert line == StatementLine("payment", "pay_1", None, 1999, "pi_1", 1_709_251_200_000)


def test_a_refund_is_a_positive_refund_of_its_refund_id_with_its_status() -> None:
    source = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "status": "pending",
        "payment_intent": INTENT,
        "metadata": {"refund_id": "rfd_1", "payment_id": "pay_1"},
    }
    line = balance_line(txn("refund", source, amount=-500))
    assert line == StatementLine("refund", "pay_1", "rfd_1", 500, "re_1", 1_709_251_200_000, "processing")
    failed = balance_line(txn("refund", {**source, "status": "failed"}))
    assert failed is not None and failed.status == "failed"


def test_what_is_no_payment_or_refund_of_ours_is_no_line() -> None:
    assert balance_line(txn("payout", "po_1")) is None
    assert balance_line(txn("stripe_fee", None)) is None
    someone_elses = {"id": "ch_2", "object": "charge", "amount": 100, "payment_intent": None, "metadata": {}}
    assert balance_line(txn("charge", someone_elses)) is None
    assert balance_line(txn("refund", {"id": "re_2", "amount": 100, "metadata": {}})) is None


def test_a_charge_without_its_expanded_source_is_refused() -> None:
    with pytest.raises(ValueError, match="expanded source"):
        balance_line(txn("charge", "ch_1"))
    with pytest.raises(ValueError, match="amount"):
        balance_line(txn("charge", {"id": "ch_1", "payment_intent": INTENT}))
