"""WeChat Pay API v3 (微信支付) as a payment ``Provider``, through the maintained SDK ``wechatpayv3``.

Channels: Native (a QR ``code_url`` for a desktop screen), JSAPI (inside WeChat's browser: the parameters
``WeixinJSBridge.invoke("getBrandWCPayRequest", ...)`` takes, signed with the merchant key) and H5 (another
mobile browser: an ``h5_url``, with our return page as its ``redirect_url``). Our ``payment_id`` is WeChat's
``out_trade_no``, our ``refund_id`` its ``out_refund_no``; amounts are 分 both sides.

**Keys.** The merchant signs every request with its API private key (``apiclient_key.pem``, PKCS#8) and
certificate serial. WeChat signs every answer and notification with its platform key, which this side
knows in one of two ways:

- "WeChat Pay public key" mode (微信支付公钥, ``wechatpay_platform_public_key_file`` and ``_id``): the key is
  a file, its id (``PUB_KEY_ID_...``) is the ``Wechatpay-Serial`` WeChat signs with;
- platform-certificate mode (neither set): the certificates are read from ``wechatpay_platform_cert_dir``,
  or, when it holds no valid one, downloaded by the SDK from ``/v3/certificates`` (decrypted with the APIv3
  key, then kept in that directory) — **at construction, blocking**: construct the provider at start-up
  or in a thread. A platform key rotated later is downloaded by the SDK on the first answer signed by the
  new serial (a notification signed by it before then is refused, and WeChat delivers it again; the SDK
  empties its list before refilling it, so one arriving during that download is refused too).

**What is the SDK's, what is added here.** Requests, their signatures, the verification of every answer,
certificate downloads, notification signature checks and AES-256-GCM decryption are the SDK's. The SDK
keeps the API base in ``Core._gate_way`` and sets it to the production host in its constructor, which in
certificate mode may download at once: ``_Core`` sets it from ``wechatpay_api_base`` before anything is
fetched. Added, because the SDK lacks them: a notification's ``Wechatpay-Timestamp`` must be within
``webhook_tolerance_seconds`` of now; its ``Wechatpay-Serial`` must be the configured public key id or the
serial of a certificate already known *before* the SDK sees it (the SDK would download certificates for
an unknown serial: ``verify`` never touches the network, and a forged serial costs nothing); the whole
of each call is bounded by ``payment_provider_timeout_seconds`` (the SDK's ``requests`` timeout is per
socket operation); errors become ``ProviderError`` with WeChat's code and message.

**States.** ``trade_state`` (query, notification): SUCCESS → succeeded; NOTPAY, USERPAYING → pending;
CLOSED, REVOKED → closed; PAYERROR → failed; REFUND (paid, then refunded in part or whole) → succeeded.
Refund ``status``: SUCCESS → succeeded; PROCESSING → processing; CLOSED, ABNORMAL → failed.

**Notifications.** ``TRANSACTION.SUCCESS`` → a ``PaymentNotice`` (amount, currency, transaction id as
WeChat reports them; the service checks them); ``REFUND.SUCCESS``, ``REFUND.ABNORMAL``, ``REFUND.CLOSED``
→ a ``RefundNotice``; any other event type is acknowledged with no notice. The event id is the
notification's ``id`` (WeChat redelivers with the same one). WeChat takes an HTTP 200 or 204 with no body
as received (``ACCEPTED``); anything else, e.g. ``rejection_reply``, makes it deliver again later.

**Statement** (``statement``, for ``livecart reconcile-payments``). The trade bill of a Beijing day:
``GET /v3/bill/tradebill?bill_date=&bill_type=ALL&tar_type=GZIP`` (the SDK's ``trade_bill``; a signed
answer) gives ``download_url``, ``hash_type`` ``SHA1`` and ``hash_value``; the file is fetched with the
merchant's signature (the SDK's ``download_bill``; WeChat does not sign a file, its SHA-1 is the check, of the
file as it is once un-gzipped) and read by ``trade_bill_lines``: WeChat's CSV, a header line, one row per
trade whose every field starts with a backtick, amounts in yuan with two decimals (read exactly, as
``Decimal``), then a summary header and row (its count of trades is checked against the rows). A
``SUCCESS`` row is a payment of 商户订单号 for 订单金额 (what the buyer was asked, our ``amount``;
应结订单金额 leaves out vouchers WeChat does not settle, so it is read only from a bill without
订单金额); a ``REFUND`` row a refund of 商户退款单号 for 申请退款金额 (what we asked back; 退款金额
likewise only when the bill lacks it), its 退款状态 its status; ``REVOKED`` rows moved no money. A day
without a bill (400 ``NO_STATEMENT_EXIST``) is an empty statement.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from wechatpayv3 import WeChatPay as SdkWeChatPay
from wechatpayv3 import WeChatPayType
from wechatpayv3.core import Core

from base.settings import Settings
from shop.payments.provider import (
    Channel,
    Checkout,
    Notification,
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
from shop.payments.statements import StatementLine

#: WeChat's answer to a received notification: 200 or 204, no body needed.
ACCEPTED = Reply(status=204, body=b"")

TRADE_STATES: dict[str, PaymentState] = {
    "SUCCESS": PaymentState.SUCCEEDED,
    "REFUND": PaymentState.SUCCEEDED,  # it was paid; a refund is told apart, by refund notices
    "NOTPAY": PaymentState.PENDING,
    "USERPAYING": PaymentState.PENDING,
    "CLOSED": PaymentState.CLOSED,
    "REVOKED": PaymentState.CLOSED,
    "PAYERROR": PaymentState.FAILED,
}

REFUND_STATES: dict[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PROCESSING,
    "CLOSED": RefundState.FAILED,
    "ABNORMAL": RefundState.FAILED,
}

PAYMENT_EVENT = "TRANSACTION.SUCCESS"
REFUND_EVENTS = frozenset({"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"})

#: The signature type WeChat uses with RSA keys (the SDK refuses any other).
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
#: The notification headers, as the SDK looks them up.
TIMESTAMP, NONCE, SIGNATURE, SERIAL = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
)
SIGNATURE_TYPE_HEADER = "Wechatpay-Signature-Type"

#: WeChat's ``description`` is at most 127 characters; a refund ``reason`` at most 80.
MAX_DESCRIPTION = 127
MAX_REFUND_REASON = 80
#: ``out_trade_no``: 6 to 32 of digits, letters, ``_-|*``; ``out_refund_no``: 1 to 64, ``@`` allowed too.
OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
#: The APIv3 key is an AES-256 key: 32 bytes.
APIV3_KEY_BYTES = 32
#: WeChat's time zone: ``time_expire`` is written in it, as its documentation shows.
BEIJING = timezone(timedelta(hours=8))

#: Error codes with a meaning here. ``close``: the buyer has paid; nothing left to close.
ORDER_PAID = "ORDERPAID"
CLOSE_DONE = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "ORDER_CLOSED"})

CHANNEL_TYPES: dict[Channel, WeChatPayType] = {
    Channel.NATIVE: WeChatPayType.NATIVE,
    Channel.JSAPI: WeChatPayType.JSAPI,
    Channel.H5: WeChatPayType.H5,
}


# -- pure helpers -----------------------------------------------------------------------------------------


def time_expire(expires_ms: int) -> str:
    """``expires_ms`` as WeChat's ``time_expire`` (RFC 3339 in Beijing time, whole seconds rounded down, so
    WeChat stops taking money no later than the reservation ends)."""
    moment = datetime.fromtimestamp(expires_ms // 1000, tz=UTC).astimezone(BEIJING)
    return moment.isoformat(timespec="seconds")


def description(text: str, fallback: str) -> str:
    """What is bought, as WeChat takes it: stripped, at most 127 characters, never empty."""
    return (text.strip() or fallback)[:MAX_DESCRIPTION]


def h5_url_with_return(h5_url: str, return_url: str) -> str:
    """WeChat sends the buyer back to ``redirect_url`` after paying in H5 when it is appended to the
    ``h5_url`` (URL-encoded), as its H5 documentation describes."""
    if not return_url:
        return h5_url
    separator = "&" if "?" in h5_url else "?"
    return f"{h5_url}{separator}redirect_url={quote(return_url, safe='')}"


def jsapi_message(app_id: str, timestamp: str, nonce: str, package: str) -> list[str]:
    """The lines ``paySign`` signs (``appId\\ntimeStamp\\nnonceStr\\npackage\\n``), in the SDK's list form."""
    return [app_id, timestamp, nonce, package]


