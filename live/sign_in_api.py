"""HTTP endpoints of signing in with a phone code (SPEC §8); WeChat's are in ``live/wechat_api.py``.

A buyer signs in to the shop of a room's host with a one-time code sent to their phone (or through WeChat).
Either answer is a customer token, also set as the shop's ``HttpOnly`` cookie for the pages
(``signed_in``). The same phone (or the same WeChat ``openid``) at the same host is always the same
customer (``upsert_customer``).

A host signs in on a new device with a code sent to the phone they signed up with
(``/api/host-sign-in``): a new session, as sign-up gives. Whether a phone is a host's is never told: an
unknown phone's code request is answered alike (nothing is sent) and its sign-in fails as a wrong code does.

Abuse limits: codes 1/min per phone and 10/h per IP, sign-ins per IP, and 5 wrong codes lock the phone
for 15 min (every figure a setting).
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from base.errors import RateLimited
from base.http import client_ip, read_json
from base.limits import Limit
from base.openapi import ErrorSpec, doc
from identity import customers
from identity.errors import (
    InvalidCode,
    InvalidPhone,
    ProviderFailed,
    SignInUnavailable,
)
from identity.phones import normalise
from identity.tokens import customer_cookie
from identity.wechat import (
    WeChatUser,
)
from live.errors import UnknownRoom
from live.host_account import device_label, session_body
from live.models import Host, Room
from live.schemas import (
    CodeIn,
    CodeSentOut,
    HostOut,
    SignInIn,
    SignInOut,
)
from live.services import LiveServices, services

#: The code scope of a host's sign-in (a customer's is ``c:HOST``).
HOST_SCOPE = "host"
#: A phone that is too short or too long for the schema is as invalid as one that does not parse.
PHONE_CODES = {"phone": "invalid_phone"}


def customer_scope(host_id: str) -> str:
    return f"c:{host_id}"


async def room_host(st: LiveServices, room_id: str) -> str:
    async with st.sessions() as session:
        room = await session.get(Room, room_id)
    if room is None:
        raise UnknownRoom("No such room.")
    return room.host_id


async def issue_code(
    st: LiveServices, request: Request, scope: str, phone: str, *, send: bool = True
) -> JSONResponse:
    """Count the request against the phone's and the address's limits, issue a code and send it (unless
    ``send`` is false: the code is issued all the same, so the answer and every later step look alike)."""
    assert st.sms is not None
    await st.rate_limits.hit(Limit.SIGN_IN_CODE_PER_PHONE, f"{scope}|{phone}", what="codes for this number")
    await st.rate_limits.hit(Limit.SIGN_IN_CODE_PER_IP, client_ip(request), what="codes from this address")
    code = await st.codes.issue(scope, phone)
    if send:
        try:
            await st.sms.send_code(phone, code)
        except ProviderFailed:
            await st.codes.forget(scope, phone)
            raise
    reply: dict[str, object] = {"sent": True}
    if st.sms.reveals_code:
        reply["dev_code"] = code
    return JSONResponse(reply, status_code=202)


def _sms(st: LiveServices) -> None:
    if st.sms is None:
        raise SignInUnavailable("Phone sign-in is not set up on this server.")


CODE_ERRORS: list[ErrorSpec] = [
    InvalidPhone,
    SignInUnavailable,
    RateLimited,
    (RateLimited, "locked"),
    ProviderFailed,
]
SIGN_IN_ERRORS: list[ErrorSpec] = [InvalidPhone, InvalidCode, RateLimited, (RateLimited, "locked")]


# -- buyers, by phone ---------------------------------------------------------------------------------


@doc(
    body=CodeIn,
    responses={202: CodeSentOut},
    auth=False,
    errors=[UnknownRoom, *CODE_ERRORS],
    summary="Send a one-time sign-in code to a phone (a buyer of this room's shop)",
)
async def send_code(request: Request) -> JSONResponse:
    st = services(request)
    return await _send_customer_code(st, request, await room_host(st, request.path_params["room"]))


async def _send_customer_code(st: LiveServices, request: Request, host_id: str) -> JSONResponse:
    body = await read_json(request, CodeIn, codes=PHONE_CODES)
    _sms(st)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    return await issue_code(st, request, customer_scope(host_id), phone)


@doc(
    body=SignInIn,
    responses={200: SignInOut},
    auth=False,
    errors=[UnknownRoom, *SIGN_IN_ERRORS],
    summary="Sign in with the code: a customer token (and cookie) for this room's shop",
)
async def sign_in(request: Request) -> Response:
    st = services(request)
    return await _customer_sign_in(st, request, await room_host(st, request.path_params["room"]))


async def _customer_sign_in(st: LiveServices, request: Request, host_id: str) -> Response:
    body = await read_json(request, SignInIn, codes=PHONE_CODES)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    await st.rate_limits.hit(Limit.SIGN_IN_PER_IP, client_ip(request), what="sign-ins from this address")
    await st.codes.check(customer_scope(host_id), phone, body.code)
    customer_id = await upsert_customer(st, host_id, phone=phone)
    return signed_in(st, customer_id, host_id)


async def shop_host(st: LiveServices, host_id: str) -> str:
    async with st.sessions() as session:
        host = await session.get(Host, host_id)
    if host is None:
        raise UnknownRoom("No such shop.")
    return host.id


@doc(
    body=CodeIn,
    responses={202: CodeSentOut},
    auth=False,
    errors=[UnknownRoom, *CODE_ERRORS],
    summary="Send a one-time sign-in code to a phone (a customer of this shop: the leader page, my orders)",
)
async def shop_send_code(request: Request) -> JSONResponse:
    st = services(request)
    return await _send_customer_code(st, request, await shop_host(st, request.path_params["host"]))


@doc(
    body=SignInIn,
    responses={200: SignInOut},
    auth=False,
    errors=[UnknownRoom, *SIGN_IN_ERRORS],
    summary="Sign in to a shop with the code: a customer token (and cookie), as in a room of it",
)
async def shop_sign_in(request: Request) -> Response:
    st = services(request)
    return await _customer_sign_in(st, request, await shop_host(st, request.path_params["host"]))


@doc(
    responses={204: "Signed out: the shop's cookie is cleared"},
    auth=False,
    errors=[UnknownRoom],
    summary="Sign out of a shop on this browser (clears its HttpOnly cookie; a token stays valid)",
)
async def shop_sign_out(request: Request) -> Response:
    st = services(request)
    host_id = await shop_host(st, request.path_params["host"])
    response = Response(status_code=204)
    response.delete_cookie(
        customer_cookie(host_id), path="/", secure=not st.settings.is_dev, httponly=True, samesite="lax"
    )
    return response


async def upsert_customer(
    st: LiveServices, host_id: str, *, phone: str | None = None, wechat: WeChatUser | None = None
) -> str:
    """The customer with this phone (or this WeChat ``openid``) at this host, made on first sign-in."""
    async with st.sessions() as session, session.begin():
        return await customers.upsert(session, host_id, now_ms=st.clock.now_ms(), phone=phone, wechat=wechat)


def signed_in(
    st: LiveServices, customer_id: str, host_id: str, *, redirect_to: str | None = None
) -> Response:
    """The sign-in's answer: the customer token in the shop's ``HttpOnly`` cookie, and in a JSON body
    (``{customer_id, token}``) or, for a browser back from WeChat, a redirect to ``redirect_to``."""
    token = st.signer.customer_token(customer_id, host_id)
    response: Response = (
        JSONResponse({"customer_id": customer_id, "token": token})
        if redirect_to is None
        else RedirectResponse(redirect_to, status_code=302)
    )
    private_cookie(
        response,
        st,
        customer_cookie(host_id),
        token,
        max_age=int(st.settings.customer_token_days * 24 * 3600),
        path="/",
    )
    return response


def private_cookie(
    response: Response, st: LiveServices, name: str, value: str, *, max_age: int, path: str
) -> None:
    """A cookie the page's scripts never read: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` outside dev."""
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=not st.settings.is_dev, httponly=True, samesite="lax"
    )


