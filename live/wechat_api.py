"""HTTP endpoints of WeChat sign-in (网页授权, ``snsapi_base``: ``/auth/wechat/start`` → WeChat →
``/auth/wechat/callback``) and of the JS-SDK signature a room page opened in WeChat uses for its share
set-up (``/api/rooms/{room}/wechat/share-config``). The buyer ends up signed in exactly as by a phone code
(``live.sign_in_api.signed_in``), as the customer of the room's host with that ``openid``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from base.errors import InvalidRequest, RateLimited
from base.http import client_ip, read_query
from base.limits import Limit
from base.openapi import ErrorSpec, Header, Reply, doc
from identity.errors import InvalidCode, InvalidState, ProviderFailed, SignInUnavailable
from identity.wechat import (
    NONCE_COOKIE,
    STATE_MAX_AGE,
    SignInState,
    StateSigner,
    WeChat,
    js_sdk_signature,
    new_nonce,
)
from live.errors import UnknownRoom
from live.schemas import ShareConfigOut, ShareConfigQuery, WeChatCallbackQuery, WeChatStartQuery
from live.services import LiveServices, services
from live.sign_in_api import private_cookie, room_host, signed_in, upsert_customer

CALLBACK_PATH = "/auth/wechat/callback"


def _wechat(st: LiveServices) -> WeChat:
    if st.wechat is None:
        raise SignInUnavailable(
            "WeChat sign-in is not set up on this server (no AppID).", code="wechat_not_configured"
        )
    return st.wechat


WECHAT_OFF: ErrorSpec = (SignInUnavailable, "wechat_not_configured")
REDIRECT = Header("Where the browser goes next")


@doc(
    query=WeChatStartQuery,
    responses={302: Reply("To WeChat's authorize page (snsapi_base)", headers={"Location": REDIRECT})},
    auth=False,
    errors=[UnknownRoom, WECHAT_OFF, RateLimited],
    summary="Sign in to a room's shop with WeChat: the browser is sent to WeChat, and back",
)
async def wechat_start(request: Request) -> Response:
    st = services(request)
    query = read_query(request, WeChatStartQuery)
    wechat = _wechat(st)
    await st.rate_limits.hit(
        Limit.SIGN_IN_PER_IP, f"wechat-start|{client_ip(request)}", what="WeChat sign-ins from this address"
    )
    await room_host(st, query.room)
    nonce = new_nonce()
    state = StateSigner(st.settings.signing_keys).sign(
        SignInState(query.room, query.next or f"/r/{query.room}", nonce)
    )
    redirect_uri = st.settings.base_url.rstrip("/") + CALLBACK_PATH
    response = RedirectResponse(wechat.authorize_url(redirect_uri=redirect_uri, state=state), status_code=302)
    private_cookie(response, st, NONCE_COOKIE, nonce, max_age=STATE_MAX_AGE, path=CALLBACK_PATH)
    return response


@doc(
    query=WeChatCallbackQuery,
    responses={302: Reply("Signed in (cookie set): to the page asked for", headers={"Location": REDIRECT})},
    auth=False,
    errors=[UnknownRoom, WECHAT_OFF, InvalidState, InvalidCode, RateLimited, ProviderFailed],
    summary="Where WeChat sends the browser back: the buyer is signed in by their openid",
)
async def wechat_callback(request: Request) -> Response:
    st = services(request)
    query = read_query(request, WeChatCallbackQuery)
    wechat = _wechat(st)
    await st.rate_limits.hit(Limit.SIGN_IN_PER_IP, client_ip(request), what="sign-ins from this address")
    state = StateSigner(st.settings.signing_keys).verify(
        query.state, nonce_cookie=request.cookies.get(NONCE_COOKIE)
    )
    host_id = await room_host(st, state.room_id)
    user = await wechat.sign_in(query.code)
    customer_id = await upsert_customer(st, host_id, wechat=user)
    response = signed_in(st, customer_id, host_id, redirect_to=state.next)
    response.delete_cookie(NONCE_COOKIE, path=CALLBACK_PATH)
    return response


@doc(
    query=ShareConfigQuery,
    responses={200: ShareConfigOut},
    auth=False,
    errors=[UnknownRoom, WECHAT_OFF, (InvalidRequest, "invalid_url"), ProviderFailed],
    summary="The WeChat JS-SDK signature of a room page's URL, for wx.config (its share set-up)",
)
async def share_config(request: Request) -> JSONResponse:
    st = services(request)
    query = read_query(request, ShareConfigQuery)
    await room_host(st, request.path_params["room"])
    wechat = _wechat(st)
    if not _our_page(request, query.url):
        raise InvalidRequest("url: not a page of this server.", code="invalid_url")
    ticket = await wechat.jsapi_ticket()
    nonce, timestamp = new_nonce(), st.clock.now_ms() // 1000
    body = {
        "appId": wechat.app_id,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": js_sdk_signature(ticket=ticket, nonce=nonce, timestamp=timestamp, url=query.url),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _our_page(request: Request, url: str) -> bool:
    """Whether ``url`` is on this server: the origin of ``base_url``, or the one the request came to."""
    origin = urlsplit(url)
    base = urlsplit(services(request).settings.base_url)
    here = (request.url.scheme, request.headers.get("host", ""))
    return (origin.scheme, origin.netloc) in {(base.scheme, base.netloc), here}


routes = [
    Route("/auth/wechat/start", wechat_start, methods=["GET"]),
    Route(CALLBACK_PATH, wechat_callback, methods=["GET"]),
    Route("/api/rooms/{room:id}/wechat/share-config", share_config, methods=["GET"]),
]