def payment_state(trade_state: object) -> PaymentState | None:
    return TRADE_STATES.get(trade_state) if isinstance(trade_state, str) else None


def refund_state(status: object) -> RefundState | None:
    return REFUND_STATES.get(status) if isinstance(status, str) else None


def rejection_reply(reason: str) -> Reply:
    """The answer WeChat documents for a notification not taken (it delivers it again later)."""
    body = json.dumps({"code": "FAIL", "message": reason}, ensure_ascii=False).encode()
    return Reply(status=401, body=body)


#: The trade bill's columns read here (WeChat's names; others, and their order, are not relied on).
TRADE_TIME = "交易时间"
TRANSACTION_ID = "微信订单号"
OUT_TRADE_NO_COLUMN = "商户订单号"
TRADE_STATE = "交易状态"
ORDER_AMOUNT = "订单金额"
SETTLEMENT_AMOUNT = "应结订单金额"
REFUND_ID = "微信退款单号"
OUT_REFUND_NO_COLUMN = "商户退款单号"
REFUND_STATUS = "退款状态"
REQUESTED_REFUND = "申请退款金额"
REFUND_AMOUNT = "退款金额"
SUMMARY_HEADER = "总交易单数"
#: WeChat's answer for a day that has no bill.
NO_STATEMENT = "NO_STATEMENT_EXIST"
#: 退款状态 in a trade bill, as statuses of ``StatementLine``.
BILL_REFUND_STATES = {"SUCCESS": "succeeded", "PROCESSING": "processing"}


