"""HTTP endpoints of a host's account: sign-up (which signs the new host in), their sessions (list, sign
out one, sign out all) and their OBS/WHIP stream key (rotate: shown once).

A host's session token is the API credential of one device; it expires ``LIVECART_HOST_SESSION_DAYS`` after
its last use. The stream key is a separate secret that only publishes video (WHIP), so pasting it into
OBS never hands out the console.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.clock import iso
from base.errors import RateLimited
from base.http import client_ip, read_json
from base.ids import new_id
from base.limits import Limit
from base.openapi import doc
from identity.errors import InvalidPhone
from identity.phones import normalise
from identity.sessions import NewSession
from live.errors import PhoneTaken, SignupClosed, UnknownSession
from live.models import Host
from live.schemas import HostIn, HostOut, RevokedOut, SessionOut, StreamKeyOut
from live.services import services


def device_label(conn: HTTPConnection) -> str:
    """What a session is called in the host's list: the browser's User-Agent, shortened."""
    return (conn.headers.get("user-agent") or "unknown device")[:200]


def session_body(host: Host, new: NewSession) -> dict[str, object]:
    return {
        "id": host.id,
        "name": host.name,
        "token": new.token,
        "session_id": new.id,
        "expires_at": iso(new.expires_ms),
    }


@doc(
    body=HostIn,
    responses={201: HostOut},
    auth=False,
    errors=[SignupClosed, PhoneTaken, InvalidPhone, RateLimited],
    summary="Sign up as a host (while open sign-up is on); signs the new host in",
)
async def create_host(request: Request) -> JSONResponse:
    st = services(request)
    if not st.settings.signup_open:
        raise SignupClosed("Open sign-up is off on this server.")
    body = await read_json(request, HostIn)
    phone = normalise(body.phone, default_region=st.settings.default_phone_region) if body.phone else None
    await st.rate_limits.hit(Limit.SIGNUP_PER_IP, client_ip(request), what="sign-ups from this address")
    host = Host(id=new_id("hst"), name=body.name, phone=phone, created_ms=st.clock.now_ms())
    async with st.sessions() as session, session.begin():
        if (
            phone is not None
            and (await session.execute(select(Host.id).where(Host.phone == phone))).first() is not None
        ):
            raise PhoneTaken("A host with this phone number exists; sign in instead.")
        session.add(host)
        await session.flush()  # the host row before its session's (foreign key)
        new = await st.auth.host_sessions.start(session, host.id, label=device_label(request))
    return JSONResponse(session_body(host, new), status_code=201)


@doc(responses={200: [SessionOut]}, summary="Your sessions (signed-in devices), newest first")
async def list_sessions(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    rows = await st.auth.host_sessions.list(host.host_id)
    return JSONResponse([st.auth.host_sessions.session_json(r, current=host.session_id) for r in rows])


@doc(
    responses={200: RevokedOut},
    errors=[UnknownSession],
    summary="Sign out one session (this device's included); its token stops working at once",
)
async def revoke_session(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    revoked = await st.auth.host_sessions.revoke(host.host_id, request.path_params["session"])
    if revoked == 0:
        raise UnknownSession("You have no such active session.")
    return JSONResponse({"revoked": revoked})


@doc(responses={200: RevokedOut}, summary="Sign out every session, this one included")
async def revoke_all_sessions(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    return JSONResponse({"revoked": await st.auth.host_sessions.revoke(host.host_id)})


@doc(
    responses={200: StreamKeyOut},
    summary="Make a new OBS/WHIP stream key (shown only now); the old one stops working",
)
async def rotate_stream_key(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    key = await st.auth.stream_keys.rotate(host.host_id)
    return JSONResponse({"stream_key": key, "created_at": iso(st.clock.now_ms())})


routes = [
    Route("/api/hosts", create_host, methods=["POST"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions", revoke_all_sessions, methods=["DELETE"]),
    Route("/api/sessions/{session:id}", revoke_session, methods=["DELETE"]),
    Route("/api/stream-key", rotate_stream_key, methods=["POST"]),
]
