"""HTTP endpoints of ``shop`` (SPEC §4): products, cards, orders, payments and a room's orders."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.csv_export import csv_response
from base.errors import RateLimited
from base.http import client_ip, read_body, read_json, read_query
from base.limits import Limit
from base.openapi import Header, Reply, doc
from identity.errors import InvalidPhone
from identity.tokens import HostIdentity
from live.errors import UnknownRoom
from live.host_rooms import owned_room
from live.models import Room
from shop.errors import (
    AddressRequired,
    CardStateConflict,
    IdempotencyMismatch,
    InvalidIdempotencyKey,
    InvalidQuantity,
    InvalidRefund,
    InvalidSignature,
    InvalidWebhook,
    InventoryUnavailable,
    LimitExceeded,
    MissingIdempotencyKey,
    OrderStateConflict,
    ProviderFailed,
    RejectedNotification,
    SaleNotOpen,
    SoldOut,
    TooManyOrders,
    UnknownProvider,
    UnknownResource,
    WrongRoom,
)
from shop.orders.repo import room_orders
from shop.payments.dev import WebhookEvent
from shop.payments.signing import HEADER as SIGNATURE_HEADER
from shop.schemas import (
    IDEMPOTENCY_KEY_SCHEMA,
    SIGNATURE_SCHEMA,
    CardIn,
    CardOpenIn,
    CardOut,
    CardPatchIn,
    CheckoutOptionsOut,
    DevCompleteIn,
    DevCompleteOut,
    OrderIn,
    OrderOut,
    PayIn,
    PaymentOut,
    PayOut,
    ProductIn,
    ProductOut,
    RefundIn,
    RoomOrdersQuery,
    WebhookOut,
)
from shop.services import services
from shop.views import order_json

IDEMPOTENCY_HEADER = "Idempotency-Key"


@doc(body=ProductIn, responses={201: ProductOut}, summary="Create a product")
async def create_product(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, ProductIn)
    return JSONResponse(await st.catalog.create_product(host, body), status_code=201)


@doc(responses={200: [ProductOut]}, summary="List your products")
async def list_products(request: Request) -> JSONResponse:
    st = services(request)
    return JSONResponse(await st.catalog.list_products(await st.auth.require_host(request)))


@doc(
    body=CardIn,
    responses={201: CardOut},
    errors=[UnknownRoom, (CardStateConflict, "room_ended"), (UnknownResource, "unknown_product")],
    summary="Pin a product card in a room",
)
async def create_card(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, CardIn)
    return JSONResponse(
        await st.catalog.create_card(host, request.path_params["room"], body), status_code=201
    )


@doc(
    body=CardOpenIn,
    body_required=False,
    responses={200: CardOut},
    errors=[UnknownResource, (CardStateConflict, "room_ended")],
    summary="Open the flash sale of a card",
)
async def open_card(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, CardOpenIn, empty_ok=True)
    return JSONResponse(await st.catalog.open_card(host, request.path_params["card"], body))


@doc(responses={200: CardOut}, errors=[UnknownResource], summary="Close the sale of a card")
async def close_card(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    return JSONResponse(await st.catalog.close_card(host, request.path_params["card"]))


@doc(
    body=CardPatchIn,
    responses={200: CardOut},
    errors=[UnknownResource],
    summary="Cut the price (new reservations) or add stock",
)
async def patch_card(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, CardPatchIn)
    return JSONResponse(await st.catalog.patch_card(host, request.path_params["card"], body))


@doc(responses={200: CardOut}, errors=[UnknownResource], summary="Get a card with its live stock")
async def get_card(request: Request) -> JSONResponse:
    st = services(request)
    return JSONResponse(await st.catalog.view(await st.auth.identify(request), request.path_params["card"]))


def _idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or not key.strip():
        raise MissingIdempotencyKey(
            "Send an Idempotency-Key header (a fresh random value per purchase attempt)."
        )
    if len(key) > 255 or not key.isprintable() or not key.isascii():
        raise InvalidIdempotencyKey("The Idempotency-Key must be 1-255 printable ASCII characters.")
    return key


@doc(
    body=OrderIn,
    responses={201: OrderOut, 200: OrderOut},
    headers={
        IDEMPOTENCY_HEADER: Header(
            "A fresh value per purchase attempt; a retry with it returns the same order",
            IDEMPOTENCY_KEY_SCHEMA,
        )
    },
    maximum={"quantity": "max_order_quantity"},
    errors=[
        MissingIdempotencyKey,
        InvalidIdempotencyKey,
        InvalidQuantity,
        IdempotencyMismatch,
        UnknownResource,
        WrongRoom,
        SaleNotOpen,
        LimitExceeded,
        SoldOut,
        InventoryUnavailable,
        TooManyOrders,
    ],
    summary="Buy: reserve units of a card (pay within the reservation window)",
)
async def place_order(request: Request) -> JSONResponse:
    st = services(request)
    viewer = st.auth.require_viewer(request)
    key = _idempotency_key(request)
    body = await read_json(request, OrderIn, codes={"quantity": "invalid_quantity"})
    order, created = await st.orders.place(
        viewer,
        request.path_params["card"],
        quantity=body.quantity,
        idempotency_key=key,
        address=client_ip(request),
    )
    return JSONResponse(order, status_code=201 if created else 200)


@doc(responses={200: OrderOut}, errors=[UnknownResource], summary="Get an order (its buyer, or the host)")
async def get_order(request: Request) -> JSONResponse:
    st = services(request)
    return JSONResponse(await st.orders.get(await st.auth.identify(request), request.path_params["order"]))


@doc(
    body=PayIn,
    body_required=False,
    responses={200: PayOut},
    errors=[
        UnknownResource,
        (OrderStateConflict, "order_not_payable"),
        (OrderStateConflict, "order_expired"),
        UnknownProvider,
        AddressRequired,
        InvalidPhone,
        ProviderFailed,
        RateLimited,
    ],
    summary="Start paying a reserved order (provider, channel, shipping address)",
)
async def pay_order(request: Request) -> JSONResponse:
    st = services(request)
    viewer = st.auth.require_viewer(request)
    await st.rate_limits.hit(Limit.CHECKOUT_PER_CUSTOMER, viewer.buyer_key, what="checkouts")
    body = await read_json(request, PayIn, empty_ok=True)
    return JSONResponse(
        await st.payments.start_checkout(
            viewer,
            request.path_params["order"],
            body,
            user_agent=request.headers.get("user-agent", ""),
            client_ip=client_ip(request),
        )
    )


@doc(
    responses={200: CheckoutOptionsOut},
    errors=[
        UnknownResource,
        (OrderStateConflict, "order_not_payable"),
        (OrderStateConflict, "order_expired"),
        RateLimited,
    ],
    summary="How a reserved order can be paid here: providers, channels, the address to offer",
)
async def checkout_options(request: Request) -> JSONResponse:
    st = services(request)
    viewer = st.auth.require_viewer(request)
    await st.rate_limits.hit(Limit.CHECKOUT_PER_CUSTOMER, viewer.buyer_key, what="checkouts")
    return JSONResponse(
        await st.payments.checkout_options(
            viewer, request.path_params["order"], user_agent=request.headers.get("user-agent", "")
        )
    )


@doc(
    responses={200: OrderOut},
    errors=[UnknownResource, OrderStateConflict],
    summary="Cancel a reserved order (stock is released)",
)
async def cancel_order(request: Request) -> JSONResponse:
    st = services(request)
    viewer = st.auth.require_viewer(request)
    return JSONResponse(await st.orders.cancel(viewer, request.path_params["order"]))


@doc(
    body=RefundIn,
    body_required=False,
    responses={200: OrderOut},
    errors=[UnknownResource, OrderStateConflict, InvalidRefund],
    summary="Refund a paid order, or part of it (its commission is clawed back in proportion)",
)
async def refund_order(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, RefundIn, empty_ok=True)
    order_id = request.path_params["order"]
    return JSONResponse(await st.orders.refund(host, order_id, restock=body.restock, amount=body.amount))


def _require_dev_payments(request: Request) -> None:
    if not services(request).settings.dev_payments_enabled:
        raise UnknownResource("The dev payment provider is disabled on this server.")


@doc(
    responses={200: PaymentOut},
    auth=False,
    errors=[UnknownResource],
    summary="Dev provider: the checkout (payment status)",
)
async def dev_checkout(request: Request) -> JSONResponse:
    _require_dev_payments(request)
    return JSONResponse(await services(request).payments.get_payment(request.path_params["payment"]))


@doc(
    body=DevCompleteIn,
    responses={200: DevCompleteOut},
    auth=False,
    errors=[UnknownResource, (OrderStateConflict, "payment_not_pending")],
    summary="Dev provider: simulate the customer paying (or failing)",
)
async def dev_complete(request: Request) -> JSONResponse:
    _require_dev_payments(request)
    body = await read_json(request, DevCompleteIn)
    return JSONResponse(
        await services(request).payments.dev_complete(request.path_params["payment"], body.outcome)
    )


@doc(
    body=WebhookEvent,
    raw_body="application/json",
    responses={200: WebhookOut},
    auth=False,
    errors=[InvalidSignature, InvalidWebhook],
    headers={
        SIGNATURE_HEADER: Header(
            "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>, within the tolerance of now",
            SIGNATURE_SCHEMA,
        )
    },
    summary="Payment provider webhook (signed)",
)
async def payment_webhook(request: Request) -> JSONResponse:
    st = services(request)
    body = await read_body(request, max_bytes=st.settings.max_body_bytes)
    return JSONResponse(await st.payments.receive_webhook(body, request.headers.get(SIGNATURE_HEADER)))


async def _provider_notification(request: Request, provider: str) -> Response:
    st = services(request)
    await st.rate_limits.hit(Limit.NOTIFY_PER_IP, client_ip(request), what="notifications")
    body = await read_body(request, max_bytes=st.settings.max_body_bytes)
    reply = await st.payments.notify(provider, request.headers, body)
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type)


@doc(
    raw_body="application/json",
    responses={200: Reply("Applied (or a redelivery, recognised)")},
    auth=False,
    errors=[RejectedNotification, UnknownProvider, RateLimited],
    summary="WeChat Pay API v3 notification (payments and refunds; signed, resource AES-256-GCM encrypted)",
)
async def wechat_notify(request: Request) -> Response:
    return await _provider_notification(request, "wechat")


@doc(
    raw_body="application/x-www-form-urlencoded",
    responses={200: Reply("`success` (text/plain): applied, or a redelivery")},
    auth=False,
    errors=[RejectedNotification, UnknownProvider, RateLimited],
    summary="Alipay asynchronous notification (RSA2-signed form)",
)
async def alipay_notify(request: Request) -> Response:
    return await _provider_notification(request, "alipay")


@doc(
    raw_body="application/json",
    responses={200: Reply("Applied (or a redelivery, recognised)")},
    auth=False,
    errors=[RejectedNotification, UnknownProvider, RateLimited],
    summary="Stripe webhook (Stripe-Signature)",
)
async def stripe_webhook(request: Request) -> Response:
    return await _provider_notification(request, "stripe")


async def _own_room(request: Request) -> tuple[HostIdentity, Room]:
    st = services(request)
    host = await st.auth.require_host(request)
    async with st.sessions() as session:
        return host, await owned_room(session, host, request.path_params["room"])


CSV_COLUMNS = [
    "id",
    "created_at",
    "status",
    "product",
    "card_id",
    "buyer_id",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "paid_at",
    "refunded_amount",
    "referrer_id",
    "carrier",
    "tracking_number",
    "shipped_at",
    "ship_name",
    "ship_phone",
    "ship_region",
    "ship_line",
    "refund_reason",
]


def _csv_row(order: dict[str, Any], product: str) -> dict[str, Any]:
    """An order's CSV line: its address spread over the ``ship_*`` columns (the host ships from it)."""
    address = order["address"] or {}
    return {
        **order,
        "product": product,
        **{f"ship_{part}": address.get(part) for part in ("name", "phone", "region", "line")},
    }