def fen(yuan: str) -> int:
    """A bill amount (yuan, two decimals, e.g. ``12.34``) as an exact integer of 分; ``ValueError`` for
    anything else (a third decimal would be money this side cannot hold)."""
    try:
        value = Decimal(yuan) * 100
    except InvalidOperation:
        raise ValueError(f"not an amount: {yuan!r}") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"not an amount in yuan with at most two decimals: {yuan!r}")
    return int(value)


def trade_bill_lines(text: str) -> list[StatementLine]:
    """WeChat Pay's trade bill (``bill_type=ALL``) as statement lines (module docstring); ``ValueError``
    saying what is wrong when it is not in WeChat's format or its summary does not add up."""
    rows = [row for row in csv.reader(text.lstrip("\ufeff").splitlines()) if any(f.strip() for f in row)]
    if not rows:
        raise ValueError("the trade bill is empty (not even a header)")
    header = [name.strip() for name in rows[0]]
    column = {name: i for i, name in enumerate(header)}
    for needed in (TRADE_TIME, TRANSACTION_ID, OUT_TRADE_NO_COLUMN, TRADE_STATE, OUT_REFUND_NO_COLUMN):
        if needed not in column:
            raise ValueError(f"the trade bill has no column {needed}")
    order_amount = ORDER_AMOUNT if ORDER_AMOUNT in column else SETTLEMENT_AMOUNT
    refund_amount = REQUESTED_REFUND if REQUESTED_REFUND in column else REFUND_AMOUNT
    for needed in (order_amount, refund_amount):
        if needed not in column:
            raise ValueError(f"the trade bill has no column {needed}")
    body = rows[1:]
    at = next((i for i, row in enumerate(body) if row and row[0].strip() == SUMMARY_HEADER), None)
    if at is None or at + 1 >= len(body):
        raise ValueError("the trade bill has no summary (总交易单数 and its row)")
    trades, summary_names, summary = body[:at], body[at], body[at + 1]
    lines: list[StatementLine] = []
    for number, row in enumerate(trades, start=2):
        if len(row) != len(header) or not all(field.startswith("`") for field in row):
            raise ValueError(f"trade bill line {number} is not {len(header)} fields each starting with `")
        fields = dict(zip(header, (field[1:].strip() for field in row), strict=True))
        at_ms = _beijing_ms(fields[TRADE_TIME])
        state = fields[TRADE_STATE]
        if state == "SUCCESS":
            amount = fen(fields[order_amount])
            lines.append(
                StatementLine(
                    kind="payment",
                    payment_id=fields[OUT_TRADE_NO_COLUMN],
                    refund_id=None,
                    amount=amount,
                    provider_ref=fields[TRANSACTION_ID] or None,
                    at_ms=at_ms,
                )
            )
        elif state == "REFUND":
            amount = fen(fields[refund_amount])
            lines.append(
                StatementLine(
                    kind="refund",
                    payment_id=fields[OUT_TRADE_NO_COLUMN],
                    refund_id=fields[OUT_REFUND_NO_COLUMN],
                    amount=amount,
                    provider_ref=fields.get(REFUND_ID) or None,
                    at_ms=at_ms,
                    status=BILL_REFUND_STATES.get(fields.get(REFUND_STATUS, ""), "failed"),
                )
            )
        elif state != "REVOKED":
            raise ValueError(f"trade bill line {number} has an unknown 交易状态 {state!r}")
    _check_summary(summary_names, summary, count=len(trades))
    return lines


