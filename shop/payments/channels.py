"""Which way a buyer pays (SPEC §10), pure: the provider's channel for the browser they are in.

Inside WeChat's browser (``MicroMessenger`` in the User-Agent) WeChat Pay runs as JSAPI (or, for a buyer not
signed in with WeChat, as H5), and Alipay not at all: WeChat does not open Alipay's pages. In another mobile
browser WeChat Pay runs as H5 and Alipay as WAP; on a desktop WeChat Pay shows a QR code (Native) and
Alipay its page. Stripe has one channel, its hosted Checkout, everywhere. A channel the buyer names wins if
the provider has it and this browser can use it.
"""

from __future__ import annotations

import re

from shop.payments.provider import Channel

MOBILE = re.compile(r"Mobile|Android|iPhone|iPad|HarmonyOS", re.IGNORECASE)
IN_WECHAT = re.compile(r"MicroMessenger", re.IGNORECASE)


def browser_of(user_agent: str) -> str:
    """``wechat``, ``mobile`` or ``desktop``."""
    if IN_WECHAT.search(user_agent):
        return "wechat"
    return "mobile" if MOBILE.search(user_agent) else "desktop"


#: The channels each browser can pay by, best first.
PREFERRED: dict[str, tuple[Channel, ...]] = {
    "wechat": (Channel.JSAPI, Channel.H5, Channel.NATIVE, Channel.CHECKOUT, Channel.DEV),
    "mobile": (Channel.H5, Channel.WAP, Channel.NATIVE, Channel.PAGE, Channel.CHECKOUT, Channel.DEV),
    "desktop": (Channel.NATIVE, Channel.PAGE, Channel.H5, Channel.WAP, Channel.CHECKOUT, Channel.DEV),
}


def choose_channel(
    offered: tuple[Channel, ...], *, user_agent: str, requested: Channel | None, has_openid: bool
) -> Channel | None:
    """The channel to pay with, or ``None`` when the provider has none that serves this buyer (a named one
    it lacks; JSAPI without the buyer's WeChat ``openid``)."""
    here = PREFERRED[browser_of(user_agent)]
    usable = [c for c in offered if c in here and (c is not Channel.JSAPI or has_openid)]
    if requested is not None:
        return requested if requested in usable else None
    return min(usable, key=here.index, default=None)
