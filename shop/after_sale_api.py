"""HTTP endpoints of fulfilment and after-sale (SPEC §10): ship, deliver, receive; after-sale requests and
their decisions; the shop's refunds, and sending a pending one again.

Who calls:

- the host of the order's room ships, delivers, decides requests and reads the shop's lists (another host:
  403, as for another host's order elsewhere);
- the buyer receives, files and withdraws requests: with their viewer token for the order's room, or as the
  customer that viewer is (``Authorization: Bearer c.…``, or the shop's cookie with ``?shop=<host id>``);
- either reads an order's requests.

A buyer's requests and withdrawals count against ``LIVECART_LIMIT_AFTER_SALE_PER_CUSTOMER``; the host's lists
against ``LIVECART_LIMIT_REPORTS_PER_HOST``, sending a refund again against
``LIVECART_LIMIT_SETTLEMENT_PER_HOST`` (each send is a call to the provider).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.errors import RateLimited
from base.http import read_json, read_query
from base.limits import Limit
from base.openapi import ErrorSpec, doc
from identity.errors import InvalidToken, NotPermitted
from identity.guards import bearer
from identity.tokens import HostIdentity, customer_cookie
from shop.after_sale_schemas import (
    AfterSaleIn,
    AfterSaleOut,
    AfterSalesQuery,
    ApproveIn,
    BuyerQuery,
    RefundOut,
    RefundsQuery,
    RejectIn,
    ShipIn,
    ShopAfterSaleOut,
)
from shop.errors import (
    AfterSaleRefused,
    InvalidRefund,
    OrderStateConflict,
    RefundStateConflict,
    UnknownResource,
)
from shop.fulfilment import BuyerIdentity, buyer_key
from shop.leaders_api import host_caller
from shop.schemas import OrderOut
from shop.services import services

#: What a route that takes the buyer's token or cookie answers for who is calling (``auth="optional"``: the
#: cookie needs no bearer token).
BUYER_AUTH: list[ErrorSpec] = [InvalidToken, (InvalidToken, "token_expired"), NotPermitted]


async def caller(request: Request) -> HostIdentity | BuyerIdentity:
    """The host, or a buyer: a bearer token (host, viewer or customer; one that does not verify is 401), or
    without one, the shop's customer cookie named by ``?shop=``."""
    st = services(request)
    shop = read_query(request, BuyerQuery).shop  # checked whatever signs the caller in
    token = bearer(request)
    if token is not None:
        return await st.auth.verify(token)
    customer = st.auth.customer(request, cookie=customer_cookie(shop)) if shop else None
    if customer is None:
        raise InvalidToken(
            "Send 'Authorization: Bearer <token>' (your viewer or customer token), or sign in at the shop "
            "and add ?shop=<its id>."
        )
    return customer


async def buyer(request: Request, *, limited: bool = False) -> BuyerIdentity:
    """A buyer (see ``caller``); a host is refused (403). ``limited``: counted against the buyer's
    after-sale rate."""
    who = await caller(request)
    if isinstance(who, HostIdentity):
        raise NotPermitted("Only the order's buyer may do this.")
    if limited:
        await services(request).rate_limits.hit(
            Limit.AFTER_SALE_PER_CUSTOMER, buyer_key(who), what="after-sale requests"
        )
    return who


# -- fulfilment ---------------------------------------------------------------------------------------------


@doc(
    body=ShipIn,
    responses={200: OrderOut},
    errors=[UnknownResource, OrderStateConflict],
    summary="Ship a paid order (carrier, tracking number); again, to correct them",
)
async def ship_order(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, ShipIn)
    order = await st.fulfilment.ship(
        host, request.path_params["order"], tracking_number=body.tracking_number, carrier=body.carrier
    )
    return JSONResponse(order)