def _check_summary(names: list[str], row: list[str], *, count: int) -> None:
    """The summary's 总交易单数 is the number of trade rows (a cut-short file that still hashes right, e.g.
    one WeChat wrote short, is refused). Its sums are not checked: which rows each one counts is not
    documented precisely enough to hold WeChat to it."""
    totals = dict(zip((n.strip() for n in names), (f.strip().lstrip("`") for f in row), strict=False))
    try:
        stated = int(totals.get(SUMMARY_HEADER, ""))
    except ValueError:
        raise ValueError("the trade bill's summary has no 总交易单数") from None
    if stated != count:
        raise ValueError(f"the trade bill's summary counts {stated} trades, its rows {count}")


def _beijing_ms(text: str) -> int:
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise ValueError(f"not a trade time (YYYY-MM-DD HH:MM:SS): {text!r}") from None
    return int(moment.timestamp()) * 1000


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


# -- the SDK, pointed at the API base ---------------------------------------------------------------------


class _Core(Core):  # type: ignore[misc]
    """wechatpayv3's ``Core`` with ``_gate_way`` (where every request goes) set to the API base before the
    first request: the stock constructor sets the production host and, in platform-certificate mode, may
    download the certificates right away from there."""

    def __init__(self, *, api_base: str, **kwargs: Any) -> None:
        self._api_base = api_base
        super().__init__(**kwargs)
        self._gate_way = api_base

    def _init_certificates(self) -> None:
        self._gate_way = self._api_base
        super()._init_certificates()


class _Client(SdkWeChatPay):  # type: ignore[misc]
    """The SDK's ``WeChatPay`` (``pay``, ``query``, ``close``, ``refund``, ``query_refund``, ``sign``,
    ``callback``) over ``_Core``. ``WeChatPay.__init__`` would build a stock ``Core`` first, so this sets
    the attributes it sets (wechatpayv3 2.x), for a direct (not partner) merchant."""

    def __init__(self, core: _Core, *, mchid: str, appid: str) -> None:
        self._type = WeChatPayType.NATIVE  # (each ``pay`` names its own type)
        self._mchid = mchid
        self._appid = appid
        self._notify_url = None  # (each call names its own)
        self._partner_mode = False
        self._core = core


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code") or "")

    def refusal(self, what: str) -> ProviderError:
        message = str(self.body.get("message") or "")[:200]
        reason = f"{self.code}: {message}" if self.code else f"HTTP {self.status}"
        return ProviderError(f"WeChat Pay refused to {what} ({reason})")


