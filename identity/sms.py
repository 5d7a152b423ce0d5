"""Where sign-in codes go: an SMS provider. ``dev`` writes the code to the log and hands it back for the
response (development only; refused in prod); ``aliyun`` sends it through the Aliyun SMS service.
``None`` (setting ``none``): phone sign-in is off."""

from __future__ import annotations

import logging
from typing import Protocol

from base.settings import Settings
from identity.phones import masked

log = logging.getLogger("livecart.sms")


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


def sms_sender(settings: Settings) -> SmsSender | None:
    if settings.sms == "dev":
        return DevSms()
    return None
