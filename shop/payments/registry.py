"""The payment providers this server is configured for, by name (SPEC §10), and which of them a shop takes.

A provider is on when its keys are set (``Settings.wechatpay_enabled`` ...); the dev provider when
``LIVECART_DEV_PAYMENTS`` is (dev by default). A shop may narrow and order them (``hosts.payment_providers``);
the first one it takes that serves the buyer's channel is offered first.
"""

from __future__ import annotations

from base.settings import Settings
from shop.errors import UnknownProvider
from shop.payments.dev import DevProvider
from shop.payments.provider import Provider

#: Every provider LiveCart has, in the order a shop that names none offers them.
NAMES = ("wechat", "alipay", "stripe", "dev")


class Providers:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._by_name = providers

    @classmethod
    def of(cls, settings: Settings) -> Providers:
        """The providers ``settings`` configure (each SDK is imported only where its provider is on)."""
        found: dict[str, Provider] = {}
        if settings.wechatpay_enabled:
            from shop.payments.wechatpay import WeChatPay

            found["wechat"] = WeChatPay(settings)
        if settings.alipay_enabled:
            from shop.payments.alipay import Alipay

            found["alipay"] = Alipay(settings)
        if settings.stripe_enabled:
            from shop.payments.stripe_pay import StripePay

            found["stripe"] = StripePay(settings)
        if settings.dev_payments_enabled:
            found["dev"] = DevProvider(settings)
        return cls(found)

    @property
    def names(self) -> list[str]:
        return [n for n in NAMES if n in self._by_name]

    async def aclose(self) -> None:
        """Close what the providers hold open (the Stripe SDK's HTTP connections, bound to this loop)."""
        for provider in self._by_name.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    def get(self, name: str) -> Provider:
        provider = self._by_name.get(name)
        if provider is None:
            raise UnknownProvider(
                f"The payment provider {name!r} is not available on this server"
                f" (available: {', '.join(self.names) or 'none'})."
            )
        return provider

    def find(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def for_shop(self, chosen: str | None) -> list[str]:
        """The providers a shop takes, best first: its own list (``hosts.payment_providers``) narrowed to
        what this server has, or everything this server has."""
        if not chosen:
            return self.names
        return [n for n in chosen.split(",") if n in self._by_name]