def _read(path: Path | None, setting: str) -> str:
    if path is None:
        raise ValueError(f"WeChat Pay needs LIVECART_{setting.upper()}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"LIVECART_{setting.upper()}: cannot read {path} ({type(exc).__name__})") from None


class WeChatPay:
    """WeChat Pay API v3 for a direct merchant (普通商户), from the ``wechatpay_*`` settings."""

    name = "wechat"
    channels = (Channel.NATIVE, Channel.JSAPI, Channel.H5)

    def __init__(self, settings: Settings) -> None:
        mchid = settings.wechatpay_mchid
        appid = settings.wechatpay_appid
        serial = settings.wechatpay_merchant_serial
        key = settings.wechatpay_apiv3_key.get_secret_value() if settings.wechatpay_apiv3_key else ""
        for setting, value in (
            ("wechatpay_mchid", mchid),
            ("wechatpay_appid", appid),
            ("wechatpay_merchant_serial", serial),
            ("wechatpay_apiv3_key", key),
        ):
            if not value:
                raise ValueError(f"WeChat Pay needs LIVECART_{setting.upper()}")
        assert mchid and appid and serial  # (checked just above; for the type checker)
        if len(key.encode()) != APIV3_KEY_BYTES:
            raise ValueError("LIVECART_WECHATPAY_APIV3_KEY must be the 32-character APIv3 key")
        private_key = _read(settings.wechatpay_merchant_key_file, "wechatpay_merchant_key_file")
        public_key_file = settings.wechatpay_platform_public_key_file
        public_key_id = settings.wechatpay_platform_public_key_id or None
        if (public_key_file is None) != (public_key_id is None):
            raise ValueError(
                "WeChat Pay public key mode needs both LIVECART_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE and "
                "LIVECART_WECHATPAY_PLATFORM_PUBLIC_KEY_ID (neither: platform-certificate mode)"
            )
        public_key = None
        if public_key_file is not None:
            public_key = _read(public_key_file, "wechatpay_platform_public_key_file")
        cert_dir = settings.wechatpay_platform_cert_dir
        if public_key is None and cert_dir is not None and cert_dir.exists() and not cert_dir.is_dir():
            raise ValueError(f"LIVECART_WECHATPAY_PLATFORM_CERT_DIR: {cert_dir} is not a directory")

        self._timeout = settings.payment_provider_timeout_seconds
        self._tolerance = settings.webhook_tolerance_seconds
        self._appid = appid
        try:
            core = _Core(
                api_base=settings.wechatpay_api_base.rstrip("/"),
                mchid=mchid,
                cert_serial_no=serial,
                private_key=private_key,
                apiv3_key=key,
                cert_dir=None if cert_dir is None else str(cert_dir),
                timeout=(self._timeout, self._timeout),
                public_key=public_key,
                public_key_id=public_key_id,
            )
        except Exception as exc:  # the SDK raises bare ``Exception`` for each of these
            raise ValueError(f"WeChat Pay set-up refused: {self._setup_problem(exc)}") from None
        if not isinstance(core._private_key, RSAPrivateKey):
            raise ValueError("LIVECART_WECHATPAY_MERCHANT_KEY_FILE must hold an RSA private key")
        if public_key is not None and not isinstance(core._public_key, RSAPublicKey):
            raise ValueError("LIVECART_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE must hold an RSA public key")
        self._core = core
        self._sdk = _Client(core, mchid=mchid, appid=appid)

    @staticmethod
    def _setup_problem(exc: Exception) -> str:
        text = str(exc)
        if "private key" in text:
            return "LIVECART_WECHATPAY_MERCHANT_KEY_FILE is not a PEM private key (apiclient_key.pem, PKCS#8)"
        if "public key" in text:
            return "LIVECART_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE is not a PEM public key"
        if "platform certificate" in text:
            return (
                "no WeChat Pay platform certificate: none valid in LIVECART_WECHATPAY_PLATFORM_CERT_DIR, and "
                "none could be downloaded and decrypted (check the API base, the merchant key and serial, "
                "and the APIv3 key)"
            )
        return f"{type(exc).__name__}: {text[:200]}"

    # -- calls ------------------------------------------------------------------------------------------

    async def _call(self, what: str, call: Callable[[], tuple[int, Any]]) -> _Answer:
        """Run one SDK call in a thread, the whole of it bounded by the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                status, content = await asyncio.to_thread(call)
        except (TimeoutError, requests.Timeout):
            raise ProviderError(
                f"WeChat Pay did not answer (to {what}) within {self._timeout:g} s: timed out"
            ) from None
        except requests.ConnectionError:
            raise ProviderError(f"WeChat Pay could not be reached (to {what}): connection failed") from None
        except requests.RequestException as exc:
            raise ProviderError(
                f"WeChat Pay could not be reached (to {what}): {type(exc).__name__}"
            ) from None
        except Exception as exc:  # the SDK's own: "failed to verify the signature", a missing field ...
            raise ProviderError(f"WeChat Pay call to {what} failed: {str(exc)[:200]}") from None
        body: dict[str, Any] = {}
        if content:
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise ProviderError(
                    f"WeChat Pay answered {status} (to {what}) with a body that is no JSON object"
                )
            body = parsed
        answer = _Answer(status, body)
        if status >= 500:
            raise answer.refusal(what)
        return answer

    async def create(self, request: PaymentRequest) -> Checkout:
        pay_type = CHANNEL_TYPES.get(request.channel)
        if pay_type is None:
            raise ProviderError(f"WeChat Pay has no {request.channel} channel")
        if not OUT_TRADE_NO.fullmatch(request.payment_id):
            raise ProviderError("WeChat Pay takes an out_trade_no of 6 to 32 letters, digits or _-|*")
        payer = None
        if request.channel is Channel.JSAPI:
            if not request.payer_openid:
                raise ProviderError("WeChat Pay JSAPI needs the buyer's openid (sign in with WeChat)")
            payer = {"openid": request.payer_openid}
        scene_info = None
        if request.channel is Channel.H5:
            scene_info = {"payer_client_ip": request.client_ip, "h5_info": {"type": "Wap"}}
        answer = await self._call(
            "create the payment",
            lambda: self._sdk.pay(
                description=description(request.description, request.payment_id),
                out_trade_no=request.payment_id,
                amount={"total": request.amount, "currency": request.currency},
                payer=payer,
                time_expire=time_expire(request.expires_ms),
                scene_info=scene_info,
                notify_url=request.notify_url,
                pay_type=pay_type,
            ),
        )
        if answer.status != 200:
            raise answer.refusal("create the payment")
        if request.channel is Channel.NATIVE:
            return Checkout(data={"code_url": self._field(answer, "code_url")})
        if request.channel is Channel.H5:
            h5_url = self._field(answer, "h5_url")
            return Checkout(data={"h5_url": h5_url_with_return(h5_url, request.return_url)})
        prepay_id = self._field(answer, "prepay_id")
        return Checkout(data={"jsapi": self._jsapi_parameters(prepay_id)}, provider_ref=prepay_id)

    @staticmethod
    def _field(answer: _Answer, name: str) -> str:
        value = _text(answer.body.get(name))
        if value is None:
            raise ProviderError(f"WeChat Pay's answer has no {name}")
        return value

    def _jsapi_parameters(self, prepay_id: str) -> dict[str, str]:
        """What ``getBrandWCPayRequest`` takes; ``paySign`` is the merchant key's RSA-SHA256 signature."""
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        signature = self._sdk.sign(jsapi_message(self._appid, timestamp, nonce, package))
        return {
            "appId": self._appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": signature,
        }

    async def query(self, payment_id: str) -> PaymentNotice:
        if not OUT_TRADE_NO.fullmatch(payment_id):
            raise ProviderError("WeChat Pay takes an out_trade_no of 6 to 32 letters, digits or _-|*")
        answer = await self._call("query the payment", lambda: self._sdk.query(out_trade_no=payment_id))
        if answer.status != 200:
            raise answer.refusal("query the payment")
        notice = self._payment_notice(answer.body, event_id=None)
        if notice is None:
            raise ProviderError(
                f"WeChat Pay's answer has an unknown trade_state {answer.body.get('trade_state')!r}"
            )
        return notice

    async def close(self, payment_id: str) -> None:
        """Close it at WeChat; done too when WeChat has no such order or it is closed already (nobody can
        pay it). ``PaymentAlreadyPaid`` when WeChat answers ``ORDERPAID``."""
        if not OUT_TRADE_NO.fullmatch(payment_id):
            raise ProviderError("WeChat Pay takes an out_trade_no of 6 to 32 letters, digits or _-|*")
        answer = await self._call("close the payment", lambda: self._sdk.close(out_trade_no=payment_id))
        if 200 <= answer.status < 300 or answer.code in CLOSE_DONE:
            return
        if answer.code == ORDER_PAID:
            raise PaymentAlreadyPaid(f"WeChat Pay payment {payment_id} is paid already")
        raise answer.refusal("close the payment")

    async def refund(self, request: RefundRequest) -> RefundNotice:
        if not OUT_REFUND_NO.fullmatch(request.refund_id):
            raise ProviderError("WeChat Pay takes an out_refund_no of 1 to 64 letters, digits or _-|*@")
        answer = await self._call(
            "refund",
            lambda: self._sdk.refund(
                out_refund_no=request.refund_id,
                amount={
                    "refund": request.amount,
                    "total": request.payment_amount,
                    "currency": request.currency,
                },
                transaction_id=request.provider_ref,
                out_trade_no=None if request.provider_ref else request.payment_id,
                reason=request.reason.strip()[:MAX_REFUND_REASON] or None,
                notify_url=request.notify_url,
            ),
        )
        if answer.status != 200:
            raise answer.refusal("refund")
        return self._refund_notice(answer.body, event_id=None, prefix="refund")

    async def query_refund(self, refund_id: str, *, payment_id: str | None = None) -> RefundNotice:
        if not OUT_REFUND_NO.fullmatch(refund_id):
            raise ProviderError("WeChat Pay takes an out_refund_no of 1 to 64 letters, digits or _-|*@")
        answer = await self._call("query the refund", lambda: self._sdk.query_refund(out_refund_no=refund_id))
        if answer.status != 200:
            raise answer.refusal("query the refund")
        return self._refund_notice(answer.body, event_id=None, prefix="query")

    # -- the trade bill -----------------------------------------------------------------------------------

    statement_zone = BEIJING

    async def statement(self, day: date) -> list[StatementLine]:
        """The trade bill of ``day`` (Beijing time), fetched, checked and read (module docstring)."""
        what = f"give the trade bill of {day.isoformat()}"
        answer = await self._call(
            what, lambda: self._sdk.trade_bill(bill_date=day.isoformat(), bill_type="ALL", tar_type="GZIP")
        )
        if answer.status == 400 and answer.code == NO_STATEMENT:
            return []
        if answer.status != 200:
            raise answer.refusal(what)
        url = self._field(answer, "download_url")
        hash_type, hash_value = answer.body.get("hash_type"), self._field(answer, "hash_value")
        if hash_type != "SHA1":
            raise ProviderError(f"WeChat Pay's trade bill comes with a {hash_type!r} hash, not SHA1")
        if not url.startswith(self._core._gate_way + "/"):
            # (the SDK would sign and send it to the API base with the whole URL as the path)
            raise ProviderError("WeChat Pay's trade bill download_url is not on the API base")
        raw = await self._download(url)
        if raw[:2] == b"\x1f\x8b":  # gzip's magic: tar_type=GZIP
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                raise ProviderError("WeChat Pay's trade bill is not a whole gzip file") from None
        if hashlib.sha1(raw, usedforsecurity=False).hexdigest() != hash_value.lower():
            raise ProviderError("WeChat Pay's trade bill does not match its SHA1 hash_value")
        try:
            return trade_bill_lines(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderError(f"WeChat Pay's trade bill does not read: {str(exc)[:200]}") from None

    async def _download(self, url: str) -> bytes:
        """The bill file at ``url`` (the SDK signs the request and checks nothing of the answer)."""
        content = bytearray()

        def download() -> tuple[int, Any]:
            status, body = self._sdk.download_bill(url)
            if status != 200:
                return status, body  # an error answer: JSON, read by ``_call``
            content.extend(body if isinstance(body, bytes) else body.encode())
            return status, None  # a file, not JSON

        answer = await self._call("download the trade bill", download)
        if answer.status != 200:
            raise answer.refusal("download the trade bill")
        return bytes(content)

    # -- what WeChat says, as notices -------------------------------------------------------------------

    @staticmethod
    def _payment_notice(transaction: Mapping[str, Any], *, event_id: str | None) -> PaymentNotice | None:
        """A transaction (a query's answer, a notification's resource) as a notice; ``None`` for an unknown
        ``trade_state`` or a transaction without ``out_trade_no``."""
        state = payment_state(transaction.get("trade_state"))
        payment_id = _text(transaction.get("out_trade_no"))
        if state is None or payment_id is None:
            return None
        amount = transaction.get("amount")
        amount = amount if isinstance(amount, dict) else {}
        paid = state is PaymentState.SUCCEEDED
        return PaymentNotice(
            payment_id=payment_id,
            state=state,
            event_id=event_id or f"query:{payment_id}:{state}",
            amount=_whole(amount.get("total")) if paid else None,
            currency=_text(amount.get("currency")) if paid else None,
            provider_ref=_text(transaction.get("transaction_id")),
        )

    @staticmethod
    def _refund_notice(refund: Mapping[str, Any], *, event_id: str | None, prefix: str) -> RefundNotice:
        """A refund (an answer, a notification's resource; its status in ``status`` or ``refund_status``)."""
        status = refund.get("status", refund.get("refund_status"))
        state = refund_state(status)
        refund_id = _text(refund.get("out_refund_no"))
        if state is None or refund_id is None:
            raise ProviderError(f"WeChat Pay's refund has no out_refund_no or an unknown status {status!r}")
        amount = refund.get("amount")
        amount = amount if isinstance(amount, dict) else {}
        error = None
        if state is RefundState.FAILED:
            account = _text(refund.get("user_received_account"))
            error = f"WeChat Pay refund {status}" + (f" (to {account})" if account else "")
        return RefundNotice(
            refund_id=refund_id,
            state=state,
            event_id=event_id or f"{prefix}:{refund_id}:{state}",
            amount=_whole(amount.get("refund")),
            provider_ref=_text(refund.get("refund_id")),
            error=error,
        )

    # -- notifications ------------------------------------------------------------------------------------

    def _known_serial(self, serial: str) -> bool:
        """Whether WeChat signs with ``serial`` as far as this side knows now (no download)."""
        if self._core._public_key_id is not None:
            return bool(serial == self._core._public_key_id)
        if not serial or len(serial) > 64 or any(c not in "0123456789abcdefABCDEF" for c in serial):
            return False
        number = int(serial, 16)
        return any(cert.serial_number == number for cert in list(self._core._certificates))

    def verify(self, headers: Mapping[str, str], body: bytes, *, now_s: int) -> Notification:
        """Check a notification as WeChat documents it (RSA-SHA256 over ``timestamp\\nnonce\\nbody\\n`` with
        the platform key, the SDK's check), decrypt its ``resource`` (AES-256-GCM with the APIv3 key, the
        SDK's), and read it. Raises ``NotificationRejected`` saying what is wrong."""
        given = {name: _header(headers, name).strip() for name in (TIMESTAMP, NONCE, SIGNATURE, SERIAL)}
        for name, value in given.items():
            if not value:
                raise NotificationRejected(f"the notification has no {name} header")
        try:
            timestamp = int(given[TIMESTAMP])
        except ValueError:
            raise NotificationRejected(f"{TIMESTAMP} is not a number of seconds") from None
        if abs(now_s - timestamp) > self._tolerance:
            raise NotificationRejected(
                f"{TIMESTAMP} is {timestamp - now_s:+d} s from now, beyond the {self._tolerance} s tolerance"
            )
        if not self._known_serial(given[SERIAL]):
            raise NotificationRejected(f"{SERIAL} {given[SERIAL][:80]!r} is no WeChat Pay key known here")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NotificationRejected("the notification body is not UTF-8") from None
        # (WeChat sends the type; a sender that leaves it out means the one RSA type there is)
        sdk_headers = {
            **given,
            SIGNATURE_TYPE_HEADER: _header(headers, SIGNATURE_TYPE_HEADER) or SIGNATURE_TYPE,
        }
        try:
            signed = bool(self._core._verify_signature(sdk_headers, text))
        except Exception as exc:  # an unsupported signature type
            raise NotificationRejected(f"the signature cannot be checked: {str(exc)[:120]}") from None
        if not signed:
            raise NotificationRejected("the signature does not verify with the WeChat Pay platform key")
        try:
            data = self._sdk.callback(sdk_headers, text)
        except Exception:  # a body that is not JSON, a ciphertext that is not base64 ...
            raise NotificationRejected(
                "the notification body does not parse or its resource does not decrypt"
            ) from None
        if not isinstance(data, dict):
            raise NotificationRejected(
                "the resource does not decrypt with the APIv3 key (or is not encrypted)"
            )
        return Notification(notices=self._notices(data), reply=ACCEPTED)

    def _notices(self, data: Mapping[str, Any]) -> list[PaymentNotice | RefundNotice]:
        event_id = _text(data.get("id"))
        event_type = _text(data.get("event_type"))
        resource = data.get("resource")
        if event_id is None or event_type is None or not isinstance(resource, dict):
            raise NotificationRejected("the notification has no id, event_type or resource")
        if event_type == PAYMENT_EVENT:
            notice = self._payment_notice(resource, event_id=event_id)
            if notice is None:
                raise NotificationRejected("the transaction has no out_trade_no or an unknown trade_state")
            return [notice]
        if event_type in REFUND_EVENTS:
            try:
                return [self._refund_notice(resource, event_id=event_id, prefix="notify")]
            except ProviderError as exc:
                raise NotificationRejected(str(exc)) from None
        return []
