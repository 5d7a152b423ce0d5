"""Everything an endpoint reaches: built once in the lifespan from one Settings object."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from live.access import TokenSigner
from live.video import Video
from live.video_siblings import Siblings
from livecart.clock import Clock
from livecart.metrics import Metrics
from livecart.settings import Settings
from realtime.endpoint import Realtime
from shop.cards import Catalog
from shop.inventory.store import Inventory
from shop.orders.service import OrderService
from shop.orders.writer import OrderWriter
from shop.payments.service import PaymentService
from shop.reconcile import Reconciler
from shop.sweeper import Sweeper


@dataclass
class AppState:
    settings: Settings
    clock: Clock
    metrics: Metrics
    signer: TokenSigner
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
    siblings: Siblings | None = None
