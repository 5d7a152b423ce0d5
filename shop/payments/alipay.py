"""Alipay (支付宝) as a payment provider: WAP pay (手机网站支付) and page pay (电脑网站支付), through the
maintained ``python-alipay-sdk`` (module ``alipay``), RSA2 only.

Every call is the SDK's: it builds and signs requests with the app's private key (RSA2: SHA256withRSA over
the sorted ``key=value`` pairs), sends them to the gateway and checks each answer's ``sign`` against
Alipay's public key; ``verify`` checks a notification with the SDK's ``verify``. Set-up:

- ``alipay_app_id``: the app's id (``2021...``); ``alipay_private_key_file``: the app's RSA private key
  (PEM, PKCS#1 or PKCS#8, or the bare base64 text Alipay's key tool writes); ``alipay_public_key_file``:
  Alipay's public key (支付宝公钥, from the app's page in Alipay's console), PEM or bare base64.
- ``alipay_api_base``: the gateway (``https://openapi.alipay.com/gateway.do``; the sandbox's, or a test's
  server). The SDK has no option for it: it is set on the client's ``_gateway`` attribute.

What this adds to the SDK, each said where it is done:

- the request ``timestamp`` in Beijing time, as Alipay documents it (the SDK writes the server's local
  time: eight hours off on a UTC server);
- a notification's freshness: its ``notify_time`` is "the time the notification is sent" (Beijing time),
  and Alipay documents each redelivery (up to eight in about 25 hours) as a new sending with the same
  ``notify_id``, so one more than ``webhook_tolerance_seconds`` from now is refused. A redelivery comes
  with a fresh ``notify_time`` and is accepted, and its ``notify_id`` (the event id) makes it a no-op; a
  captured notification replayed later is refused. Should one still be refused, the payment query settles
  the payment (``payment_query_after_seconds``);
- a notification's ``app_id`` must be ours, its ``sign_type`` RSA2;
- amounts: Alipay speaks yuan strings (``"12.34"``), LiveCart integers of 分, converted exactly.

Notifications (``POST``, ``application/x-www-form-urlencoded``, ``notify_type=trade_status_sync``) are
acknowledged with the body ``success`` as ``text/plain``: anything else and Alipay sends it again. Each
becomes one notice:

==========================================  ==============================================================
``trade_status``                            notice
==========================================  ==============================================================
``TRADE_SUCCESS``, ``TRADE_FINISHED``        ``PaymentNotice`` SUCCEEDED (``TRADE_FINISHED``: no longer
                                            refundable)
``WAIT_BUYER_PAY``                          ``PaymentNotice`` PENDING
``TRADE_CLOSED``                            ``PaymentNotice`` CLOSED (unpaid and expired, or closed)
any, with ``refund_fee`` or ``gmt_refund``  ``RefundNotice`` SUCCEEDED for ``out_biz_no`` (our refund id)
==========================================  ==============================================================

A notification that carries ``refund_fee``/``gmt_refund`` is about a refund, whatever its
``trade_status`` (``TRADE_SUCCESS`` after a partial refund, ``TRADE_CLOSED`` after a full one): it is never
taken for a payment closing. Alipay refunds synchronously, so ``refund`` already returned its outcome; the
notice only confirms it, without an amount (``refund_fee`` is the trade's refunded total, not this refund's).
One without ``out_biz_no`` names no refund and is acknowledged with no notice.

``query`` asks ``alipay.trade.query``; a trade Alipay does not know (``ACQ.TRADE_NOT_EXIST``: the buyer never
opened the checkout) is PENDING. ``close`` asks ``alipay.trade.close``; ``ACQ.TRADE_STATUS_ERROR`` (the trade
is paid, or no longer open) is ``PaymentAlreadyPaid``, and the service's query then tells which; an unknown
trade needs no closing (the checkout's ``time_expire`` already stops it being paid later). ``refund`` asks
``alipay.trade.refund`` with ``out_request_no`` = our refund id, which makes a retry safe.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
import time
import urllib.error
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig

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

log = logging.getLogger("livecart.payments.alipay")

#: Alipay's clock: every time it writes or reads (``timestamp``, ``time_expire``, ``notify_time``).
BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: What the notification route answers once a notification is applied: exactly these seven characters.
ACKNOWLEDGED = Reply(status=200, body=b"success", media_type="text/plain")

#: ``code`` of an answer that did what was asked, and of one refused for a business reason (``sub_code``).
OK = "10000"
BUSINESS_FAILED = "40004"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"
#: Business answers that say "try again", not "no": a refund that meets one is a ``ProviderError``.
TRANSIENT = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR"})

PRODUCT_CODES = {Channel.WAP: "QUICK_WAP_PAY", Channel.PAGE: "FAST_INSTANT_TRADE_PAY"}
PAY_METHODS = {Channel.WAP: "alipay.trade.wap.pay", Channel.PAGE: "alipay.trade.page.pay"}

TRADE_STATES = {
    "TRADE_SUCCESS": PaymentState.SUCCEEDED,
    "TRADE_FINISHED": PaymentState.SUCCEEDED,
    "WAIT_BUYER_PAY": PaymentState.PENDING,
    "TRADE_CLOSED": PaymentState.CLOSED,
}
#: The most ``subject`` may hold, and the characters Alipay's documentation forbids in it.
SUBJECT_MAX = 256
SUBJECT_FORBIDDEN = re.compile(r"[/=&]")
YUAN = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")


# -- pure translation -----------------------------------------------------------------------------------


def fen_to_yuan(amount: int) -> str:
    """``1234`` → ``"12.34"``: Alipay's ``total_amount``/``refund_amount`` (yuan, two decimals)."""
    if amount < 0:
        raise ValueError(f"an amount cannot be negative: {amount}")
    return str((Decimal(amount) / 100).quantize(Decimal("0.01")))


