"""Everything the process runs: built once in the lifespan from one Settings object (the app wiring and
tests reach it; a package's endpoints reach only their own part: ``LiveServices``, ``ShopServices``, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from base.clock import Clock
from base.limits import RateLimits
from base.metrics import Metrics
from base.settings import Settings
from identity.guards import Authenticator
from identity.tokens import TokenSigner
from live.services import LiveServices
from live.video import Video
from live.video_siblings import Siblings
from realtime.service import Realtime
from reporting.api import ReportingServices
from shop.cards import Catalog
from shop.inventory.store import Inventory
from shop.orders.service import OrderService
from shop.orders.writer import OrderWriter
from shop.payments.service import PaymentService
from shop.reconcile import Reconciler
from shop.services import ShopServices
from shop.sweeper import Sweeper


@dataclass
class AppState:
    settings: Settings
    clock: Clock
    metrics: Metrics
    signer: TokenSigner
    auth: Authenticator
    rate_limits: RateLimits
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    inventory: Inventory
    writer: OrderWriter
    reconciler: Reconciler
    catalog: Catalog
    orders: OrderService
    payments: PaymentService
    sweeper: Sweeper
    realtime: Realtime
    video: Video
    #: The other workers of ``livecart serve --workers N``; ``None`` in a single process.
    siblings: Siblings | None
    #: what each package's endpoints are given (each reaches only its own)
    live: LiveServices
    shop: ShopServices
    reporting: ReportingServices


def state(conn: HTTPConnection) -> AppState:
    """The whole process's services: for the wiring's own endpoints (health, metrics) and for tests."""
    return cast(AppState, conn.state.livecart)
