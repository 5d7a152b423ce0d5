"""A stand-in for Alipay's open-platform gateway (``https://openapi.alipay.com/gateway.do``): a real HTTP
server on a held loopback port (``FakeServer``) that answers in Alipay's documented format, so the real
``python-alipay-sdk`` runs unchanged against it. It plays both parties' key holders: it makes the app's RSA
key pair (in life the merchant makes it and uploads the public half) and "Alipay's" own.

Requests (the SDK sends every field in the query string; a form body is read too) are checked as Alipay
documents its common parameters: our ``app_id``, a known ``method``, ``charset=utf-8``, ``sign_type=RSA2``,
``version=1.0``, a ``timestamp`` (``yyyy-MM-dd HH:mm:ss``, Beijing time) within 30 minutes of now, and the
``sign``: SHA256withRSA with the app's public key over every other field, sorted, as ``key=value`` joined by
``&`` (``sign_type`` included). A request that fails a check is refused as Alipay's gateway refuses one
(``40002 Invalid Arguments`` with ``isv.*``, unsigned) and counted in ``bad_signatures``/``refused``.

- ``alipay.trade.wap.pay`` / ``alipay.trade.page.pay`` are pages the buyer's browser opens (``open``): the
  cashier creates the trade then (``WAIT_BUYER_PAY``), with the fields it was given; the same
  ``out_trade_no`` with other details is refused (``ACQ.CONTEXT_INCONSISTENT``).
- ``alipay.trade.query``, ``alipay.trade.close``, ``alipay.trade.refund``,
  ``alipay.trade.fastpay.refund.query`` answer ``{"<method>_response": {...}, "sign": "..."}`` with
  ``sign`` over the exact text of the ``<method>_response`` object, by "Alipay's" private key (the SDK
  checks it): ``code`` ``10000`` or ``40004`` with the documented ``sub_code`` (``ACQ.TRADE_NOT_EXIST``,
  ``ACQ.TRADE_STATUS_ERROR``, ``ACQ.REFUND_AMT_NOT_EQUAL_TOTAL``, ...). A refund with an
  ``out_request_no`` already refunded moves no money again (``fund_change`` ``N``); a full refund closes
  the trade.

Time: trades follow ``clock`` (default ``time.time``; a test moves it to pass a ``time_expire``, after
which an unpaid trade is ``TRADE_CLOSED`` and cannot be paid); the request ``timestamp`` is checked against
the real time, since the SDK stamps it from the real clock. Notifications (``payment_notification``,
``refund_notification``) are signed as Alipay signs them (RSA2 over the sorted fields but ``sign`` and
``sign_type``) and form-encoded; the same notification built again is a redelivery: same ``notify_id``, new
``notify_time``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.fake_providers import FakeServer

BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: How far from now a request's ``timestamp`` may be.
TIMESTAMP_WINDOW_S = 30 * 60
PAGE_METHODS = {"alipay.trade.wap.pay": "QUICK_WAP_PAY", "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY"}
API_METHODS = {
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
}


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signing_content(params: Mapping[str, str], *, leave_out: frozenset[str]) -> str:
    """Alipay's string to sign: the fields but ``leave_out``, sorted by name, ``key=value`` joined by ``&``,
    values as they are (not percent-encoded)."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in leave_out)


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    signature = key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verifies(key: rsa.RSAPublicKey, content: str, sign: str) -> bool:
    try:
        key.verify(
            base64.b64decode(sign, validate=True), content.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def beijing(epoch_s: float) -> str:
    return datetime.fromtimestamp(int(epoch_s), BEIJING).strftime(TIME_FORMAT)


def from_beijing(text: str) -> float:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING).timestamp()


def yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def fen(text: str) -> int:
    amount = Decimal(text)
    if amount != amount.quantize(Decimal("0.01")) or amount <= 0:
        raise ValueError(text)
    return int(amount * 100)


