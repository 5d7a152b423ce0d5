"""HTTP endpoints of the host's roster of leaders (团长) and the shop's own commission rate (SPEC §9), and of
how the shop keeps its replays and sells in them (issue 14: ``replay_keep_days``, ``replay_sales_hours``).

Every call is the host's, on their own leaders only (another host's leader reads as unknown). Reads count
against ``LIVECART_LIMIT_REPORTS_PER_HOST``, changes against ``LIVECART_LIMIT_SETTLEMENT_PER_HOST``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.clock import iso
from base.db import insert_ignoring_conflicts
from base.errors import RateLimited
from base.http import read_json
from base.ids import new_id, random_code
from base.limits import Limit
from base.openapi import doc
from base.settings import Settings
from identity import customers
from identity.errors import InvalidPhone
from identity.models import Customer
from identity.phones import masked, normalise
from identity.tokens import HostIdentity
from live.bindings import DAY_MS
from live.models import Binding, Host, Leader
from shop import settlement
from shop.errors import LeaderExists, UnknownProvider, UnknownResource
from shop.services import ShopServices, services
from shop.settlement_schemas import LeaderIn, LeaderOut, LeaderPatchIn, ShopOut, ShopPatchIn


async def host_caller(request: Request, limit: Limit) -> tuple[ShopServices, HostIdentity]:
    st = services(request)
    host = await st.auth.require_host(request)
    await st.rate_limits.hit(limit, host.host_id, what="requests of this shop")
    return st, host


def leader_links(settings: Settings, code: str) -> dict[str, str]:
    base = settings.base_url.rstrip("/")
    return {"url": f"{base}/j/{code}", "qr_url": f"{base}/j/{code}/qr.svg"}


async def bound_counts(
    session: AsyncSession, host_id: str, *, now_ms: int, binding_days: float
) -> dict[str, int]:
    """promoter customer id → customers bound to them now (a binding in force is its customer's latest)."""
    conditions = [Binding.host_id == host_id]
    if binding_days:
        conditions.append(Binding.bound_ms > now_ms - int(binding_days * DAY_MS))
    rows = await session.execute(
        select(Binding.promoter_id, func.count()).where(*conditions).group_by(Binding.promoter_id)
    )
    return {p: int(n) for p, n in rows.all()}


async def leaders_json(
    st: ShopServices, session: AsyncSession, host_id: str, leaders: list[Leader]
) -> list[dict[str, Any]]:
    now = st.clock.now_ms()
    one = leaders[0].customer_id if len(leaders) == 1 else None  # one leader: their rows only
    figs = await settlement.figures(
        session, host_id, now_ms=now, after_sale_days=st.settings.after_sale_days, promoter_id=one
    )
    counts = await bound_counts(session, host_id, now_ms=now, binding_days=st.settings.binding_days)
    phones = dict(
        (
            await session.execute(
                select(Customer.id, Customer.phone).where(
                    Customer.id.in_([leader.customer_id for leader in leaders])
                )
            )
        ).all()
    )
    out = []
    for leader in leaders:
        phone = phones.get(leader.customer_id)
        out.append(
            {
                "id": leader.id,
                "customer_id": leader.customer_id,
                "name": leader.name,
                "phone_masked": masked(phone) if phone else None,
                "code": leader.code,
                **leader_links(st.settings, leader.code),
                "commission_bps": leader.commission_bps,
                "suspended": leader.suspended,
                "created_at": iso(leader.created_ms),
                "customers": counts.get(leader.customer_id, 0),
                **figs.get(leader.customer_id, settlement.zero_figures()),
            }
        )
    return out


async def _owned_leader(session: AsyncSession, host: HostIdentity, leader_id: str) -> Leader:
    leader = await session.get(Leader, leader_id)
    if leader is None or leader.host_id != host.host_id:
        raise UnknownResource("No such leader among yours.")
    return leader


@doc(
    body=LeaderIn,
    responses={201: LeaderOut},
    errors=[(UnknownResource, "unknown_customer"), LeaderExists, InvalidPhone, RateLimited],
    summary="Make one of your customers a leader (团长): a code for every show of yours",
)
async def create_leader(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.SETTLEMENT_PER_HOST)
    body = await read_json(request, LeaderIn)
    now = st.clock.now_ms()
    phone = normalise(body.phone, default_region=st.settings.default_phone_region) if body.phone else None
    async with st.sessions() as session, session.begin():
        if phone is not None:
            customer_id = await customers.upsert(
                session, host.host_id, now_ms=now, phone=phone, signed_in=False
            )
        else:
            assert body.customer_id is not None
            customer_id = body.customer_id
        customer = await session.get(Customer, customer_id)
        if customer is None or customer.host_id != host.host_id:
            raise UnknownResource("No such customer among yours.", code="unknown_customer")
        if customer.name is None and body.name is not None:  # until they join a show under a name of theirs
            customer.name = body.name
        leader_id = new_id("ld")
        inserted = await session.execute(
            insert_ignoring_conflicts(session, Leader)
            .values(
                id=leader_id,
                host_id=host.host_id,
                customer_id=customer_id,
                name=body.name or settlement.customer_name(customer),
                code=random_code(10),
                commission_bps=body.commission_bps,
                suspended=False,
                created_ms=now,
            )
            .returning(Leader.id)
        )
        if inserted.first() is None:
            raise LeaderExists("This customer is already one of your leaders.")
        leader = await session.get(Leader, leader_id)
        assert leader is not None
        (made,) = await leaders_json(st, session, host.host_id, [leader])
    return JSONResponse(made, status_code=201)


@doc(
    responses={200: [LeaderOut]},
    errors=[RateLimited],
    summary="Your leaders with their figures, oldest first",
)
async def list_leaders(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    async with st.sessions() as session:
        rows = await session.execute(
            select(Leader).where(Leader.host_id == host.host_id).order_by(Leader.created_ms, Leader.id)
        )
        return JSONResponse(await leaders_json(st, session, host.host_id, list(rows.scalars())))


@doc(responses={200: LeaderOut}, errors=[UnknownResource, RateLimited], summary="One of your leaders")
async def get_leader(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    async with st.sessions() as session:
        leader = await _owned_leader(session, host, request.path_params["leader"])
        (out,) = await leaders_json(st, session, host.host_id, [leader])
    return JSONResponse(out)


@doc(
    body=LeaderPatchIn,
    responses={200: LeaderOut},
    errors=[UnknownResource, RateLimited],
    summary="Rename a leader, set their rate, or suspend them (no new bindings; earned money stays)",
)
async def patch_leader(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.SETTLEMENT_PER_HOST)
    body = await read_json(request, LeaderPatchIn)
    async with st.sessions() as session, session.begin():
        leader = await _owned_leader(session, host, request.path_params["leader"])
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        await session.execute(update(Leader).where(Leader.id == leader.id).values(**changes))
        await session.refresh(leader)
        (out,) = await leaders_json(st, session, host.host_id, [leader])
    return JSONResponse(out)


def _shop_json(st: ShopServices, host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "name": host.name,
        "commission_bps": host.commission_bps,
        "default_commission_bps": st.settings.commission_rate_bps,
        "binding_days": st.settings.binding_days,
        "after_sale_days": st.settings.after_sale_days,
        "payment_providers": host.payment_providers.split(",") if host.payment_providers else None,
        "offered_providers": st.payments.providers.for_shop(host.payment_providers),
        "server_providers": st.payments.providers.names,
        "replay_keep_days": host.replay_keep_days,
        "default_replay_keep_days": st.settings.replay_keep_days,
        "replay_sales_hours": host.replay_sales_hours,
    }


@doc(responses={200: ShopOut}, errors=[RateLimited], summary="Your shop's commission terms and replays")
async def get_shop(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    async with st.sessions() as session:
        row = await session.get(Host, host.host_id)
    if row is None:
        raise UnknownResource("This host no longer exists.")
    return JSONResponse(_shop_json(st, row))


@doc(
    body=ShopPatchIn,
    responses={200: ShopOut},
    errors=[RateLimited, UnknownProvider],
    summary="Set your shop's commission rate, the payment providers it offers and how it keeps replays",
)
async def patch_shop(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.SETTLEMENT_PER_HOST)
    body = await read_json(request, ShopPatchIn)
    changes: dict[str, Any] = {}
    if "commission_bps" in body.model_fields_set:
        changes["commission_bps"] = body.commission_bps
    if "payment_providers" in body.model_fields_set:
        chosen = body.payment_providers
        missing = [p for p in chosen or [] if p not in st.payments.providers.names]
        if missing:
            raise UnknownProvider(
                f"payment_providers: {', '.join(missing)} not configured on this server"
                f" (it has: {', '.join(st.payments.providers.names) or 'none'})."
            )
        changes["payment_providers"] = ",".join(chosen) if chosen else None
    for name in ("replay_keep_days", "replay_sales_hours"):
        if name in body.model_fields_set:
            changes[name] = getattr(body, name)
    async with st.sessions() as session, session.begin():
        await session.execute(update(Host).where(Host.id == host.host_id).values(**changes))
        row = await session.get(Host, host.host_id)
        if row is None:
            raise UnknownResource("This host no longer exists.")
        await session.refresh(row)
    return JSONResponse(_shop_json(st, row))


routes = [
    Route("/api/leaders", create_leader, methods=["POST"]),
    Route("/api/leaders", list_leaders, methods=["GET"]),
    Route("/api/leaders/{leader:id}", get_leader, methods=["GET"]),
    Route("/api/leaders/{leader:id}", patch_leader, methods=["PATCH"]),
    Route("/api/shop", get_shop, methods=["GET"]),
    Route("/api/shop", patch_shop, methods=["PATCH"]),
]
