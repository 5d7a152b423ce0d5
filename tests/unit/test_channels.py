"""Which channel pays in which browser (``shop/payments/channels.py``)."""

from __future__ import annotations

import pytest

from shop.payments.channels import browser_of, choose_channel
from shop.payments.provider import Channel

WECHAT = (Channel.NATIVE, Channel.JSAPI, Channel.H5)
ALIPAY = (Channel.WAP, Channel.PAGE)
STRIPE = (Channel.CHECKOUT,)

IN_WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.44(0x18002c2f) NetType/WIFI Language/zh_CN"
)
ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize(
    ("ua", "browser"), [(IN_WECHAT, "wechat"), (ANDROID, "mobile"), (DESKTOP, "desktop"), ("", "desktop")]
)
def test_the_browser_is_told_by_its_user_agent(ua: str, browser: str) -> None:
    assert browser_of(ua) == browser


@pytest.mark.parametrize(
    ("offered", "ua", "openid", "expected"),
    [
        (WECHAT, IN_WECHAT, True, Channel.JSAPI),
        (WECHAT, IN_WECHAT, False, Channel.H5),  # not signed in with WeChat: no openid for JSAPI
        (WECHAT, ANDROID, True, Channel.H5),
        (WECHAT, DESKTOP, False, Channel.NATIVE),
        (ALIPAY, ANDROID, False, Channel.WAP),
        (ALIPAY, DESKTOP, False, Channel.PAGE),
        (ALIPAY, IN_WECHAT, True, None),  # WeChat does not open Alipay's pages
        (STRIPE, IN_WECHAT, False, Channel.CHECKOUT),
        (STRIPE, DESKTOP, False, Channel.CHECKOUT),
        ((Channel.DEV,), ANDROID, False, Channel.DEV),
    ],
)
def test_the_best_channel_for_the_browser(
    offered: tuple[Channel, ...], ua: str, openid: bool, expected: Channel | None
) -> None:
    assert choose_channel(offered, user_agent=ua, requested=None, has_openid=openid) == expected


def test_a_named_channel_wins_if_this_browser_can_use_it() -> None:
    assert (
        choose_channel(WECHAT, user_agent=ANDROID, requested=Channel.NATIVE, has_openid=False)
        is Channel.NATIVE
    )
    assert choose_channel(WECHAT, user_agent=DESKTOP, requested=Channel.JSAPI, has_openid=False) is None
    assert (
        choose_channel(WECHAT, user_agent=DESKTOP, requested=Channel.JSAPI, has_openid=True) is None
    )  # not in WeChat
    assert choose_channel(ALIPAY, user_agent=DESKTOP, requested=Channel.NATIVE, has_openid=False) is None