class Refused(Exception):
    """A request the fake refuses: ``sub_code`` and ``sub_msg`` in Alipay's words."""

    def __init__(self, sub_code: str, sub_msg: str, *, code: str = "40004", msg: str = "Business Failed"):
        super().__init__(f"{sub_code}: {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def invalid(sub_code: str, sub_msg: str) -> Refused:
    return Refused(sub_code, sub_msg, code="40002", msg="Invalid Arguments")


@dataclass
class AlipayRefund:
    out_request_no: str
    refund_amount: str  #: yuan, as asked
    refund_reason: str | None
    at: float


@dataclass
class AlipayCall:
    """A request the fake accepted: its ``method``, common fields (``sign`` left out) and ``biz_content``."""

    method: str
    params: dict[str, str]
    biz_content: dict[str, Any]


@dataclass
class AlipayTrade:
    """A trade as the cashier made it when the buyer opened the checkout."""

    method: str  #: ``alipay.trade.wap.pay`` or ``alipay.trade.page.pay``
    biz_content: dict[
        str, Any
    ]  #: as sent: out_trade_no, total_amount, subject, product_code, time_expire, ...
    notify_url: str | None
    return_url: str | None
    trade_no: str
    opened_at: float
    status: str = "WAIT_BUYER_PAY"  #: WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED
    paid_at: float | None = None
    closed_at: float | None = None
    refunds: dict[str, AlipayRefund] = field(default_factory=dict)
    buyer_id: str = field(
        default_factory=lambda: "2088" + "".join(secrets.choice("0123456789") for _ in range(12))
    )

    @property
    def out_trade_no(self) -> str:
        return str(self.biz_content["out_trade_no"])

    @property
    def total_amount(self) -> str:
        return str(self.biz_content["total_amount"])

    @property
    def refunded(self) -> int:
        """What was refunded in all, in 分."""
        return sum(fen(r.refund_amount) for r in self.refunds.values())

    def expires_at(self) -> float | None:
        time_expire = self.biz_content.get("time_expire")
        return from_beijing(time_expire) if time_expire else None


@dataclass
class FakeAlipay:
    app_id: str = field(
        default_factory=lambda: "2021" + "".join(secrets.choice("0123456789") for _ in range(12))
    )
    #: The app's key pair: requests are signed with its private half (the SDK, through ``settings``).
    app_key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    #: "Alipay's" key pair: answers and notifications are signed with its private half.
    platform_key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    seller_id: str = "2088101117955611"
    #: The fake's now, for trades (expiry, payment and refund times) and notifications' ``notify_time``.
    clock: Callable[[], float] = time.time
    trades: dict[str, AlipayTrade] = field(default_factory=dict)
    #: Every request accepted, in order.
    calls: list[AlipayCall] = field(default_factory=list)
    #: Requests whose ``sign`` did not verify with the app's public key.
    bad_signatures: int = 0
    #: Requests refused for another of the checks (app id, timestamp, fields).
    refused: list[str] = field(default_factory=list)
    #: Answer every request with this HTTP status and no Alipay body (a gateway in trouble).
    fail_with_status: int | None = None
    #: Seconds to wait before answering (a gateway that hangs).
    delay: float = 0.0
    #: Sign answers with this key instead of Alipay's (an answer the SDK must refuse).
    sign_answers_with: rsa.RSAPrivateKey | None = None
    _server: FakeServer | None = None
    _notify_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    # -- set-up -------------------------------------------------------------------------------------------

    def server(self) -> FakeServer:
        """The gateway's server (one per fake): ``async with fake.server():``."""
        if self._server is None:
            self._server = FakeServer(
                Starlette(routes=[Route("/gateway.do", self._gateway, methods=["GET", "POST"])])
            )
        return self._server

    @property
    def gateway(self) -> str:
        return f"{self.server().url}/gateway.do"

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        """The ``Settings`` overrides of an app that uses this fake: its app id, the app's private key and
        Alipay's public key in PEM files under ``tmp_path``, the gateway URL."""
        private_file = tmp_path / "alipay_app_private_key.pem"
        public_file = tmp_path / "alipay_public_key.pem"
        private_file.write_bytes(private_pem(self.app_key))
        public_file.write_bytes(public_pem(self.platform_key))
        return {
            "alipay_app_id": self.app_id,
            "alipay_private_key_file": private_file,
            "alipay_public_key_file": public_file,
            "alipay_api_base": self.gateway,
        }

    # -- the buyer ----------------------------------------------------------------------------------------

    async def open(self, redirect_url: str) -> AlipayTrade:
        """Open a checkout's ``redirect_url`` as the buyer's browser does (an HTTP GET to this fake): the
        cashier checks it and makes the trade. ``RuntimeError`` with Alipay's words if it refuses it."""
        async with httpx.AsyncClient() as client:
            response = await client.get(redirect_url)
        if response.status_code != 200:
            raise RuntimeError(f"Alipay's cashier refused the checkout: {response.text}")
        params = dict(parse_qsl(urlsplit(redirect_url).query))
        return self.trade(json.loads(params["biz_content"])["out_trade_no"])

    def trade(self, out_trade_no: str) -> AlipayTrade:
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise KeyError(
                f"no trade {out_trade_no!r}: its checkout was never opened (fake.open(redirect_url))"
            )
        self._expire(trade)
        return trade

    def pay(self, out_trade_no: str) -> AlipayTrade:
        """The buyer pays the trade in full (``TRADE_SUCCESS``), with no notification sent. ``ValueError`` if
        it is no longer waiting for payment (closed, expired, paid)."""
        trade = self.trade(out_trade_no)
        if trade.status != "WAIT_BUYER_PAY":
            raise ValueError(f"{out_trade_no} cannot be paid: it is {trade.status}")
        trade.status, trade.paid_at = "TRADE_SUCCESS", self.clock()
        return trade

    # -- notifications ------------------------------------------------------------------------------------

    def payment_notification(
        self,
        out_trade_no: str,
        *,
        state: str | None = None,
        amount: int | None = None,
        timestamp: float | None = None,
        notify_id: str | None = None,
        app_id: str | None = None,
        signed_by: rsa.RSAPrivateKey | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The ``trade_status_sync`` notification Alipay POSTs to the trade's ``notify_url``: ``(headers,
        body)``. ``state``: the ``trade_status`` (default: the trade's now); ``amount`` (分): another
        ``total_amount`` than the trade's; ``timestamp`` (epoch s): ``notify_time`` (default: the clock's
        now); ``notify_id``: default the same for the same trade and state (a redelivery); ``app_id`` and
        ``signed_by``: another app's notification, a forged one."""
        trade = self.trade(out_trade_no)
        status = state or trade.status
        params = self._notification_fields(
            trade, status, key=status, timestamp=timestamp, notify_id=notify_id
        )
        if amount is not None:
            params["total_amount"] = params["receipt_amount"] = params["buyer_pay_amount"] = yuan(amount)
        if app_id is not None:
            params["app_id"] = params["auth_app_id"] = app_id
        return self._signed_form(params, signed_by)

    def refund_notification(
        self, out_request_no: str, *, timestamp: float | None = None, notify_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The notification of a refund made (``alipay.trade.refund``): the trade's status (``TRADE_SUCCESS``
        after a partial refund, ``TRADE_CLOSED`` after a full one) with ``out_biz_no`` (the refund's
        ``out_request_no``), ``refund_fee`` (the trade's refunded total) and ``gmt_refund``."""
        trade = next((t for t in self.trades.values() if out_request_no in t.refunds), None)
        if trade is None:
            raise KeyError(f"no refund {out_request_no!r}")
        refund = trade.refunds[out_request_no]
        params = self._notification_fields(
            trade, trade.status, key=f"refund:{out_request_no}", timestamp=timestamp, notify_id=notify_id
        )
        params["out_biz_no"] = out_request_no
        params["refund_fee"] = yuan(trade.refunded)
        params["gmt_refund"] = datetime.fromtimestamp(refund.at, BEIJING).strftime(TIME_FORMAT + ".%f")[:-3]
        if trade.status == "TRADE_CLOSED":
            params["gmt_close"] = beijing(refund.at)
        return self._signed_form(params, None)

    def _notification_fields(
        self, trade: AlipayTrade, status: str, *, key: str, timestamp: float | None, notify_id: str | None
    ) -> dict[str, str]:
        stable_id = self._notify_ids.setdefault((trade.out_trade_no, key), secrets.token_hex(17))
        params = {
            "notify_time": beijing(self.clock() if timestamp is None else timestamp),
            "notify_type": "trade_status_sync",
            "notify_id": notify_id or stable_id,
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_id": trade.buyer_id,
            "buyer_logon_id": "159****5620",
            "seller_id": self.seller_id,
            "seller_email": "shop@example.com",
            "trade_status": status,
            "total_amount": trade.total_amount,
            "subject": str(trade.biz_content.get("subject", "")),
            "gmt_create": beijing(trade.opened_at),
        }
        if trade.paid_at is not None:
            params |= {
                "receipt_amount": trade.total_amount,
                "invoice_amount": trade.total_amount,
                "buyer_pay_amount": trade.total_amount,
                "point_amount": "0.00",
                "gmt_payment": beijing(trade.paid_at),
                "fund_bill_list": json.dumps(
                    [{"amount": trade.total_amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
                ),
            }
        return params

    def _signed_form(
        self, params: dict[str, str], signed_by: rsa.RSAPrivateKey | None
    ) -> tuple[dict[str, str], bytes]:
        key = signed_by or self.platform_key
        params["sign"] = rsa2_sign(key, signing_content(params, leave_out=frozenset({"sign", "sign_type"})))
        headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
        return headers, urlencode(params).encode()

    # -- the gateway --------------------------------------------------------------------------------------

    async def _gateway(self, request: Request) -> Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with_status is not None:
            return Response(
                "<html><body>Service Unavailable</body></html>", status_code=self.fail_with_status
            )
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        method = params.get("method", "")
        try:
            biz_content = self._check(params)
            if method in PAGE_METHODS:
                trade = self._open(method, params, biz_content)
                return HTMLResponse(
                    f"<html><title>支付宝收银台</title><body>{trade.total_amount}</body></html>"
                )
            answer = self._answer(method, biz_content)
        except Refused as refusal:
            if refusal.code == "40002":
                self.refused.append(f"{refusal.sub_code}: {refusal.sub_msg}")
            words = {"code": refusal.code, "msg": refusal.msg, "sub_code": refusal.sub_code}
            words["sub_msg"] = refusal.sub_msg
            if method in PAGE_METHODS:
                return HTMLResponse(
                    f"<html><body>错误代码 {refusal.sub_code} {refusal.sub_msg}</body></html>", 400
                )
            if refusal.code == "40002":  # refused by the gateway itself: Alipay does not sign these
                return _json_response(json.dumps({_response_key(method): words}, ensure_ascii=False))
            answer = words
        return self._signed_answer(method, answer)

    def _check(self, params: dict[str, str]) -> dict[str, Any]:
        """Alipay's checks of the common parameters and the ``sign``; the parsed ``biz_content``."""
        if params.get("app_id") != self.app_id:
            raise invalid("isv.invalid-app-id", "无效的AppID参数")
        method = params.get("method", "")
        if method not in PAGE_METHODS and method not in API_METHODS:
            raise invalid("isv.invalid-method", f"不存在的方法名 {method}")
        if params.get("charset", "").lower() != "utf-8":
            raise invalid("isv.invalid-charset", "字符集错误")
        if params.get("sign_type") != "RSA2":
            raise invalid("isv.invalid-signature-type", "无效的签名类型")
        if params.get("version") != "1.0":
            raise invalid("isv.invalid-version", "版本号错误")
        try:
            sent_at = from_beijing(params.get("timestamp", ""))
        except ValueError:
            raise invalid("isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs(time.time() - sent_at) > TIMESTAMP_WINDOW_S:
            raise invalid("isv.invalid-timestamp", "非法的时间戳参数: 与当前时间相差超过30分钟")
        content = signing_content(params, leave_out=frozenset({"sign"}))
        if not rsa2_verifies(self.app_key.public_key(), content, params.get("sign", "")):
            self.bad_signatures += 1
            raise invalid("isv.invalid-signature", "验签出错, 建议检查签名字符串或签名私钥与应用公钥是否匹配")
        try:
            biz_content = json.loads(params.get("biz_content", ""))
        except ValueError:
            raise invalid("isv.missing-biz-content", "缺少业务参数") from None
        if not isinstance(biz_content, dict):
            raise invalid("isv.invalid-biz-content", "业务参数不是JSON对象")
        self.calls.append(AlipayCall(method, {k: v for k, v in params.items() if k != "sign"}, biz_content))
        return biz_content

    def _open(self, method: str, params: dict[str, str], biz: dict[str, Any]) -> AlipayTrade:
        for name in ("out_trade_no", "total_amount", "subject", "product_code"):
            if not biz.get(name):
                raise invalid("isv.missing-required-arguments", f"缺少必选参数 {name}")
        if biz["product_code"] != PAGE_METHODS[method]:
            raise Refused("ACQ.PRODUCT_CODE_ERROR", f"product_code 必须为 {PAGE_METHODS[method]}")
        try:
            amount = fen(str(biz["total_amount"]))
        except (ArithmeticError, ValueError):
            raise invalid("isv.invalid-parameter", "total_amount 格式错误") from None
        if amount > 100_000_000_00:
            raise Refused("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        if biz.get("time_expire"):
            try:
                expires = from_beijing(str(biz["time_expire"]))
            except ValueError:
                raise invalid("isv.invalid-parameter", "time_expire 格式错误") from None
            if expires <= self.clock():
                raise Refused("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        existing = self.trades.get(str(biz["out_trade_no"]))
        if existing is not None:
            if existing.biz_content != biz or existing.method != method:
                raise Refused("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing
        trade = AlipayTrade(
            method=method,
            biz_content=biz,
            notify_url=params.get("notify_url"),
            return_url=params.get("return_url"),
            trade_no=datetime.now(BEIJING).strftime("%Y%m%d") + "22001" + secrets.token_hex(8)[:15],
            opened_at=self.clock(),
        )
        self.trades[trade.out_trade_no] = trade
        return trade

    def _answer(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if method == "alipay.trade.query":
            return self._query(trade)
        if method == "alipay.trade.close":
            if trade.status != "WAIT_BUYER_PAY":
                raise Refused("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade.status, trade.closed_at = "TRADE_CLOSED", self.clock()
            return _ok(trade_no=trade.trade_no, out_trade_no=trade.out_trade_no)
        if method == "alipay.trade.refund":
            return self._refund(trade, biz)
        refund = trade.refunds.get(str(biz.get("out_request_no", "")))
        if refund is None:  # (Alipay answers an unknown refund with no refund in it)
            return _ok()
        return _ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            out_request_no=refund.out_request_no,
            total_amount=trade.total_amount,
            refund_amount=refund.refund_amount,
            refund_status="REFUND_SUCCESS",
        )

    def _find(self, biz: dict[str, Any]) -> AlipayTrade:
        out_trade_no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise invalid("isv.missing-required-arguments", "out_trade_no 和 trade_no 不能同时为空")
        for trade in self.trades.values():
            if trade.out_trade_no == out_trade_no or trade.trade_no == trade_no:
                self._expire(trade)
                return trade
        raise Refused("ACQ.TRADE_NOT_EXIST", "交易不存在")

    def _query(self, trade: AlipayTrade) -> dict[str, Any]:
        answer = _ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            buyer_logon_id="159****5620",
            trade_status=trade.status,
            total_amount=trade.total_amount,
            buyer_user_id=trade.buyer_id,
        )
        if trade.paid_at is not None:
            answer |= {
                "buyer_pay_amount": trade.total_amount,
                "receipt_amount": trade.total_amount,
                "send_pay_date": beijing(trade.paid_at),
            }
        return answer

    def _refund(self, trade: AlipayTrade, biz: dict[str, Any]) -> dict[str, Any]:
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            raise invalid("isv.missing-required-arguments", "缺少必选参数 out_request_no")
        try:
            amount = fen(str(biz.get("refund_amount")))
        except (ArithmeticError, ValueError):
            raise invalid("isv.invalid-parameter", "refund_amount 格式错误") from None
        moved = out_request_no not in trade.refunds
        if moved:
            if trade.status == "TRADE_FINISHED":
                raise Refused("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if trade.status != "TRADE_SUCCESS":
                raise Refused("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade.refunded + amount > fen(trade.total_amount):
                raise Refused("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            trade.refunds[out_request_no] = AlipayRefund(
                out_request_no, str(biz["refund_amount"]), biz.get("refund_reason"), self.clock()
            )
            if trade.refunded == fen(trade.total_amount):
                trade.status, trade.closed_at = "TRADE_CLOSED", self.clock()
        return _ok(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            buyer_logon_id="159****5620",
            fund_change="Y" if moved else "N",
            refund_fee=yuan(trade.refunded),
            gmt_refund_pay=beijing(trade.refunds[out_request_no].at),
            buyer_user_id=trade.buyer_id,
        )

    def _expire(self, trade: AlipayTrade) -> None:
        expires_at = trade.expires_at()
        if trade.status == "WAIT_BUYER_PAY" and expires_at is not None and self.clock() >= expires_at:
            trade.status, trade.closed_at = "TRADE_CLOSED", expires_at

    def _signed_answer(self, method: str, answer: dict[str, Any]) -> Response:
        inner = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.sign_answers_with or self.platform_key, inner)
        return _json_response(f'{{"{_response_key(method)}":{inner},"sign":"{sign}"}}')


def _ok(**fields: Any) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success", **fields}


def _response_key(method: str) -> str:
    return (method or "error").replace(".", "_") + "_response"


def _json_response(text: str) -> Response:
    return Response(text.encode(), media_type="application/json;charset=utf-8")
