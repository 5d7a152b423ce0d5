"""HTTP endpoints of a buyer's sign-in (SPEC §8): a one-time code to their phone, then the code for a
customer token (also set as a cookie for the pages). A customer belongs to the shop of the room's host:
the same phone at the same host is always the same customer.

Abuse limits: codes 1/min per phone and 10/h per IP, sign-ins per IP, and 5 wrong codes lock the phone
for 15 min (every figure a setting)."""

from __future__ import annotations

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.db import insert_ignoring_conflicts
from base.errors import RateLimited
from base.http import client_ip, read_json
from base.ids import new_id
from base.limits import Limit
from base.openapi import doc
from identity.errors import InvalidCode, InvalidPhone, ProviderFailed, SignInUnavailable
from identity.models import Customer
from identity.phones import normalise
from identity.tokens import customer_cookie
from live.errors import UnknownRoom
from live.models import Room
from live.schemas import CodeIn, CodeSentOut, SignInIn, SignInOut
from live.services import LiveServices, services


def customer_scope(host_id: str) -> str:
    return f"c:{host_id}"


async def room_host(st: LiveServices, room_id: str) -> str:
    async with st.sessions() as session:
        room = await session.get(Room, room_id)
    if room is None:
        raise UnknownRoom("No such room.")
    return room.host_id


@doc(
    body=CodeIn,
    responses={202: CodeSentOut},
    auth=False,
    errors=[
        UnknownRoom,
        InvalidPhone,
        SignInUnavailable,
        RateLimited,
        (RateLimited, "locked"),
        ProviderFailed,
    ],
    summary="Send a one-time sign-in code to a phone (a buyer of this room's shop)",
)
async def send_code(request: Request) -> JSONResponse:
    st = services(request)
    body = await read_json(request, CodeIn)
    if st.sms is None:
        raise SignInUnavailable("Phone sign-in is not set up on this server.")
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    host_id = await room_host(st, request.path_params["room"])
    scope = customer_scope(host_id)
    await st.rate_limits.hit(Limit.SIGN_IN_CODE_PER_PHONE, f"{scope}|{phone}", what="codes for this number")
    await st.rate_limits.hit(Limit.SIGN_IN_CODE_PER_IP, client_ip(request), what="codes from this address")
    code = await st.codes.issue(scope, phone)
    try:
        await st.sms.send_code(phone, code)
    except ProviderFailed:
        await st.codes.forget(scope, phone)
        raise
    reply: dict[str, object] = {"sent": True}
    if st.sms.reveals_code:
        reply["dev_code"] = code
    return JSONResponse(reply, status_code=202)


@doc(
    body=SignInIn,
    responses={200: SignInOut},
    auth=False,
    errors=[UnknownRoom, InvalidPhone, InvalidCode, RateLimited, (RateLimited, "locked")],
    summary="Sign in with the code: a customer token (and cookie) for this room's shop",
)
async def sign_in(request: Request) -> JSONResponse:
    st = services(request)
    body = await read_json(request, SignInIn)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    host_id = await room_host(st, request.path_params["room"])
    await st.rate_limits.hit(Limit.SIGN_IN_PER_IP, client_ip(request), what="sign-ins from this address")
    await st.codes.check(customer_scope(host_id), phone, body.code)
    customer_id = await upsert_customer(st, host_id, phone=phone)
    return signed_in(st, customer_id, host_id)


async def upsert_customer(st: LiveServices, host_id: str, *, phone: str) -> str:
    """The customer with this phone at this host, created on first sign-in (concurrent first sign-ins of
    the same phone make one customer)."""
    now = st.clock.now_ms()
    async with st.sessions() as session, session.begin():
        await session.execute(
            insert_ignoring_conflicts(session, Customer).values(
                id=new_id("cus"), host_id=host_id, phone=phone, created_ms=now, last_sign_in_ms=now
            )
        )
        customer_id = (
            await session.execute(
                select(Customer.id).where(Customer.host_id == host_id, Customer.phone == phone)
            )
        ).scalar_one()
        await session.execute(update(Customer).where(Customer.id == customer_id).values(last_sign_in_ms=now))
    return str(customer_id)


def signed_in(st: LiveServices, customer_id: str, host_id: str) -> JSONResponse:
    """The sign-in's answer: the customer token in the body and in the shop's ``HttpOnly`` cookie."""
    token = st.signer.customer_token(customer_id, host_id)
    response = JSONResponse({"customer_id": customer_id, "token": token})
    response.set_cookie(
        customer_cookie(host_id),
        token,
        max_age=int(st.settings.customer_token_days * 24 * 3600),
        path="/",
        secure=not st.settings.is_dev,
        httponly=True,
        samesite="lax",
    )
    return response


routes = [
    Route("/api/rooms/{room:id}/sign-in/code", send_code, methods=["POST"]),
    Route("/api/rooms/{room:id}/sign-in", sign_in, methods=["POST"]),
]
