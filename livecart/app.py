"""Builds the Starlette app from one Settings object. ``create_app()`` is the factory uvicorn runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import live.api
import live.hls_api
import live.host_account
import live.leader_links
import live.pages
import live.sign_in_api
import live.video_api
import live.wechat_api
import realtime.endpoint
import reporting.api
import reporting.customers_api
import shop.after_sale_api
import shop.api
import shop.leaders_api
import shop.replay_api
import shop.settlement_api
from base import db, openapi
from base.clock import Clock, SystemClock
from base.embedded_redis import EmbeddedRedis
from base.limits import Limit, RateLimits, check_rates, rate_of
from base.logs import RequestIdMiddleware
from base.metrics import Metrics
from base.redis_client import redis_client
from base.settings import Settings
from identity.codes import SignInCodes
from identity.errors import InvalidToken, NotPermitted
from identity.guards import Authenticator
from identity.sessions import HostSessions, StreamKeys
from identity.sms import check_sms, sms_sender
from identity.tokens import TokenSigner
from identity.wechat import check_wechat, wechat_client
from live.hls_encoder import EncoderOptions
from live.hls_files import HlsFiles
from live.hls_store import HlsStore
from live.services import LiveServices
from live.video import Video
from live.video_rules import forward_token
from live.video_siblings import Siblings
from livecart import __version__, schema
from livecart.edge import exception_handlers, status_of
from livecart.state import AppState, state
from realtime.broker import Broker
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import RedisBroker
from realtime.publisher import Publisher
from realtime.service import Realtime
from realtime.stock import StockPublisher
from reporting.api import ReportingServices
from shop.after_sale import AfterSales
from shop.card_timeline import CardTimeline
from shop.cards import Catalog
from shop.covers import RoomCovers
from shop.fulfilment import Fulfilment
from shop.inventory.store import SENTINEL, Inventory
from shop.orders.service import OrderService
from shop.orders.writer import OrderWriter
from shop.payments.refunds import Refunder
from shop.payments.registry import Providers
from shop.payments.service import NOTIFY_PATHS, PaymentService
from shop.reconcile import Reconciler
from shop.replay import Replays
from shop.room_source import ShopRoomSource
from shop.services import ShopServices
from shop.sweeper import Sweeper

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
    """Every service of the process, each given what it uses at construction (nothing is assigned later)."""
    metrics_ = Metrics()
    engine = db.create_engine(settings.database_url)
    if settings.migrations_on_start:
        await schema.migrate(engine)
    sessions = db.sessionmaker(engine)
    redis = redis_client(redis_url, settings)
    signer = TokenSigner(
        settings.signing_keys, customer_max_age=int(settings.customer_token_days * 24 * 3600)
    )
    host_sessions = HostSessions(
        sessions=sessions, signer=signer, clock=clock, lifetime_days=settings.host_session_days
    )
    auth = Authenticator(signer, host_sessions, StreamKeys(sessions=sessions, clock=clock))
    rate_limits = RateLimits(redis, settings)

    # Realtime's publishing half comes first: the domain services announce their changes through it.
    broker: Broker = (
        MemoryBroker(history=settings.ws_history)
        if settings.realtime_broker == "memory"
        else RedisBroker(redis, history=settings.ws_history)
    )
    # The stock counters read what the inventory below changes and announces: an inventory of their own
    # (the same Redis, announcing nothing) spares the two a construction that needs each other.
    timeline = CardTimeline(sessions=sessions)
    publisher = Publisher(
        broker, StockPublisher(Inventory(redis), broker, clock, on_sold_out=timeline.sold_out), clock
    )

    inventory = Inventory(redis, events=publisher)
    grace_ms = int(settings.orphan_grace_seconds * 1000)
    reconciler = Reconciler(
        sessions=sessions, inventory=inventory, clock=clock, metrics=metrics_, grace_ms=grace_ms
    )

    async def committed(rows: list[dict[str, object]]) -> None:
        metrics_.order_batches.inc()
        await inventory.mark_committed([(str(r["card_id"]), str(r["id"])) for r in rows])

    writer = OrderWriter(engine, commit_timeout=settings.commit_timeout_seconds, on_committed=committed)
    catalog = Catalog(
        sessions=sessions, inventory=inventory, reconciler=reconciler, clock=clock, events=publisher
    )
    chat_rate = rate_of(settings, Limit.CHAT_PER_CUSTOMER)
    realtime = Realtime(
        redis=redis,
        broker=broker,
        publisher=publisher,
        sessions=sessions,
        auth=auth,
        rate_limits=rate_limits,
        clock=clock,
        rooms=ShopRoomSource(sessions=sessions, catalog=catalog),
        allowed_origins=settings.origins,
        max_backlog_bytes=settings.ws_max_backlog_bytes,
        max_sockets_per_viewer=settings.ws_max_per_viewer,
        chat_burst=chat_rate.amount,
        chat_per_second=chat_rate.amount / chat_rate.get_expiry(),
    )
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
    hls_store = HlsStore(
        settings.data_dir / "hls",
        target_seconds=settings.hls_segment_seconds,
        window=settings.hls_live_window,
    )
    video = Video(
        ice_servers=settings.ice_servers,
        metrics=metrics_,
        siblings=siblings,
        hls_store=hls_store if settings.hls_enabled else None,
        hls_options=EncoderOptions.of(settings),
    )
    # A thread: WeChat Pay's SDK may download its platform certificates while it is built.
    providers = await asyncio.to_thread(Providers.of, settings)
    refunder = Refunder(
        settings=settings,
        sessions=sessions,
        providers=providers,
        clock=clock,
        notify_url=lambda name: settings.base_url.rstrip("/") + NOTIFY_PATHS[name],
    )
    orders = OrderService(
        refunder=refunder,
        settings=settings,
        sessions=sessions,
        inventory=inventory,
        writer=writer,
        reconciler=reconciler,
        clock=clock,
        metrics=metrics_,
        events=publisher,
    )
    payments = PaymentService(
        providers=providers,
        refunder=refunder,
        settings=settings,
        sessions=sessions,
        inventory=inventory,
        reconciler=reconciler,
        clock=clock,
        metrics=metrics_,
        events=publisher,
    )
    fulfilment = Fulfilment(settings=settings, sessions=sessions, clock=clock, events=publisher)
    replays = Replays(settings=settings, sessions=sessions, clock=clock, catalog=catalog, store=hls_store)
    sweeper = Sweeper(
        payments=payments,
        fulfilment=fulfilment,
        sessions=sessions,
        inventory=inventory,
        reconciler=reconciler,
        clock=clock,
        metrics=metrics_,
        interval=settings.sweep_interval_seconds,
        grace_ms=grace_ms,
        events=publisher,
        currency=settings.currency,
        replays=replays,
    )
    return AppState(
        settings=settings,
        clock=clock,
        metrics=metrics_,
        signer=signer,
        auth=auth,
        rate_limits=rate_limits,
        engine=engine,
        sessions=sessions,
        redis=redis,
        inventory=inventory,
        writer=writer,
        reconciler=reconciler,
        catalog=catalog,
        orders=orders,
        payments=payments,
        sweeper=sweeper,
        realtime=realtime,
        video=video,
        siblings=siblings,
        live=LiveServices(
            settings=settings,
            clock=clock,
            signer=signer,
            auth=auth,
            rate_limits=rate_limits,
            sessions=sessions,
            events=publisher,
            room_ended=catalog.close_room_cards,
            video=video,
            hls_store=hls_store,
            hls_files=HlsFiles(hls_store, cache_bytes=settings.hls_cache_mb << 20),
            codes=SignInCodes(
                redis,
                secret=settings.signing_keys[0].encode(),
                code_seconds=settings.sign_in_code_seconds,
                max_wrong=settings.sign_in_max_wrong_codes,
                lock_seconds=settings.sign_in_lock_seconds,
            ),
            sms=sms_sender(settings),
            wechat=wechat_client(settings, redis),
            siblings=siblings,
            room_cover=RoomCovers(sessions=sessions).cover_of,
        ),
        shop=ShopServices(
            settings=settings,
            clock=clock,
            auth=auth,
            rate_limits=rate_limits,
            sessions=sessions,
            catalog=catalog,
            orders=orders,
            payments=payments,
            fulfilment=fulfilment,
            after_sales=AfterSales(orders=orders, settings=settings, sessions=sessions, clock=clock),
            replays=replays,
        ),
        reporting=ReportingServices(
            settings=settings,
            clock=clock,
            auth=auth,
            rate_limits=rate_limits,
            sessions=sessions,
            stock_left=inventory.stock_left_many,
            presence=realtime.presence,
        ),
    )


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, sweeper: bool = True
) -> Starlette:
    settings = settings or Settings()
    check_rates(settings)
    check_sms(settings)
    check_wechat(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
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
            yield {
                "livecart": st,  # the wiring's own endpoints (health, metrics)
                "settings": st.settings,
                "live": st.live,
                "shop": st.shop,
                "reporting": st.reporting,
                "realtime": st.realtime,
            }
        finally:
            await st.video.close()
            if st.live.wechat is not None:
                await st.live.wechat.close()
            if st.siblings is not None:
                await st.siblings.close()
            await st.sweeper.stop()
            await st.payments.providers.aclose()
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
        *live.host_account.routes,
        *live.api.routes,
        *live.sign_in_api.routes,
        *live.wechat_api.routes,
        *live.video_api.routes,
        *live.hls_api.routes,
        *realtime.endpoint.routes,
        *shop.api.routes[1:],
        *shop.after_sale_api.routes,
        *shop.leaders_api.routes,
        *shop.settlement_api.routes,
        *shop.replay_api.routes,
        *reporting.api.routes,
        *reporting.customers_api.routes,
        *live.leader_links.routes,
        *live.pages.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.openapi = openapi.build(
        routes,
        title="LiveCart API",
        version=__version__,
        status_of=status_of,
        auth_errors=[InvalidToken, (InvalidToken, "token_expired"), NotPermitted],
        settings=settings,
    )
    return app