@doc(
    responses={200: OrderOut},
    errors=[UnknownResource, OrderStateConflict],
    summary="Mark a shipped order delivered (a paid one, for a product that does not ship)",
)
async def deliver_order(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    return JSONResponse(await st.fulfilment.deliver(host, request.path_params["order"]))


@doc(
    query=BuyerQuery,
    responses={200: OrderOut},
    auth="optional",
    errors=[*BUYER_AUTH, UnknownResource, OrderStateConflict],
    summary="Confirm receipt of a shipped or delivered order (确认收货): it is completed",
)
async def receive_order(request: Request) -> JSONResponse:
    who = await buyer(request)
    return JSONResponse(await services(request).fulfilment.receive(who, request.path_params["order"]))


# -- after-sale ---------------------------------------------------------------------------------------------


@doc(
    query=BuyerQuery,
    body=AfterSaleIn,
    responses={201: AfterSaleOut},
    auth="optional",
    errors=[
        *BUYER_AUTH,
        UnknownResource,
        AfterSaleRefused,
        (AfterSaleRefused, "after_sale_open"),
        InvalidRefund,
        RateLimited,
    ],
    summary="Ask for a refund, or to return the goods for one, within the after-sale window",
)
async def request_after_sale(request: Request) -> JSONResponse:
    who = await buyer(request, limited=True)
    body = await read_json(request, AfterSaleIn)
    filed = await services(request).after_sales.request(
        who, request.path_params["order"], kind=body.kind, reason=body.reason, amount=body.amount
    )
    return JSONResponse(filed, status_code=201)


@doc(
    query=BuyerQuery,
    responses={200: [AfterSaleOut]},
    auth="optional",
    errors=[*BUYER_AUTH, UnknownResource],
    summary="An order's after-sale requests, oldest first (its buyer, or the host)",
)
async def order_after_sales(request: Request) -> JSONResponse:
    who = await caller(request)
    return JSONResponse(await services(request).after_sales.of_order(who, request.path_params["order"]))


@doc(
    query=BuyerQuery,
    responses={200: AfterSaleOut},
    auth="optional",
    errors=[*BUYER_AUTH, UnknownResource, (AfterSaleRefused, "after_sale_not_open"), RateLimited],
    summary="Withdraw your after-sale request (while the host has not decided it)",
)
async def withdraw_after_sale(request: Request) -> JSONResponse:
    who = await buyer(request, limited=True)
    st = services(request)
    return JSONResponse(await st.after_sales.withdraw(who, request.path_params["after_sale"]))


@doc(
    query=AfterSalesQuery,
    responses={200: [ShopAfterSaleOut]},
    errors=[RateLimited],
    summary="Your shop's after-sale requests, newest first (the latest 200), each with its order",
)
async def list_after_sales(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    status = read_query(request, AfterSalesQuery).status
    return JSONResponse(await st.after_sales.of_shop(host, status=status))


@doc(
    body=ApproveIn,
    body_required=False,
    responses={200: AfterSaleOut},
    errors=[
        UnknownResource,
        (AfterSaleRefused, "after_sale_not_open"),
        OrderStateConflict,
        InvalidRefund,
    ],
    summary="Approve an after-sale request: the refund runs (full or partial; restock or not)",
)
async def approve_after_sale(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, ApproveIn, empty_ok=True)
    approved = await st.after_sales.approve(
        host, request.path_params["after_sale"], amount=body.amount, restock=body.restock, note=body.note
    )
    return JSONResponse(approved)


@doc(
    body=RejectIn,
    responses={200: AfterSaleOut},
    errors=[UnknownResource, (AfterSaleRefused, "after_sale_not_open")],
    summary="Reject an after-sale request, with the reason the buyer sees",
)
async def reject_after_sale(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, RejectIn)
    return JSONResponse(
        await st.after_sales.reject(host, request.path_params["after_sale"], reason=body.reason)
    )


# -- refunds ------------------------------------------------------------------------------------------------


@doc(
    query=RefundsQuery,
    responses={200: [RefundOut]},
    errors=[RateLimited],
    summary="Your shop's refunds, newest first (the latest 200): sent, pending (with the last error) or done",
)
async def list_refunds(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    status = read_query(request, RefundsQuery).status
    return JSONResponse(await st.after_sales.refunds(host, status=status))


@doc(
    responses={200: RefundOut},
    errors=[UnknownResource, RefundStateConflict, RateLimited],
    summary="Send a pending refund to its payment provider now",
)
async def retry_refund(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.SETTLEMENT_PER_HOST)
    return JSONResponse(await st.after_sales.retry_refund(host, request.path_params["refund"]))


routes = [
    Route("/api/orders/{order:id}/ship", ship_order, methods=["POST"]),
    Route("/api/orders/{order:id}/deliver", deliver_order, methods=["POST"]),
    Route("/api/orders/{order:id}/receive", receive_order, methods=["POST"]),
    Route("/api/orders/{order:id}/after-sale", request_after_sale, methods=["POST"]),
    Route("/api/orders/{order:id}/after-sales", order_after_sales, methods=["GET"]),
    Route("/api/after-sales", list_after_sales, methods=["GET"]),
    Route("/api/after-sales/{after_sale:id}/withdraw", withdraw_after_sale, methods=["POST"]),
    Route("/api/after-sales/{after_sale:id}/approve", approve_after_sale, methods=["POST"]),
    Route("/api/after-sales/{after_sale:id}/reject", reject_after_sale, methods=["POST"]),
    Route("/api/refunds", list_refunds, methods=["GET"]),
    Route("/api/refunds/{refund:id}/retry", retry_refund, methods=["POST"]),
]
