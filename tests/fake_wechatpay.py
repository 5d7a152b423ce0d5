"""A stand-in for WeChat Pay API v3 (微信支付), a real HTTP server on a held loopback port that answers in
WeChat's documented format, so the real SDK (``wechatpayv3``) runs unchanged against it.

It plays both sides' keys: it makes up the merchant (mchid, AppID, APIv3 key, the merchant's API key pair
and certificate serial, written to PEM files by :meth:`FakeWeChatPay.settings`) and the platform (WeChat's
own RSA key, known to the merchant either as a "WeChat Pay public key" with its ``PUB_KEY_ID_...`` or as
a self-signed X.509 platform certificate served, AES-256-GCM-encrypted with the APIv3 key, at
``/v3/certificates``; ``mode`` picks which).

Every request must carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,
signature=..,timestamp=..,serial_no=..``, its signature RSA-SHA256 over
``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` with the merchant key (else 401 ``SIGN_ERROR``,
counted in ``bad_signatures``); every answer is signed with the platform key in the ``Wechatpay-*``
headers, as the SDK checks. Served:

- ``POST /v3/pay/transactions/{native,jsapi,h5}`` (fields checked: appid, mchid, description, out_trade_no,
  notify_url, amount, time_expire, payer.openid for JSAPI, scene_info for H5) → ``code_url`` / ``prepay_id``
  / ``h5_url``; the same request again gets the same answer, another one for a used out_trade_no 400;
- ``GET /v3/pay/transactions/out-trade-no/{no}?mchid=`` → the transaction (``trade_state`` and the rest);
- ``POST /v3/pay/transactions/out-trade-no/{no}/close`` → 204, or 400 ``ORDERPAID``;
- ``POST /v3/refund/domestic/refunds`` (amount checked against what was paid and refunded) → the refund,
  ``PROCESSING`` (or ``refund_answer_status``); the same out_refund_no again is the same refund;
- ``GET /v3/refund/domestic/refunds/{no}``; ``GET /v3/certificates``;
- ``GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=`` → ``{download_url, hash_type: "SHA1",
  hash_value}`` (400 ``NO_STATEMENT_EXIST`` for a day without trades), and the ``download_url``, ``GET
  /v3/billdownload/file?token=`` (signed by the merchant like every request; the file itself is not signed,
  as WeChat's is not: its SHA-1 is the check) → the trade bill in WeChat's CSV (:func:`trade_bill`),
  gzipped for ``tar_type=GZIP``. The bill of a Beijing day is made from this fake's own state: a
  ``SUCCESS`` row for each payment paid that day, a ``REFUND`` row for each refund asked that day (the
  real WeChat gives a day's bill from 10:00 the next day; this one gives today's too).

A test makes the bill differ from what happened with ``bill_left_out`` (out_trade_no and out_refund_no
values whose rows are left out), ``bill_amounts`` (an amount in 分 to show instead, by the same numbers),
:meth:`~FakeWeChatPay.outside_payment` (a payment made at WeChat that LiveCart's ledger never saw), or
``corrupt_bills`` (the file served is not the one hashed).

State: ``payments`` (by out_trade_no) and ``refunds`` (by out_refund_no). A test plays the buyer with
:meth:`~FakeWeChatPay.pay` (no notification is sent: nothing is) and WeChat's notifications with
:meth:`~FakeWeChatPay.payment_notification` and :meth:`~FakeWeChatPay.refund_notification`, which return
the ``(headers, body)`` WeChat would POST to the ``notify_url``, signed and encrypted as it documents.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import hashlib
import io
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fake_providers import FakeServer

BEIJING = timezone(timedelta(hours=8))
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "h5": "MWEB"}
OUT_NO_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-|*")
#: How far a request's timestamp may be from now (WeChat refuses older ones).
REQUEST_TOLERANCE = 5 * 60


#: The columns of WeChat Pay's trade bill (交易账单, ``bill_type=ALL``), in its order.
TRADE_BILL_COLUMNS = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
TRADE_BILL_SUMMARY = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)
#: A refund's status (API v3) as a trade bill's 退款状态 writes it.
BILL_REFUND_STATES = {
    "SUCCESS": "SUCCESS",
    "PROCESSING": "PROCESSING",
    "ABNORMAL": "CHANGE",
    "CLOSED": "REFUNDCLOSE",
}


def yuan(fen: int) -> str:
    """分 as a bill writes yuan: two decimals."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def trade_bill(rows: list[list[str]]) -> bytes:
    """A trade bill file as WeChat writes one: the header line, each row's fields prefixed with a backtick
    (so that a spreadsheet keeps long numbers as text), then the summary header and its row; UTF-8."""

    def total(name: str) -> str:
        at = TRADE_BILL_COLUMNS.index(name)
        return yuan(sum(int(Decimal(row[at]) * 100) for row in rows))

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TRADE_BILL_COLUMNS)
    writer.writerows(["`" + field for field in row] for row in rows)
    writer.writerow(TRADE_BILL_SUMMARY)
    summary = [
        str(len(rows)),
        total("应结订单金额"),
        total("退款金额"),
        total("充值券退款金额"),
        total("手续费"),
        total("订单金额"),
        total("申请退款金额"),
    ]
    writer.writerow(["`" + field for field in summary])
    return out.getvalue().encode()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verifies(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(
            base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def aes_gcm_encrypt(key: str, plaintext: str, *, associated_data: str) -> dict[str, str]:
    """An ``encrypt_certificate`` / notification ``resource`` as WeChat writes one: AEAD_AES_256_GCM with
    the APIv3 key, a 12-character nonce, the ciphertext (tag appended) in base64."""
    nonce = secrets.token_hex(6)
    sealed = AESGCM(key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "nonce": nonce,
        "associated_data": associated_data,
        "ciphertext": base64.b64encode(sealed).decode(),
    }


def self_signed_certificate(key: rsa.RSAPrivateKey, *, days: int = 5 * 365) -> x509.Certificate:
    """The platform certificate: WeChat's key, signed by itself (the real one is signed by Tenpay's CA)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Platform (fake)"),
        ]
    )
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


@dataclass
class WeChatPayment:
    """One order at WeChat, as the merchant created it."""

    out_trade_no: str
    trade_type: str  #: ``NATIVE``, ``JSAPI`` or ``MWEB`` (H5)
    request: dict[str, Any]  #: the body the merchant sent
    amount: int
    currency: str
    description: str
    notify_url: str
    time_expire: datetime | None
    payer_openid: str | None
    client_ip: str | None
    #: ``NOTPAY`` → ``SUCCESS`` (:meth:`FakeWeChatPay.pay`) → ``REFUND``; or ``CLOSED``.
    trade_state: str = "NOTPAY"
    prepay_id: str | None = None
    transaction_id: str | None = None
    success_time: datetime | None = None
    #: The id of its ``TRANSACTION.SUCCESS`` notification (the same at every redelivery).
    notification_id: str | None = None


@dataclass
class WeChatRefund:
    out_refund_no: str
    out_trade_no: str
    transaction_id: str
    refund_id: str
    refund: int
    total: int
    currency: str
    reason: str | None
    notify_url: str | None
    request: dict[str, Any]  #: the body the merchant sent
    status: str = "PROCESSING"  #: ``PROCESSING``, ``SUCCESS``, ``ABNORMAL`` or ``CLOSED``
    success_time: datetime | None = None
    #: When the merchant asked for it (a trade bill lists it on that day).
    create_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    notification_ids: dict[str, str] = field(default_factory=dict)  #: by event type


class WeChatPayError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeWeChatPay:
    #: How the merchant knows the platform key: ``public_key`` (微信支付公钥) or ``certificate``.
    mode: Literal["public_key", "certificate"] = "public_key"
    mchid: str = field(default_factory=lambda: "19" + "".join(secrets.choice("0123456789") for _ in range(8)))
    appid: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    apiv3_key: str = field(default_factory=lambda: secrets.token_hex(16))  # 32 characters
    merchant_key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    merchant_serial: str = field(default_factory=lambda: secrets.token_hex(20).upper())
    platform_key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key)
    platform_public_key_id: str = field(
        default_factory=lambda: "PUB_KEY_ID_01" + "".join(secrets.choice("0123456789") for _ in range(30))
    )
    payments: dict[str, WeChatPayment] = field(default_factory=dict)
    refunds: dict[str, WeChatRefund] = field(default_factory=dict)
    #: Requests whose Authorization did not verify (answered 401 ``SIGN_ERROR``).
    bad_signatures: int = 0
    #: Every request that verified, as ``(method, path with query)``.
    calls: list[tuple[str, str]] = field(default_factory=list)
    certificate_downloads: int = 0
    #: What each order creation answered (``code_url``, ``prepay_id`` or ``h5_url``), in order.
    create_answers: list[dict[str, str]] = field(default_factory=list)
    #: Answer every API call with this ``(HTTP status, code, message)`` (e.g. 500 ``SYSTEM_ERROR``).
    fail_with: tuple[int, str, str] | None = None
    #: Seconds to wait before answering (a WeChat that hangs).
    delay: float = 0.0
    #: Sign the answers with this key instead of the platform's (answers the SDK must refuse).
    answer_key: rsa.RSAPrivateKey | None = None
    #: What a new refund's answer says (WeChat usually answers ``PROCESSING``; the result comes later).
    refund_answer_status: str = "PROCESSING"
    api_base: str | None = None
    #: out_trade_no / out_refund_no values whose rows trade bills leave out.
    bill_left_out: set[str] = field(default_factory=set)
    #: An amount (分) trade bills show instead of the true one, by out_trade_no / out_refund_no.
    bill_amounts: dict[str, int] = field(default_factory=dict)
    #: Serve each bill file with a byte changed after it was hashed (a download that went wrong).
    corrupt_bills: bool = False
    #: Bill files ready for download, by their URL's token.
    _bill_files: dict[str, bytes] = field(default_factory=dict)
    _nonces: set[str] = field(default_factory=set)
    _certificate: x509.Certificate | None = None

    # -- what the merchant configures -------------------------------------------------------------------

    @property
    def platform_certificate(self) -> x509.Certificate:
        if self._certificate is None:
            self._certificate = self_signed_certificate(self.platform_key)
        return self._certificate

    @property
    def platform_serial(self) -> str:
        """What WeChat puts in ``Wechatpay-Serial``: the public key id, or the certificate's serial (hex)."""
        if self.mode == "public_key":
            return self.platform_public_key_id
        return f"{self.platform_certificate.serial_number:X}"

    def server(self) -> FakeServer:
        routes = [
            Route("/v3/pay/transactions/{kind:str}", self._create, methods=["POST"]),
            Route("/v3/pay/transactions/out-trade-no/{no:str}", self._query, methods=["GET"]),
            Route("/v3/pay/transactions/out-trade-no/{no:str}/close", self._close, methods=["POST"]),
            Route("/v3/refund/domestic/refunds", self._refund, methods=["POST"]),
            Route("/v3/refund/domestic/refunds/{no:str}", self._query_refund, methods=["GET"]),
            Route("/v3/certificates", self._certificates, methods=["GET"]),
            Route("/v3/bill/tradebill", self._tradebill, methods=["GET"]),
            Route("/v3/billdownload/file", self._bill_file, methods=["GET"]),
        ]
        server = FakeServer(Starlette(routes=routes))
        self.api_base = server.url
        return server

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        """The ``Settings`` overrides of a merchant set up for this fake (keys as PEM files under
        ``tmp_path/wechatpay``; the API base is the server's, so call :meth:`server` first)."""
        if self.api_base is None:
            raise RuntimeError("FakeWeChatPay.settings() needs the server: call server() first")
        folder = tmp_path / "wechatpay"
        folder.mkdir(parents=True, exist_ok=True)
        merchant_key_file = folder / "apiclient_key.pem"
        merchant_key_file.write_bytes(
            self.merchant_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        values: dict[str, Any] = {
            "wechatpay_mchid": self.mchid,
            "wechatpay_appid": self.appid,
            "wechatpay_apiv3_key": self.apiv3_key,
            "wechatpay_merchant_key_file": merchant_key_file,
            "wechatpay_merchant_serial": self.merchant_serial,
            "wechatpay_api_base": self.api_base,
        }
        if self.mode == "public_key":
            public_key_file = folder / "pub_key.pem"
            public_key_file.write_bytes(
                self.platform_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            values["wechatpay_platform_public_key_file"] = public_key_file
            values["wechatpay_platform_public_key_id"] = self.platform_public_key_id
        else:
            values["wechatpay_platform_cert_dir"] = folder / "platform-certs"
        return values

    # -- the buyer and WeChat's notifications -------------------------------------------------------------

    def pay(self, out_trade_no: str, *, openid: str | None = None) -> WeChatPayment:
        """The buyer pays (no notification is sent). Refused, as WeChat would, once the order is closed
        or past its ``time_expire``."""
        payment = self._payment(out_trade_no)
        if payment.trade_state in ("SUCCESS", "REFUND"):
            return payment
        if payment.trade_state != "NOTPAY":
            raise ValueError(f"{out_trade_no} is {payment.trade_state}: the buyer cannot pay it")
        if payment.time_expire is not None and datetime.now(UTC) > payment.time_expire:
            raise ValueError(f"{out_trade_no} expired at {rfc3339(payment.time_expire)}")
        payment.trade_state = "SUCCESS"
        payment.transaction_id = "42000" + "".join(secrets.choice("0123456789") for _ in range(23))
        payment.success_time = datetime.now(UTC)
        payment.payer_openid = payment.payer_openid or openid or "o" + secrets.token_urlsafe(20)
        return payment

    def payment_notification(
        self,
        out_trade_no: str,
        *,
        amount: int | None = None,
        timestamp: int | None = None,
        serial: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The ``TRANSACTION.SUCCESS`` notification of a payment (paid first if it was not), as WeChat
        POSTs it: ``amount`` overrides what it reports as paid, ``timestamp`` the signing time, ``serial``
        the ``Wechatpay-Serial`` sent (still signed by the platform key). Its ``id`` is the same each
        time: call again for a redelivery."""
        payment = self.pay(out_trade_no)
        if payment.notification_id is None:
            payment.notification_id = str(uuid.uuid4())
        transaction = self.transaction(payment)
        if amount is not None:
            transaction["amount"]["total"] = transaction["amount"]["payer_total"] = amount
        return self.notification(
            notification_id=payment.notification_id,
            event_type="TRANSACTION.SUCCESS",
            summary="支付成功",
            original_type="transaction",
            resource=transaction,
            timestamp=timestamp,
            serial=serial,
        )

    def refund_notification(
        self,
        out_refund_no: str,
        *,
        status: Literal["SUCCESS", "ABNORMAL", "CLOSED"] = "SUCCESS",
        timestamp: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The refund reaches ``status`` and WeChat notifies it (``REFUND.<status>``, one id per status)."""
        refund = self.refunds[out_refund_no]
        refund.status = status
        if status == "SUCCESS" and refund.success_time is None:
            refund.success_time = datetime.now(UTC)
        event_type = f"REFUND.{status}"
        notification_id = refund.notification_ids.setdefault(event_type, str(uuid.uuid4()))
        resource: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": refund.out_trade_no,
            "transaction_id": refund.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": refund.total,
                "refund": refund.refund,
                "payer_total": refund.total,
                "payer_refund": refund.refund,
            },
        }
        if refund.success_time is not None:
            resource["success_time"] = rfc3339(refund.success_time)
        summary = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}[status]
        return self.notification(
            notification_id=notification_id,
            event_type=event_type,
            summary=summary,
            original_type="refund",
            resource=resource,
            timestamp=timestamp,
        )

    def notification(
        self,
        *,
        notification_id: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
        timestamp: int | None = None,
        serial: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Any notification: ``resource`` encrypted with the APIv3 key, the body signed by the platform."""
        payload = {
            "id": notification_id,
            "create_time": rfc3339(datetime.now(UTC)),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                **aes_gcm_encrypt(
                    self.apiv3_key, json.dumps(resource, ensure_ascii=False), associated_data=original_type
                ),
            },
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        return self.signed_headers(body, timestamp=timestamp, serial=serial), body

    def signed_headers(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        serial: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, str]:
        """The ``Wechatpay-*`` headers that sign ``body`` (a notification's, an answer's) with the platform
        key, or with ``key`` (a forgery)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16).upper()
        key = key or self.platform_key
        return {
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(key, f"{stamp}\n{nonce}\n{body.decode()}\n"),
            "Wechatpay-Serial": self.platform_serial if serial is None else serial,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    def transaction(self, payment: WeChatPayment) -> dict[str, Any]:
        """A payment as WeChat's order query (and its notification's resource) describes it."""
        value: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": payment.out_trade_no,
            "trade_type": payment.trade_type,
            "trade_state": payment.trade_state,
            "trade_state_desc": {
                "SUCCESS": "支付成功",
                "REFUND": "转入退款",
                "NOTPAY": "未支付",
                "CLOSED": "已关闭",
            }.get(payment.trade_state, payment.trade_state),
            "attach": "",
            "amount": {
                "total": payment.amount,
                "currency": payment.currency,
                "payer_currency": payment.currency,
            },
        }
        if payment.transaction_id is not None:
            assert payment.success_time is not None
            value["transaction_id"] = payment.transaction_id
            value["bank_type"] = "OTHERS"
            value["success_time"] = rfc3339(payment.success_time)
            value["payer"] = {"openid": payment.payer_openid}
            value["amount"]["payer_total"] = payment.amount
        return value

    def outside_payment(self, amount: int, *, out_trade_no: str | None = None) -> WeChatPayment:
        """A payment made and paid at WeChat on this merchant by something other than LiveCart (its
        trade bill lists it; our ledger never saw it)."""
        number = out_trade_no or "ext" + secrets.token_hex(8)
        self.payments[number] = WeChatPayment(
            out_trade_no=number,
            trade_type="NATIVE",
            request={},
            amount=amount,
            currency="CNY",
            description="门店收款",
            notify_url="",
            time_expire=None,
            payer_openid=None,
            client_ip=None,
            prepay_id="wx" + secrets.token_hex(14),
        )
        return self.pay(number)

    def trade_bill_rows(self, day: date) -> list[list[str]]:
        """The rows (no backticks yet) of the trade bill of ``day`` in Beijing time, by trade time."""
        rows: list[tuple[datetime, list[str]]] = []
        for payment in self.payments.values():
            paid = payment.success_time
            if paid is None or payment.transaction_id is None or paid.astimezone(BEIJING).date() != day:
                continue
            if payment.out_trade_no in self.bill_left_out:
                continue
            amount = self.bill_amounts.get(payment.out_trade_no, payment.amount)
            rows.append((paid, self._bill_row(paid, payment, "SUCCESS", amount=amount, refund=None)))
        for refund in self.refunds.values():
            if (
                refund.create_time.astimezone(BEIJING).date() != day
                or refund.out_refund_no in self.bill_left_out
            ):
                continue
            payment = self.payments[refund.out_trade_no]
            amount = self.bill_amounts.get(refund.out_refund_no, refund.refund)
            rows.append(
                (refund.create_time, self._bill_row(refund.create_time, payment, "REFUND", amount, refund))
            )
        return [row for _, row in sorted(rows, key=lambda pair: pair[0])]

    def _bill_row(
        self, at: datetime, payment: WeChatPayment, state: str, amount: int, refund: WeChatRefund | None
    ) -> list[str]:
        paid = state == "SUCCESS"
        fee = (amount * 6 + 500) // 1000 if paid else 0  # 0.60%, rounded half up
        values = {
            "交易时间": at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": self.appid,
            "商户号": self.mchid,
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": payment.transaction_id or "",
            "商户订单号": payment.out_trade_no,
            "用户标识": payment.payer_openid or "",
            "交易类型": payment.trade_type,
            "交易状态": state,
            "付款银行": "OTHERS",
            "货币种类": payment.currency,
            "应结订单金额": yuan(amount if paid else 0),
            "代金券金额": "0.00",
            "微信退款单号": refund.refund_id if refund else "0",
            "商户退款单号": refund.out_refund_no if refund else "0",
            "退款金额": yuan(0 if paid else amount),
            "充值券退款金额": "0.00",
            "退款类型": "ORIGINAL" if refund else "",
            "退款状态": BILL_REFUND_STATES.get(refund.status, refund.status) if refund else "",
            "商品名称": payment.description,
            "商户数据包": "",
            "手续费": yuan(fee),
            "费率": "0.60%",
            "订单金额": yuan(amount if paid else payment.amount),
            "申请退款金额": yuan(0 if paid else amount),
            "费率备注": "",
        }
        return [values[name] for name in TRADE_BILL_COLUMNS]

    def refunded(self, out_trade_no: str) -> int:
        """What has been refunded of a payment (refunds not closed)."""
        return sum(
            r.refund for r in self.refunds.values() if r.out_trade_no == out_trade_no and r.status != "CLOSED"
        )

    # -- the HTTP side ----------------------------------------------------------------------------------

    def _payment(self, out_trade_no: str) -> WeChatPayment:
        try:
            return self.payments[out_trade_no]
        except KeyError:
            raise KeyError(f"WeChat Pay has no order {out_trade_no!r}") from None

    def _answer(self, status: int, value: dict[str, Any] | None = None) -> Response:
        body = b"" if value is None else json.dumps(value, ensure_ascii=False).encode()
        headers = {"Request-ID": secrets.token_hex(16), **self.signed_headers(body, key=self.answer_key)}
        if value is None:
            return Response(status_code=status, headers=headers)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    def _error(self, error: WeChatPayError) -> Response:
        return self._answer(error.status, {"code": error.code, "message": error.message})

    async def _handle(self, request: Request, handler: Any) -> Response:
        body = await request.body()
        problem = self._check_authorization(request, body)
        if problem is not None:
            self.bad_signatures += 1
            return self._error(WeChatPayError(401, "SIGN_ERROR", problem))
        path = request.scope["raw_path"].decode()
        if request.scope["query_string"]:
            path += "?" + request.scope["query_string"].decode()
        self.calls.append((request.method, path))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            return self._error(WeChatPayError(*self.fail_with))
        try:
            data = json.loads(body) if body else {}
            if not isinstance(data, dict):
                raise WeChatPayError(400, "PARAM_ERROR", "请求体不是 JSON 对象")
            status, value = handler(request, data)
        except WeChatPayError as error:
            return self._error(error)
        except ValueError:
            return self._error(WeChatPayError(400, "PARAM_ERROR", "请求体不是合法的 JSON"))
        return self._answer(status, value)

    def _check_authorization(self, request: Request, body: bytes) -> str | None:
        """WeChat's check of the merchant's signature; ``None`` when it verifies, else the reason."""
        scheme, _, rest = request.headers.get("authorization", "").partition(" ")
        if scheme != SIGNATURE_TYPE:
            return f"不支持的签名方式 {scheme!r}"
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value.strip('"')
        if fields.get("mchid") != self.mchid:
            return "商户号与签名不匹配"
        if fields.get("serial_no") != self.merchant_serial:
            return "商户证书序列号有误"
        pubkey_serial = request.headers.get("wechatpay-serial")
        if pubkey_serial is not None and pubkey_serial != self.platform_serial:
            return "Wechatpay-Serial 不是平台公钥ID或平台证书序列号"
        try:
            stamp = int(fields.get("timestamp", ""))
        except ValueError:
            return "timestamp 有误"
        if abs(time.time() - stamp) > REQUEST_TOLERANCE:
            return "请求已过期"
        nonce = fields.get("nonce_str", "")
        if not nonce or nonce in self._nonces:
            return "nonce_str 重复或为空"
        path = request.scope["raw_path"].decode()
        if request.scope["query_string"]:
            path += "?" + request.scope["query_string"].decode()
        message = f"{request.method}\n{path}\n{stamp}\n{nonce}\n{body.decode()}\n"
        if not rsa_verifies(self.merchant_key.public_key(), message, fields.get("signature", "")):
            return "签名错误"
        self._nonces.add(nonce)
        return None

    async def _create(self, request: Request) -> Response:
        return await self._handle(request, self._create_order)

    async def _query(self, request: Request) -> Response:
        return await self._handle(request, self._query_order)

    async def _close(self, request: Request) -> Response:
        return await self._handle(request, self._close_order)

    async def _refund(self, request: Request) -> Response:
        return await self._handle(request, self._create_refund)

    async def _query_refund(self, request: Request) -> Response:
        return await self._handle(request, self._find_refund)

    async def _certificates(self, request: Request) -> Response:
        return await self._handle(request, self._list_certificates)

    async def _tradebill(self, request: Request) -> Response:
        return await self._handle(request, self._make_trade_bill)

    def _make_trade_bill(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        query = request.query_params
        try:
            day = date.fromisoformat(query.get("bill_date", ""))
        except ValueError:
            raise WeChatPayError(400, "PARAM_ERROR", "bill_date 格式应为 YYYY-MM-DD") from None
        if query.get("bill_type", "ALL") != "ALL":
            raise WeChatPayError(400, "PARAM_ERROR", "本模拟只提供 bill_type=ALL 的账单")
        tar_type = query.get("tar_type")
        if tar_type not in (None, "GZIP"):
            raise WeChatPayError(400, "PARAM_ERROR", "tar_type 只能是 GZIP")
        rows = self.trade_bill_rows(day)
        if not rows:
            raise WeChatPayError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        raw = trade_bill(rows)
        token = secrets.token_urlsafe(24)
        served = gzip.compress(raw) if tar_type == "GZIP" else raw
        if self.corrupt_bills:
            served = gzip.compress(raw.replace(b"`", b"'", 1)) if tar_type == "GZIP" else raw[:-1]
        self._bill_files[token] = served
        return 200, {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(raw, usedforsecurity=False).hexdigest(),
            "download_url": f"{self.api_base}/v3/billdownload/file?token={token}",
        }

    async def _bill_file(self, request: Request) -> Response:
        """A bill file: the request is checked as every request is; the answer is the file, unsigned."""
        problem = self._check_authorization(request, await request.body())
        if problem is not None:
            self.bad_signatures += 1
            return self._error(WeChatPayError(401, "SIGN_ERROR", problem))
        self.calls.append((request.method, f"{request.url.path}?{request.url.query}"))
        if self.fail_with is not None:
            return self._error(WeChatPayError(*self.fail_with))
        served = self._bill_files.get(request.query_params.get("token", ""))
        if served is None:
            return self._error(WeChatPayError(400, "INVALID_REQUEST", "下载地址已失效"))
        return Response(served, media_type="application/octet-stream")

    def _create_order(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind = request.path_params["kind"]
        if kind not in TRADE_TYPES:
            raise WeChatPayError(404, "NOT_FOUND", "无效的请求地址")
        if data.get("appid") != self.appid:
            raise WeChatPayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if data.get("mchid") != self.mchid:
            raise WeChatPayError(400, "MCH_NOT_EXISTS", "商户号不存在")
        out_trade_no = data.get("out_trade_no")
        if (
            not isinstance(out_trade_no, str)
            or not 6 <= len(out_trade_no) <= 32
            or set(out_trade_no) - OUT_NO_CHARS
        ):
            raise WeChatPayError(400, "PARAM_ERROR", "out_trade_no 格式有误")
        text = data.get("description")
        if not isinstance(text, str) or not 1 <= len(text) <= 127:
            raise WeChatPayError(400, "PARAM_ERROR", "description 长度应为 1 到 127")
        notify_url = data.get("notify_url")
        if (
            not isinstance(notify_url, str)
            or not notify_url.startswith(("https://", "http://"))
            or "?" in notify_url
        ):
            # (WeChat also requires HTTPS on a public domain; tests notify through loopback)
            raise WeChatPayError(400, "PARAM_ERROR", "notify_url 必须是不带参数的 URL")
        amount = data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        currency = amount.get("currency", "CNY") if isinstance(amount, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise WeChatPayError(400, "PARAM_ERROR", "amount.total 必须是正整数, 单位为分")
        if currency != "CNY":
            raise WeChatPayError(400, "PARAM_ERROR", "amount.currency 只能是 CNY")
        expires = None
        if "time_expire" in data:
            try:
                expires = datetime.fromisoformat(str(data["time_expire"]))
            except ValueError:
                raise WeChatPayError(400, "PARAM_ERROR", "time_expire 格式有误") from None
            if expires.tzinfo is None:
                raise WeChatPayError(400, "PARAM_ERROR", "time_expire 须带时区")
        payer = data.get("payer")
        openid = payer.get("openid") if isinstance(payer, dict) else None
        if kind == "jsapi" and not (isinstance(openid, str) and openid):
            raise WeChatPayError(400, "PARAM_ERROR", "JSAPI 下单 payer.openid 必填")
        scene = data.get("scene_info")
        client_ip = scene.get("payer_client_ip") if isinstance(scene, dict) else None
        h5_info = scene.get("h5_info") if isinstance(scene, dict) else None
        if kind == "h5" and not (
            isinstance(client_ip, str) and client_ip and isinstance(h5_info, dict) and h5_info.get("type")
        ):
            raise WeChatPayError(
                400, "PARAM_ERROR", "H5 下单 scene_info.payer_client_ip 与 h5_info.type 必填"
            )
        existing = self.payments.get(out_trade_no)
        if existing is not None:
            if existing.request != data or existing.trade_type != TRADE_TYPES[kind]:
                raise WeChatPayError(400, "INVALID_REQUEST", "201 商户订单号重复")
            if existing.trade_state != "NOTPAY":
                raise WeChatPayError(
                    400, "ORDERPAID" if existing.trade_state != "CLOSED" else "ORDER_CLOSED", "订单状态有误"
                )
            payment = existing
        else:
            payment = WeChatPayment(
                out_trade_no=out_trade_no,
                trade_type=TRADE_TYPES[kind],
                request=data,
                amount=total,
                currency=currency,
                description=text,
                notify_url=notify_url,
                time_expire=expires,
                payer_openid=openid if isinstance(openid, str) else None,
                client_ip=client_ip if isinstance(client_ip, str) else None,
                prepay_id="wx" + datetime.now(BEIJING).strftime("%d%H%M%S") + secrets.token_hex(12),
            )
            self.payments[out_trade_no] = payment
        assert payment.prepay_id is not None
        if kind == "native":
            answer = {"code_url": f"weixin://wxpay/bizpayurl?pr={payment.prepay_id[-10:]}"}
        elif kind == "h5":
            answer = {
                "h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb"
                f"?prepay_id={payment.prepay_id}&package={secrets.randbelow(10**10)}"
            }
        else:
            answer = {"prepay_id": payment.prepay_id}
        self.create_answers.append(answer)
        return 200, answer

    def _known_order(self, request: Request) -> WeChatPayment:
        payment = self.payments.get(request.path_params["no"])
        if payment is None:
            raise WeChatPayError(404, "ORDER_NOT_EXIST", "订单不存在")
        return payment

    def _query_order(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if request.query_params.get("mchid") != self.mchid:
            raise WeChatPayError(400, "PARAM_ERROR", "mchid 有误")
        return 200, self.transaction(self._known_order(request))

    def _close_order(self, request: Request, data: dict[str, Any]) -> tuple[int, None]:
        if data.get("mchid") != self.mchid:
            raise WeChatPayError(400, "PARAM_ERROR", "mchid 有误")
        payment = self._known_order(request)
        if payment.trade_state in ("SUCCESS", "REFUND"):
            raise WeChatPayError(400, "ORDERPAID", "订单已支付")
        payment.trade_state = "CLOSED"
        return 204, None

    def _create_refund(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        out_refund_no = data.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not 1 <= len(out_refund_no) <= 64:
            raise WeChatPayError(400, "PARAM_ERROR", "out_refund_no 格式有误")
        amount = data.get("amount")
        fields = amount if isinstance(amount, dict) else {}
        refund, total, currency = fields.get("refund"), fields.get("total"), fields.get("currency")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (refund, total)):
            raise WeChatPayError(400, "PARAM_ERROR", "amount.refund 与 amount.total 必须是正整数, 单位为分")
        assert isinstance(refund, int) and isinstance(total, int)
        if currency != "CNY":
            raise WeChatPayError(400, "PARAM_ERROR", "amount.currency 只能是 CNY")
        by_transaction = data.get("transaction_id")
        payment = next(
            (
                p
                for p in self.payments.values()
                if (by_transaction and p.transaction_id == by_transaction)
                or (not by_transaction and p.out_trade_no == data.get("out_trade_no"))
            ),
            None,
        )
        if payment is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = self.refunds.get(out_refund_no)
        if existing is not None:
            if (existing.out_trade_no, existing.refund, existing.total) != (
                payment.out_trade_no,
                refund,
                total,
            ):
                raise WeChatPayError(400, "INVALID_REQUEST", "退款单号已存在且与之前请求的参数不一致")
            return 200, self._refund_json(existing)
        if payment.trade_state not in ("SUCCESS", "REFUND") or payment.transaction_id is None:
            raise WeChatPayError(400, "INVALID_REQUEST", "订单未支付, 不能退款")
        if total != payment.amount:
            raise WeChatPayError(400, "INVALID_REQUEST", "订单金额或退款金额与之前请求不一致")
        if refund + self.refunded(payment.out_trade_no) > payment.amount:
            raise WeChatPayError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        notify_url = data.get("notify_url")
        new = WeChatRefund(
            out_refund_no=out_refund_no,
            out_trade_no=payment.out_trade_no,
            transaction_id=payment.transaction_id,
            refund_id="50" + "".join(secrets.choice("0123456789") for _ in range(27)),
            refund=refund,
            total=total,
            currency=currency,
            reason=data.get("reason"),
            notify_url=notify_url if isinstance(notify_url, str) else None,
            request=data,
            status=self.refund_answer_status,
        )
        if new.status == "SUCCESS":
            new.success_time = datetime.now(UTC)
        self.refunds[out_refund_no] = new
        payment.trade_state = "REFUND"
        return 200, self._refund_json(new)

    def _find_refund(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refund = self.refunds.get(request.path_params["no"])
        if refund is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self._refund_json(refund)

    def _refund_json(self, refund: WeChatRefund) -> dict[str, Any]:
        value: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.transaction_id,
            "out_trade_no": refund.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339(datetime.now(UTC)),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total,
                "refund": refund.refund,
                "payer_total": refund.total,
                "payer_refund": refund.refund,
                "settlement_refund": refund.refund,
                "settlement_total": refund.total,
                "discount_refund": 0,
                "currency": refund.currency,
            },
        }
        if refund.success_time is not None:
            value["success_time"] = rfc3339(refund.success_time)
        return value

    def _list_certificates(self, request: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.certificate_downloads += 1
        certificate = self.platform_certificate
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return 200, {
            "data": [
                {
                    "serial_no": f"{certificate.serial_number:X}",
                    "effective_time": rfc3339(certificate.not_valid_before_utc),
                    "expire_time": rfc3339(certificate.not_valid_after_utc),
                    "encrypt_certificate": aes_gcm_encrypt(
                        self.apiv3_key, pem, associated_data="certificate"
                    ),
                }
            ]
        }