# -- hosts, by phone ----------------------------------------------------------------------------------


@doc(
    body=CodeIn,
    responses={202: CodeSentOut},
    auth=False,
    errors=CODE_ERRORS,
    summary="Send a host a one-time code to sign in on this device (the phone they signed up with)",
)
async def host_send_code(request: Request) -> JSONResponse:
    """Answered alike whether or not the phone is a host's; nothing is sent to a phone that is not."""
    st = services(request)
    body = await read_json(request, CodeIn, codes=PHONE_CODES)
    _sms(st)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    async with st.sessions() as session:
        known = (await session.execute(select(Host.id).where(Host.phone == phone))).first() is not None
    return await issue_code(st, request, HOST_SCOPE, phone, send=known)


@doc(
    body=SignInIn,
    responses={200: HostOut},
    auth=False,
    errors=SIGN_IN_ERRORS,
    summary="Sign a host in with the code: a new session (as sign-up gives)",
)
async def host_sign_in(request: Request) -> JSONResponse:
    st = services(request)
    body = await read_json(request, SignInIn, codes=PHONE_CODES)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region)
    await st.rate_limits.hit(Limit.SIGN_IN_PER_IP, client_ip(request), what="sign-ins from this address")
    await st.codes.check(HOST_SCOPE, phone, body.code)
    async with st.sessions() as session, session.begin():
        host = (await session.execute(select(Host).where(Host.phone == phone))).scalar_one_or_none()
        if host is None:  # a code issued to a phone that is no host's: as wrong as any
            raise InvalidCode("Wrong code.")
        new = await st.auth.host_sessions.start(session, host.id, label=device_label(request))
    return JSONResponse(session_body(host, new))


# -- buyers, by WeChat --------------------------------------------------------------------------------


routes = [
    Route("/api/rooms/{room:id}/sign-in/code", send_code, methods=["POST"]),
    Route("/api/rooms/{room:id}/sign-in", sign_in, methods=["POST"]),
    Route("/api/shops/{host:id}/sign-in/code", shop_send_code, methods=["POST"]),
    Route("/api/shops/{host:id}/sign-in", shop_sign_in, methods=["POST"]),
    Route("/api/shops/{host:id}/sign-out", shop_sign_out, methods=["POST"]),
    Route("/api/host-sign-in/code", host_send_code, methods=["POST"]),
    Route("/api/host-sign-in", host_sign_in, methods=["POST"]),
]