@doc(
    query=RoomOrdersQuery,
    responses={
        200: Reply(
            "The room's orders (JSON, or CSV with ?format=csv)",
            {"application/json": [OrderOut], "text/csv": None},
            {"Content-Disposition": Header("The CSV's file name (CSV only)", required=False)},
        )
    },
    errors=[UnknownRoom],
    summary="Orders of a room (?format=csv for a CSV export)",
)
async def list_room_orders(request: Request) -> Response:
    st = services(request)
    _, room = await _own_room(request)
    async with st.sessions() as session:
        rows = await room_orders(session, room.id)
    orders = [(order_json(o, currency=st.settings.currency), p.name) for o, p in rows]
    if read_query(request, RoomOrdersQuery).format == "csv":
        return csv_response(
            f"orders-{room.id}.csv",
            CSV_COLUMNS,
            (_csv_row(order, product) for order, product in orders),
        )
    return JSONResponse([order for order, _ in orders])


routes = [
    # The router tries routes in order: the flash-sale buy, by far the busiest, first.
    Route("/api/cards/{card:id}/orders", place_order, methods=["POST"]),
    Route("/api/products", create_product, methods=["POST"]),
    Route("/api/products", list_products, methods=["GET"]),
    Route("/api/rooms/{room:id}/cards", create_card, methods=["POST"]),
    Route("/api/cards/{card:id}", get_card, methods=["GET"]),
    Route("/api/cards/{card:id}", patch_card, methods=["PATCH"]),
    Route("/api/cards/{card:id}/open", open_card, methods=["POST"]),
    Route("/api/cards/{card:id}/close", close_card, methods=["POST"]),
    Route("/api/orders/{order:id}", get_order, methods=["GET"]),
    Route("/api/orders/{order:id}/pay", pay_order, methods=["POST"]),
    Route("/api/orders/{order:id}/checkout", checkout_options, methods=["GET"]),
    Route("/api/orders/{order:id}/cancel", cancel_order, methods=["POST"]),
    Route("/api/orders/{order:id}/refund", refund_order, methods=["POST"]),
    Route("/api/payments/dev/{payment:id}", dev_checkout, methods=["GET"]),
    Route("/api/payments/dev/{payment:id}/complete", dev_complete, methods=["POST"]),
    Route("/api/payments/webhook", payment_webhook, methods=["POST"]),
    Route("/api/payments/wechat/notify", wechat_notify, methods=["POST"]),
    Route("/api/payments/alipay/notify", alipay_notify, methods=["POST"]),
    Route("/api/payments/stripe/webhook", stripe_webhook, methods=["POST"]),
    Route("/api/rooms/{room:id}/orders", list_room_orders, methods=["GET"]),
]