def yuan_to_fen(text: str) -> int:
    """``"12.34"`` → ``1234``, exactly (``Decimal``, never a float); ``ValueError`` for anything but a plain
    non-negative decimal with at most two places (no sign, exponent, spaces or ``NaN``)."""
    if not YUAN.fullmatch(text):
        raise ValueError(f"not an amount in yuan: {text!r}")
    return int(Decimal(text) * 100)


def beijing_time(epoch_s: float) -> str:
    """An instant as Alipay writes one: ``yyyy-MM-dd HH:mm:ss`` in Beijing time (a fraction is dropped, so
    a ``time_expire`` never falls after the instant it is made from)."""
    return datetime.fromtimestamp(int(epoch_s), BEIJING).strftime(TIME_FORMAT)


def parse_beijing_time(text: str) -> int:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time → epoch seconds (``ValueError`` if malformed)."""
    return int(datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING).timestamp())


def trade_state(trade_status: str) -> PaymentState:
    """The payment state of an Alipay ``trade_status`` (``ValueError`` for one Alipay does not document)."""
    try:
        return TRADE_STATES[trade_status]
    except KeyError:
        raise ValueError(f"unknown trade_status {trade_status!r}") from None


def subject_of(description: str) -> str:
    """The ``subject`` Alipay accepts: no ``/``, ``=`` or ``&``, at most 256 characters, never empty."""
    subject = " ".join(SUBJECT_FORBIDDEN.sub(" ", description).split())[:SUBJECT_MAX]
    return subject or "LiveCart"


def notification_params(body: bytes) -> dict[str, str]:
    """The fields of a notification's form body, decoded in the ``charset`` it names (UTF-8 by default);
    ``ValueError`` for a body that is not one form, or names a field twice."""
    text = body.decode("ascii")  # a form body is percent-encoded: anything else is not one
    declared = dict(parse_qsl(text, keep_blank_values=True, encoding="latin-1")).get("charset") or "utf-8"
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding=declared, errors="strict")
    params = dict(pairs)
    if len(params) != len(pairs):
        raise ValueError("a field is named twice")
    return params


def notice_of(params: Mapping[str, str]) -> PaymentNotice | RefundNotice | None:
    """What a verified ``trade_status_sync`` notification says (see the module's table); ``None``: a refund
    notification naming no refund of ours (acknowledged, nothing to apply). ``ValueError`` if malformed."""
    notify_id = _required(params, "notify_id")
    if params.get("refund_fee") or params.get("gmt_refund"):
        refund_id = params.get("out_biz_no")
        if not refund_id:
            return None
        return RefundNotice(refund_id=refund_id, state=RefundState.SUCCEEDED, event_id=notify_id)
    total = params.get("total_amount")
    return PaymentNotice(
        payment_id=_required(params, "out_trade_no"),
        state=trade_state(_required(params, "trade_status")),
        event_id=notify_id,
        amount=yuan_to_fen(total) if total else None,
        currency="CNY",
        provider_ref=params.get("trade_no") or None,
    )


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise ValueError(f"no {name}")
    return value


# -- set-up ---------------------------------------------------------------------------------------------


def _key_text(path: Path | None, setting: str) -> str | bytes:
    """A key file's content as the SDK's loader takes it: PEM text, or the DER bytes of the bare base64
    text that Alipay's key tool and console give."""
    if path is None:
        raise ValueError(f"{setting} is not set")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{setting}: cannot read {path} ({type(exc).__name__})") from None
    if "-----BEGIN" in text:
        return text
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise ValueError(f"{setting}: {path} holds neither a PEM key nor a base64 one") from None


def _gateway(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"LIVECART_ALIPAY_API_BASE must be an http(s) URL without a query, not {url!r}")
    return url


def _client(settings: Settings) -> Any:
    if not settings.alipay_app_id:
        raise ValueError("Alipay needs LIVECART_ALIPAY_APP_ID")
    private_key = _key_text(settings.alipay_private_key_file, "LIVECART_ALIPAY_PRIVATE_KEY_FILE")
    public_key = _key_text(settings.alipay_public_key_file, "LIVECART_ALIPAY_PUBLIC_KEY_FILE")
    try:
        client = AliPay(
            appid=settings.alipay_app_id,
            app_private_key_string=private_key,
            alipay_public_key_string=public_key,
            sign_type="RSA2",
            config=AliPayConfig(timeout=settings.payment_provider_timeout_seconds),
        )
    except (ValueError, IndexError, TypeError) as exc:  # what the key loader raises for a key it can't read
        raise ValueError(
            "LIVECART_ALIPAY_PRIVATE_KEY_FILE and LIVECART_ALIPAY_PUBLIC_KEY_FILE must hold RSA keys "
            f"({type(exc).__name__})"
        ) from None
    if not client.app_private_key.has_private():
        raise ValueError(
            "LIVECART_ALIPAY_PRIVATE_KEY_FILE holds a public key: it must be the app's private key"
        )
    if client.alipay_public_key.has_private():
        raise ValueError(
            "LIVECART_ALIPAY_PUBLIC_KEY_FILE holds a private key: it must be Alipay's public key (支付宝公钥)"
        )
    for key, setting in ((client.app_private_key, "PRIVATE"), (client.alipay_public_key, "PUBLIC")):
        if key.size_in_bits() < 2048:
            raise ValueError(f"LIVECART_ALIPAY_{setting}_KEY_FILE: RSA2 takes keys of 2048 bits or more")
    # The SDK takes its gateway from ``debug`` (production or sandbox) only: the setting goes here.
    client._gateway = _gateway(settings.alipay_api_base)
    return client


# -- the provider ---------------------------------------------------------------------------------------


class Alipay:
    """The ``alipay`` provider (see the module docstring). ``ValueError`` at construction for a set-up that
    cannot work: no app id, a key file that is missing, unreadable or not the right RSA key, a bad gateway."""

    name = "alipay"
    channels = (Channel.WAP, Channel.PAGE)

    def __init__(self, settings: Settings) -> None:
        self._client = _client(settings)
        self._app_id = settings.alipay_app_id
        self._gateway = settings.alipay_api_base
        self._timeout = settings.payment_provider_timeout_seconds
        self._tolerance = settings.webhook_tolerance_seconds
        #: Refund id → payment id of the refunds asked here: ``query_refund`` is given the refund id alone,
        #: and Alipay finds a refund by its trade and ``out_request_no`` only.
        self._refunded_payments: dict[str, str] = {}

    async def create(self, request: PaymentRequest) -> Checkout:
        """The signed gateway URL the buyer's browser opens (no call is made: Alipay creates the trade when
        the buyer opens it). ``time_expire`` is the reservation's end, so Alipay takes no payment after it."""
        if request.channel not in PAY_METHODS:
            raise ProviderError(f"Alipay has no {request.channel} channel")
        if request.currency != "CNY":
            raise ProviderError(f"Alipay takes CNY only, not {request.currency}")
        biz_content = {
            "out_trade_no": request.payment_id,
            "total_amount": fen_to_yuan(request.amount),
            "subject": subject_of(request.description),
            "product_code": PRODUCT_CODES[request.channel],
            "time_expire": beijing_time(request.expires_ms / 1000),
        }
        if request.channel is Channel.WAP:
            biz_content["quit_url"] = request.return_url  # where "back" leads a buyer who leaves the cashier
        signed = self._client.client_api(
            PAY_METHODS[request.channel],
            biz_content,
            notify_url=request.notify_url,
            return_url=request.return_url,
            timestamp=beijing_time(time.time()),
        )
        return Checkout(data={"redirect_url": f"{self._gateway}?{signed}"})

    def verify(self, headers: Mapping[str, str], body: bytes, *, now_s: int) -> Notification:
        """Check an asynchronous notification: RSA2 ``sign`` over the sorted fields but ``sign`` and
        ``sign_type`` with Alipay's public key (the SDK's ``verify``), our ``app_id``, a ``notify_time``
        within ``webhook_tolerance_seconds`` of ``now_s``. Answer: ``success`` (``text/plain``)."""
        try:
            params = notification_params(body)
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise NotificationRejected(f"not a form body ({type(exc).__name__})") from None
        signature = params.pop("sign", "")
        if not signature:
            raise NotificationRejected("no sign")
        if params.get("sign_type") != "RSA2":
            raise NotificationRejected(f"sign_type must be RSA2, not {params.get('sign_type')!r}")
        try:
            valid = self._client.verify(dict(params), signature)  # (it drops sign_type itself)
        except (AliPayException, ValueError, TypeError, binascii.Error):
            valid = False
        if not valid:
            raise NotificationRejected("the sign does not verify with Alipay's public key")
        if params.get("app_id") != self._app_id:
            raise NotificationRejected(f"app_id {params.get('app_id')!r} is not this shop's")
        try:
            sent_s = parse_beijing_time(params.get("notify_time", ""))
        except ValueError:
            raise NotificationRejected("no valid notify_time") from None
        if abs(now_s - sent_s) > self._tolerance:
            raise NotificationRejected(f"notify_time is {now_s - sent_s:+d} s from now")
        try:
            notice = notice_of(params)
        except ValueError as exc:
            raise NotificationRejected(f"cannot read the notification: {exc}") from None
        return Notification(notices=[] if notice is None else [notice], reply=ACKNOWLEDGED)

    async def query(self, payment_id: str) -> PaymentNotice:
        answer = await self._call("alipay.trade.query", {"out_trade_no": payment_id})
        if answer.get("sub_code") == TRADE_NOT_EXIST:  # the buyer has not opened the checkout (yet)
            state = PaymentState.PENDING
            return PaymentNotice(payment_id, state, event_id=f"query:{payment_id}:{state}")
        self._check(answer, "alipay.trade.query")
        try:
            state = trade_state(str(answer.get("trade_status")))
            total = answer.get("total_amount")
            amount = yuan_to_fen(str(total)) if total is not None else None
        except ValueError as exc:
            raise ProviderError(f"Alipay's answer to alipay.trade.query is not understood ({exc})") from None
        return PaymentNotice(
            payment_id=str(answer.get("out_trade_no") or payment_id),
            state=state,
            event_id=f"query:{payment_id}:{state}",
            amount=amount,
            currency="CNY",
            provider_ref=answer.get("trade_no") or None,
        )

    async def close(self, payment_id: str) -> None:
        answer = await self._call("alipay.trade.close", {"out_trade_no": payment_id})
        if answer.get("sub_code") == TRADE_NOT_EXIST:
            return
        if answer.get("sub_code") == TRADE_STATUS_ERROR:
            raise PaymentAlreadyPaid(f"Alipay did not close {payment_id}: the trade is no longer open")
        self._check(answer, "alipay.trade.close")

    async def refund(self, request: RefundRequest) -> RefundNotice:
        """Alipay answers a refund at once: ``fund_change`` ``Y`` is SUCCEEDED; ``N`` (no money moved by this
        call: a retry of a refund already made) is settled by asking for the refund; a business refusal is
        FAILED with Alipay's words. The notice's amount is left out (the answer's ``refund_fee`` is the
        trade's refunded total); ``query_refund`` reports it."""
        self._refunded_payments[request.refund_id] = request.payment_id
        biz_content = {
            "out_trade_no": request.payment_id,
            "refund_amount": fen_to_yuan(request.amount),
            "out_request_no": request.refund_id,
            "refund_reason": request.reason[:256],
        }
        answer = await self._call("alipay.trade.refund", biz_content)
        if answer.get("code") == BUSINESS_FAILED and answer.get("sub_code") not in TRANSIENT:
            state = RefundState.FAILED
            return RefundNotice(
                request.refund_id, state, event_id=f"refund:{request.refund_id}:{state}", error=_words(answer)
            )
        self._check(answer, "alipay.trade.refund")
        if answer.get("fund_change") != "Y":
            return await self.query_refund(request.refund_id, payment_id=request.payment_id)
        state = RefundState.SUCCEEDED
        return RefundNotice(request.refund_id, state, event_id=f"refund:{request.refund_id}:{state}")

    async def query_refund(self, refund_id: str, *, payment_id: str | None = None) -> RefundNotice:
        """What Alipay says of a refund: an answer naming it (with no ``refund_status``, or
        ``REFUND_SUCCESS``) is SUCCEEDED with its ``refund_amount``; an answer with no such refund means it
        never happened: FAILED, and the service's retry of ``refund`` (same ``out_request_no``) is safe.

        Alipay needs the refund's payment, which the ``Provider`` interface does not pass: it is the one
        ``refund`` was asked with in this process, or ``payment_id``. Neither: ``ProviderError``."""
        payment_id = payment_id or self._refunded_payments.get(refund_id)
        if payment_id is None:
            raise ProviderError(f"Alipay finds a refund by its payment, and {refund_id}'s is not known here")
        method = "alipay.trade.fastpay.refund.query"
        answer = await self._call(method, {"out_trade_no": payment_id, "out_request_no": refund_id})
        self._check(answer, method)
        if answer.get("out_request_no") != refund_id:  # an answer with no refund: it never happened
            state = RefundState.FAILED
            error = f"Alipay has no refund {refund_id} of {payment_id}"
            return RefundNotice(refund_id, state, event_id=f"refund:{refund_id}:{state}", error=error)
        if answer.get("refund_status") not in (None, "", "REFUND_SUCCESS"):
            state = RefundState.PROCESSING
            return RefundNotice(refund_id, state, event_id=f"refund:{refund_id}:{state}")
        try:
            amount = yuan_to_fen(str(answer.get("refund_amount")))
        except ValueError as exc:
            raise ProviderError(f"Alipay's answer to {method} is not understood ({exc})") from None
        state = RefundState.SUCCEEDED
        return RefundNotice(refund_id, state, event_id=f"refund:{refund_id}:{state}", amount=amount)

    # -- calls --------------------------------------------------------------------------------------------

    async def _call(self, method: str, biz_content: dict[str, Any]) -> dict[str, Any]:
        """The SDK's ``server_api`` in a thread, bounded by the provider timeout: the verified answer of a
        call that reached Alipay (its ``code`` is for the caller to read), else ``ProviderError``."""
        call = functools.partial(
            self._client.server_api, method, biz_content, timestamp=beijing_time(time.time())
        )
        try:
            async with asyncio.timeout(self._timeout):
                answer = await asyncio.to_thread(call)
        except AliPayValidationError:
            reason = "its answer's sign does not verify with Alipay's public key"
        except AliPayException as exc:  # an answer with no sign: the gateway refused the request itself
            reason = f"refused: {_refusal(exc)}"
        except urllib.error.HTTPError as exc:
            exc.close()  # (it holds the response open)
            reason = f"answered HTTP {exc.code}"
        except Exception as exc:  # transport errors, timeouts, an answer that is not Alipay's JSON
            timed_out = isinstance(getattr(exc, "reason", exc), TimeoutError)  # (a URLError's reason)
            reason = f"timed out after {self._timeout:g} s" if timed_out else f"failed ({type(exc).__name__})"
        else:
            if not isinstance(answer, dict):
                raise ProviderError(f"Alipay's answer to {method} is not an object")
            return answer
        log.warning("Alipay %s: %s", method, reason)
        raise ProviderError(f"Alipay {method}: {reason}")

    def _check(self, answer: Mapping[str, Any], method: str) -> None:
        if answer.get("code") != OK:
            log.warning("Alipay %s refused: %s", method, _words(answer))
            raise ProviderError(f"Alipay {method} refused: {_words(answer)}")


def _words(answer: Mapping[str, Any]) -> str:
    """Alipay's reason, as it gives it: ``code msg``, then ``sub_code: sub_msg`` when there is one."""
    words = f"{answer.get('code')} {answer.get('msg', '')}".strip()
    if answer.get("sub_code"):
        words += f"; {answer['sub_code']}: {answer.get('sub_msg', '')}"
    return words[:300]


def _refusal(exc: AliPayException) -> str:
    """The words of an unsigned refusal: the SDK keeps Alipay's whole answer in the exception's text."""
    text = str(exc)
    _, _, raw = text.partition("message:")
    try:
        response = json.loads(raw)
        inner = next(v for k, v in response.items() if k.endswith("_response") and isinstance(v, dict))
    except (ValueError, StopIteration, AttributeError):
        return text[:300]
    return _words(inner)
