"""Builds the Starlette app from one Settings object. ``create_app()`` is the factory uvicorn runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import live.api
import live.pages
import live.video_api
import realtime.endpoint
import shop.api
from live.access import TokenSigner
from live.video import Video
from live.video_rules import forward_token
from live.video_siblings import Siblings
from livecart import __version__, db, openapi
from livecart.clock import Clock, SystemClock
from livecart.embedded_redis import EmbeddedRedis
from livecart.errors import exception_handlers
from livecart.http import state
from livecart.logs import RequestIdMiddleware
from livecart.metrics import Metrics
from livecart.settings import Settings
from livecart.state import AppState
from realtime.endpoint import Realtime
from shop.cards import Catalog
from shop.inventory.store import SENTINEL, Inventory
from shop.models import Order
from shop.orders.service import OrderService
from shop.orders.writer import OrderWriter
from shop.payments.service import PaymentService
from shop.reconcile import Reconciler
from shop.sweeper import Sweeper
from shop.views import order_json

log = logging.getLogger("livecart.app")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    st = state(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(st.redis.ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        async with st.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=2)
        checks["sql"] = "ok"
    except Exception as exc:
        checks["sql"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    return Response(state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


async def build_state(settings: Settings, redis_url: str, *, clock: Clock) -> AppState:
    metrics_ = Metrics()
    engine = db.create_engine(settings.database_url)
    if settings.migrations_on_start:
        await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    # A bounded pool that makes a burst wait for a free connection (within the commit timeout) instead of
    # failing it: the default pool raises once 100 connections are in use.
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.commit_timeout_seconds,
        socket_timeout=settings.commit_timeout_seconds,
        socket_connect_timeout=settings.commit_timeout_seconds,
        health_check_interval=30,
    )
    redis = Redis.from_pool(pool)
    inventory = Inventory(redis)
    grace_ms = int(settings.orphan_grace_seconds * 1000)
    reconciler = Reconciler(
        sessions=sessions, inventory=inventory, clock=clock, metrics=metrics_, grace_ms=grace_ms
    )

    async def committed(rows: list[dict[str, object]]) -> None:
        metrics_.order_batches.inc()
        await inventory.mark_committed([(str(r["card_id"]), str(r["id"])) for r in rows])

    signer = TokenSigner(settings.signing_keys)
    siblings = None
    if settings.worker_url is not None and settings.worker_group is not None:
        siblings = Siblings(
            redis,
            me=settings.worker_url,
            group=settings.worker_group,
            token=forward_token(settings.secret_key.get_secret_value(), settings.worker_group),
            timeout=settings.video_forward_timeout_seconds,
            metrics=metrics_,
        )
    catalog = Catalog(sessions=sessions, inventory=inventory, reconciler=reconciler, clock=clock)
    realtime = Realtime(
        redis=redis,
        sessions=sessions,
        signer=signer,
        clock=clock,
        snapshot=catalog.room_cards,
        allowed_origins=settings.origins,
        history=settings.ws_history,
        max_backlog_bytes=settings.ws_max_backlog_bytes,
    )
    inventory.on_change = realtime.stock_changed
    catalog.on_card = realtime.publish_card
    writer = OrderWriter(
        engine,
        commit_timeout=settings.commit_timeout_seconds,
        on_committed=committed,
    )
    state = AppState(
        settings=settings,
        clock=clock,
        metrics=metrics_,
        signer=signer,
        engine=engine,
        sessions=sessions,
        redis=redis,
        inventory=inventory,
        writer=writer,
        reconciler=reconciler,
        catalog=catalog,
        realtime=realtime,
        video=Video(ice_servers=settings.ice_servers, metrics=metrics_, siblings=siblings),
        siblings=siblings,
        orders=OrderService(
            settings=settings,
            sessions=sessions,
            inventory=inventory,
            writer=writer,
            reconciler=reconciler,
            clock=clock,
            metrics=metrics_,
        ),
        payments=PaymentService(
            settings=settings,
            sessions=sessions,
            inventory=inventory,
            reconciler=reconciler,
            clock=clock,
            metrics=metrics_,
        ),
        sweeper=Sweeper(
            sessions=sessions,
            inventory=inventory,
            reconciler=reconciler,
            clock=clock,
            metrics=metrics_,
            interval=settings.sweep_interval_seconds,
            grace_ms=grace_ms,
        ),
    )
    state.orders.on_order = realtime.publish_order
    state.payments.on_order = realtime.publish_order

    async def expired(order: Order) -> None:
        await realtime.publish_order(order_json(order, currency=settings.currency))

    state.sweeper.on_expired = expired
    return state


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, sweeper: bool = True
) -> Starlette:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, AppState]]:
        embedded: EmbeddedRedis | None = None
        redis_url = settings.redis_url
        if redis_url is None:
            embedded = EmbeddedRedis(settings.data_dir)
            redis_url = embedded.start()
        st = await build_state(settings, redis_url, clock=clock or SystemClock())
        try:
            if not await st.redis.exists(SENTINEL):
                # A fresh or wiped Redis: rebuild every sale that SQL knows before serving a single buy.
                await st.reconciler.reconcile_all(trigger="startup")
            st.writer.start()
            st.realtime.start()
            app.state.livecart_state = st  # for operators' tooling and tests; endpoints use request state
            if sweeper:
                st.sweeper.start()
            # Everything built so far lives as long as the process: keep it out of the cyclic collector's
            # full passes, which otherwise walk it all (tens of ms) a few times a second under load.
            gc.collect()
            gc.freeze()
            yield {"livecart": st}
        finally:
            await st.video.close()
            if st.siblings is not None:
                await st.siblings.close()
            await st.sweeper.stop()
            await st.realtime.stop()
            await st.writer.stop()
            await st.redis.aclose()
            await st.engine.dispose()
            if embedded is not None:
                embedded.stop()

    routes = [
        *shop.api.routes[:1],  # the buy
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        *live.api.routes,
        *live.video_api.routes,
        *realtime.endpoint.routes,
        *shop.api.routes[1:],
        *live.pages.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.openapi = openapi.build(routes, title="LiveCart API", version=__version__)
    return app
