"""HTTP endpoints of customer data (SPEC §9): the host's customer list and a customer's page, and a
customer's own view (``/api/me``): their orders across every show of the host, what they earned as a
promoter and whom they brought.

The host sees only their own customers (another host's reads as unknown), phones masked. A customer sees
only their own: the token (``Authorization: Bearer c.…``, or the shop's cookie with ``?shop=<host id>``)
says who, nothing in the request can name anyone else. Limits: ``LIVECART_LIMIT_REPORTS_PER_HOST`` and
``LIVECART_LIMIT_ME_PER_CUSTOMER``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.clock import iso
from base.csv_export import csv_response
from base.errors import RateLimited
from base.fields import Identifier
from base.http import read_query
from base.limits import Limit
from base.openapi import Header, Reply, doc
from identity.errors import SignInRequired
from identity.models import Customer
from identity.phones import masked
from identity.tokens import CustomerIdentity, customer_cookie
from live.errors import InvalidPage
from live.host_rooms import next_show
from live.models import Leader
from reporting import customers
from reporting.api import ReportingServices, services
from shop import settlement
from shop.errors import UnknownResource
from shop.leaders_api import leader_links
from shop.schemas import AddressOut

CSV_COLUMNS = (
    "id",
    "name",
    "phone_masked",
    "wechat",
    "first_seen",
    "last_seen",
    "orders_paid",
    "spent",
    "promoter_id",
    "promoter_name",
    "leader_id",
    "is_leader",
)


class CustomersQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200)
    before: Identifier | None = Field(default=None, description="the last customer id of the page before")
    format: str | None = Field(default=None, description="csv: every customer as a CSV file")


class MeQuery(BaseModel):
    shop: Identifier | None = Field(
        default=None, description="the shop (host id) whose cookie signs the page in, without a bearer token"
    )


class CustomerLineOut(BaseModel):
    id: str
    name: str
    phone_masked: str | None
    wechat: bool
    first_seen: str
    last_seen: str
    orders_paid: int
    #: Paid and kept: paid orders less their refunds.
    spent: int
    promoter_id: str | None
    promoter_name: str | None
    leader_id: str | None
    bound_at: str | None
    is_leader: bool


class CustomerOrderOut(BaseModel):
    id: str
    room_id: str
    room_title: str
    card_id: str
    product_name: str
    quantity: int
    amount: int
    refunded_amount: int
    currency: str
    status: str
    created_at: str
    paid_at: str | None
    carrier: str | None
    tracking_number: str | None
    shipped_at: str | None


class CustomerPageOut(CustomerLineOut):
    orders: list[CustomerOrderOut]
    referred_customers: int


class EarningsOut(BaseModel):
    accrued: int
    clawed_back: int
    net: int
    paid_out: int
    owed: int
    payable: int


class MyLeaderOut(BaseModel):
    id: str
    name: str
    code: str
    url: str
    qr_url: str
    commission_bps: int | None
    suspended: bool


class NextShowOut(BaseModel):
    room_id: str
    title: str
    status: str
    scheduled_at: str | None
    url: str


class MeOut(BaseModel):
    customer_id: str
    host_id: str
    name: str
    phone_masked: str | None
    orders: list[CustomerOrderOut]
    earnings: EarningsOut
    referred_customers: int
    leader: MyLeaderOut | None
    next_show: NextShowOut | None


class MyCustomerOut(BaseModel):
    id: str
    name: str
    phone_masked: str | None
    bound_at: str
    orders_paid: int
    spent: int
    commission: int


class MyCommissionOut(BaseModel):
    id: str
    order_id: str
    room_id: str
    room_title: str
    kind: str
    amount: int
    rate_bps: int | None
    created_at: str
    payable_at: str | None
    payout_id: str | None
    order_status: str
    #: Where the order ships, masked: the recipient's family name, the phone's last four digits, the region.
    ship_to: AddressOut | None


# -- the host's ----------------------------------------------------------------------------------------


@doc(
    query=CustomersQuery,
    responses={
        200: Reply(
            "Your customers, newest first, a page at a time (or every one as CSV with ?format=csv)",
            {"application/json": [CustomerLineOut], "text/csv": None},
            {"Content-Disposition": Header("The CSV's file name (CSV only)", required=False)},
        )
    },
    errors=[InvalidPage, RateLimited],
    summary="Your customers: first and last seen, orders, spend, who brought them (phones masked)",
)
async def list_customers(request: Request) -> Response:
    st = services(request)
    host = await st.auth.require_host(request)
    await st.rate_limits.hit(Limit.REPORTS_PER_HOST, host.host_id, what="requests of this shop")
    query = read_query(request, CustomersQuery)
    csv = query.format == "csv"
    async with st.sessions() as session:
        before = None
        if query.before is not None and not csv:
            before = await session.get(Customer, query.before)
            if before is None or before.host_id != host.host_id:
                raise InvalidPage("before: this is not one of your customers.")
        rows = await customers.page(session, host.host_id, limit=None if csv else query.limit, before=before)
        lines = await customers.customer_lines(
            session, host.host_id, rows, now_ms=st.clock.now_ms(), binding_days=st.settings.binding_days
        )
    if csv:
        return csv_response("customers.csv", CSV_COLUMNS, lines)
    return JSONResponse(lines)


@doc(
    responses={200: CustomerPageOut},
    errors=[UnknownResource, RateLimited],
    summary="One of your customers, with their orders across every show",
)
async def get_customer(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    await st.rate_limits.hit(Limit.REPORTS_PER_HOST, host.host_id, what="requests of this shop")
    now = st.clock.now_ms()
    async with st.sessions() as session:
        customer = await session.get(Customer, request.path_params["customer"])
        if customer is None or customer.host_id != host.host_id:
            raise UnknownResource("No such customer among yours.")
        (line,) = await customers.customer_lines(
            session, host.host_id, [customer], now_ms=now, binding_days=st.settings.binding_days
        )
        orders = await customers.orders_of(session, customer.id, currency=st.settings.currency)
        brought = await customers.referred(
            session, host.host_id, customer.id, now_ms=now, days=st.settings.binding_days
        )
    return JSONResponse({**line, "orders": orders, "referred_customers": len(brought)})


# -- the customer's own --------------------------------------------------------------------------------


async def _me(request: Request) -> tuple[ReportingServices, CustomerIdentity, Customer]:
    st = services(request)
    shop = read_query(request, MeQuery).shop
    who = st.auth.customer(request, cookie=customer_cookie(shop) if shop else None)
    if who is None:
        raise SignInRequired(
            "Sign in with your phone number (or WeChat) to see your own orders and earnings."
        )
    await st.rate_limits.hit(Limit.ME_PER_CUSTOMER, who.customer_id, what="requests")
    async with st.sessions() as session:
        customer = await session.get(Customer, who.customer_id)
    if customer is None or customer.host_id != who.host_id:
        raise SignInRequired("This sign-in is no longer valid; sign in again.")
    return st, who, customer


@doc(
    query=MeQuery,
    responses={200: MeOut},
    auth="optional",  # a customer token, or the shop's cookie with ?shop=
    errors=[SignInRequired, RateLimited],
    summary="My orders across every show of this shop, my earnings as a promoter, my leader link",
)
async def get_me(request: Request) -> JSONResponse:
    st, who, customer = await _me(request)
    now = st.clock.now_ms()
    async with st.sessions() as session:
        orders = await customers.orders_of(session, customer.id, currency=st.settings.currency)
        figures = await settlement.figures(
            session,
            who.host_id,
            now_ms=now,
            after_sale_days=st.settings.after_sale_days,
            promoter_id=customer.id,
        )
        brought = await customers.referred(
            session, who.host_id, customer.id, now_ms=now, days=st.settings.binding_days
        )
        leader = (
            await session.execute(
                Leader.__table__.select().where(
                    Leader.host_id == who.host_id, Leader.customer_id == customer.id
                )
            )
        ).first()
        show = await next_show(session, who.host_id)
    mine = figures.get(customer.id, settlement.zero_figures())
    base = st.settings.base_url.rstrip("/")
    body: dict[str, Any] = {
        "customer_id": customer.id,
        "host_id": who.host_id,
        "name": settlement.customer_name(customer),
        "phone_masked": masked(customer.phone) if customer.phone else None,
        "orders": orders,
        "earnings": {k: mine[k] for k in ("accrued", "clawed_back", "net", "paid_out", "owed", "payable")},
        "referred_customers": len(brought),
        "leader": None,
        "next_show": None,
    }
    if leader is not None:
        body["leader"] = {
            "id": leader.id,
            "name": leader.name,
            "code": leader.code,
            **leader_links(st.settings, leader.code),
            "commission_bps": leader.commission_bps,
            "suspended": leader.suspended,
        }
    if show is not None:
        invite = f"?invite={leader.code}" if leader is not None else ""
        body["next_show"] = {
            "room_id": show.id,
            "title": show.title,
            "status": show.status,
            "scheduled_at": iso(show.scheduled_ms),
            "url": f"{base}/r/{show.id}{invite}",
        }
    return JSONResponse(body)


@doc(
    query=MeQuery,
    responses={200: [MyCustomerOut]},
    auth="optional",
    errors=[SignInRequired, RateLimited],
    summary="The customers bound to me (whom my link brought), with what they bought and earned me",
)
async def get_my_customers(request: Request) -> JSONResponse:
    st, who, customer = await _me(request)
    async with st.sessions() as session:
        lines = await customers.my_customers(
            session, who.host_id, customer.id, now_ms=st.clock.now_ms(), days=st.settings.binding_days
        )
    return JSONResponse(lines)


@doc(
    query=MeQuery,
    responses={200: [MyCommissionOut]},
    auth="optional",
    errors=[SignInRequired, RateLimited],
    summary="My commission ledger rows, newest first, with when each becomes payable",
)
async def get_my_commissions(request: Request) -> JSONResponse:
    st, who, customer = await _me(request)
    async with st.sessions() as session:
        rows = await customers.my_commissions(
            session, customer.id, who.host_id, after_sale_days=st.settings.after_sale_days
        )
    return JSONResponse(rows)


routes = [
    Route("/api/customers", list_customers, methods=["GET"]),
    Route("/api/customers/{customer:id}", get_customer, methods=["GET"]),
    Route("/api/me", get_me, methods=["GET"]),
    Route("/api/me/customers", get_my_customers, methods=["GET"]),
    Route("/api/me/commissions", get_my_commissions, methods=["GET"]),
]
