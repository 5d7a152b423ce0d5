"""Where sign-in codes go: an SMS provider. ``dev`` writes the code to the log and hands it back for the
response (development only; refused in prod); ``aliyun`` sends it through the Aliyun SMS service
(阿里云短信服务, its ``SendSms`` API through the maintained SDK ``alibabacloud_dysmsapi20170525``).
``None`` (setting ``none``): phone sign-in is off.

A provider that cannot send raises ``ProviderFailed`` (502): the caller then drops the code it issued, so
nothing is left to guess. The real provider never logs the code, and no error names its secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

from alibabacloud_dysmsapi20170525.client import Client as AliyunClient  # type: ignore[import-untyped]
from alibabacloud_dysmsapi20170525.models import SendSmsRequest  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import Config as AliyunConfig  # type: ignore[import-untyped]
from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

from base.settings import Settings
from identity.errors import ProviderFailed
from identity.phones import masked

log = logging.getLogger("livecart.sms")

#: What the ``SendSms`` answer's ``Code`` is when the message was accepted.
ALIYUN_OK = "OK"


class SmsSender(Protocol):
    #: Whether the code goes back in the response (the dev provider only).
    reveals_code: bool

    async def send_code(self, phone: str, code: str) -> None:
        """Send the code to the phone (E.164), or raise ``ProviderFailed``."""


class DevSms:
    """Sends nothing: the code is logged and returned in the response (``dev_code``)."""

    reveals_code = True

    async def send_code(self, phone: str, code: str) -> None:
        log.warning("dev SMS provider: sign-in code for %s is %s", masked(phone), code)


def aliyun_endpoint(value: str) -> tuple[str, str]:
    """``(protocol, host[:port])`` of the ``aliyun_sms_endpoint`` setting: ``https://host``,
    ``http://host:port`` (a gateway in Aliyun's format, a test's server) or a bare host (HTTPS)."""
    raw = value.strip()
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    try:
        valid = bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number
        valid = False
    if parts.scheme not in ("http", "https") or not valid or parts.path not in ("", "/") or parts.query:
        raise ValueError(
            f"LIVECART_ALIYUN_SMS_ENDPOINT must be a host or an http(s)://host[:port] URL, not {value!r}"
        )
    return parts.scheme, parts.netloc


def aliyun_phone(e164: str) -> str:
    """The number as ``SendSms`` takes it: a mainland number as its 11 digits (no ``+86``), any other as
    its country code and number without ``+`` or ``00`` (``85212345678``), per Aliyun's documentation of
    ``PhoneNumbers``."""
    digits = e164.removeprefix("+")
    return digits[2:] if digits.startswith("86") else digits


class AliyunSms:
    """Sends the code with the template ``aliyun_sms_template_code`` (its variable ``${code}``) under the
    sign name ``aliyun_sms_sign_name``. The SDK signs each call (ACS3-HMAC-SHA256) with the access key."""

    reveals_code = False

    def __init__(
        self,
        *,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        timeout: float = 5.0,
    ) -> None:
        protocol, host = aliyun_endpoint(endpoint)
        self._secrets = (access_key_id, access_key_secret)
        self._sign_name = sign_name
        self._template_code = template_code
        self._timeout = timeout
        timeout_ms = max(1, int(timeout * 1000))
        self._client = AliyunClient(
            AliyunConfig(
                access_key_id=access_key_id,
                access_key_secret=access_key_secret,
                endpoint=host,
                protocol=protocol,
                connect_timeout=timeout_ms,
                read_timeout=timeout_ms,
            )
        )

    async def send_code(self, phone: str, code: str) -> None:
        request = SendSmsRequest(
            phone_numbers=aliyun_phone(phone),
            sign_name=self._sign_name,
            template_code=self._template_code,
            template_param=json.dumps({"code": code}),
        )
        try:
            # The SDK's timeouts are per socket operation: the whole call is bounded here too.
            async with asyncio.timeout(self._timeout):
                response = await self._client.send_sms_with_options_async(request, RuntimeOptions())
        except Exception as exc:  # the SDK raises its own tree, transport errors and timeouts alike
            reason = self._scrub(_describe(exc))
            log.warning("Aliyun SMS to %s failed: %s", masked(phone), reason)
            raise ProviderFailed(
                f"The SMS service could not be reached or refused the call ({reason}); try again later."
            ) from None
        body = response.body
        if body is None or body.code != ALIYUN_OK:
            what = "no answer" if body is None else f"{body.code}: {body.message}"
            reason = self._scrub(what)
            log.warning("Aliyun SMS to %s refused: %s", masked(phone), reason)
            raise ProviderFailed(f"The SMS service did not send the code ({reason}); try again later.")
        log.info("sign-in code sent to %s by Aliyun SMS (BizId %s)", masked(phone), body.biz_id)

    def _scrub(self, text: str) -> str:
        """The provider's words, short, and never holding the key or its secret."""
        for secret in self._secrets:
            if len(secret) >= 8:  # (a shorter one is no real key, and would blank out common words)
                text = text.replace(secret, "***")
        return text[:200]


def _describe(exc: BaseException) -> str:
    """What went wrong, in a few words: Aliyun's error code and message, or the transport's error."""
    inner: Any = getattr(exc, "inner_exception", None) or getattr(exc, "ex", None) or exc
    code = getattr(inner, "code", None)
    message = getattr(inner, "message", None)
    if isinstance(inner, TimeoutError):
        return "timed out"
    if code and message:
        return f"{code}: {message}"
    if inner.args and isinstance(inner.args[0], dict) and "message" in inner.args[0]:
        return f"{type(inner).__name__}: {inner.args[0]['message']}"  # the SDK's transport errors
    return type(inner).__name__ + (f": {inner}" if str(inner) else "")


def check_sms(settings: Settings) -> None:
    """Refuse, at start, a provider whose settings are incomplete (``ValueError`` naming each one)."""
    if settings.sms != "aliyun":
        return
    missing = [
        f"LIVECART_{name.upper()}"
        for name in (
            "aliyun_access_key_id",
            "aliyun_access_key_secret",
            "aliyun_sms_sign_name",
            "aliyun_sms_template_code",
        )
        if not _text(getattr(settings, name))
    ]
    if missing:
        raise ValueError(f"LIVECART_SMS_PROVIDER=aliyun needs {', '.join(missing)}")
    aliyun_endpoint(settings.aliyun_sms_endpoint)


def _text(value: object) -> str:
    if value is None:
        return ""
    secret = getattr(value, "get_secret_value", None)
    return str(secret() if secret else value).strip()


def sms_sender(settings: Settings) -> SmsSender | None:
    check_sms(settings)
    if settings.sms == "dev":
        return DevSms()
    if settings.sms == "aliyun":
        return AliyunSms(
            endpoint=settings.aliyun_sms_endpoint,
            access_key_id=_text(settings.aliyun_access_key_id),
            access_key_secret=_text(settings.aliyun_access_key_secret),
            sign_name=_text(settings.aliyun_sms_sign_name),
            template_code=_text(settings.aliyun_sms_template_code),
            timeout=settings.sign_in_provider_timeout_seconds,
        )
    return None
