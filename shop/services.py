"""What ``shop``'s endpoints work with, built once by the app wiring and reached through the request state
(``services(request)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from base.clock import Clock
from base.limits import RateLimits
from base.settings import Settings
from identity.guards import Authenticator
from shop.after_sale import AfterSales
from shop.cards import Catalog
from shop.fulfilment import Fulfilment
from shop.orders.service import OrderService
from shop.payments.service import PaymentService
from shop.replay import Replays


@dataclass(frozen=True, slots=True)
class ShopServices:
    settings: Settings
    clock: Clock
    auth: Authenticator
    rate_limits: RateLimits
    sessions: async_sessionmaker[AsyncSession]
    catalog: Catalog
    orders: OrderService
    payments: PaymentService
    fulfilment: Fulfilment
    after_sales: AfterSales
    #: The shows' replays (their timeline, publishing, deletion).
    replays: Replays


def services(conn: HTTPConnection) -> ShopServices:
    return cast(ShopServices, conn.state.shop)
