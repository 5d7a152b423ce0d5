"""HTTP endpoints of ``live``: host sign-up, rooms and their lifecycle, joining a room."""

from __future__ import annotations

import hmac
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from live.access import HostIdentity, ViewerIdentity, bearer, identify, require_host
from live.errors import InvalidInvite, InvalidToken
from live.models import Host, Room, Viewer
from live.rooms import RoomAction, transition
from live.schemas import HostIn, HostOut, JoinIn, JoinOut, RoomIn, RoomOut
from live.views import public_room, room_json
from livecart.clock import parse_iso
from livecart.errors import Forbidden
from livecart.http import read_json, state
from livecart.ids import new_id, random_code
from livecart.openapi import doc
from shop.errors import UnknownResource


@doc(
    body=HostIn, responses={201: HostOut}, auth=False, summary="Sign up as a host (while open sign-up is on)"
)
async def create_host(request: Request) -> JSONResponse:
    st = state(request)
    if not st.settings.signup_open:
        raise Forbidden("Open sign-up is off on this server.", code="signup_closed")
    body = await read_json(request, HostIn)
    host = Host(id=new_id("hst"), name=body.name, created_ms=st.clock.now_ms())
    async with st.sessions() as session, session.begin():
        session.add(host)
    return JSONResponse(
        {"id": host.id, "name": host.name, "token": st.signer.host_token(host.id)}, status_code=201
    )


@doc(body=RoomIn, responses={201: RoomOut}, summary="Create a room (a show)")
async def create_room(request: Request) -> JSONResponse:
    st = state(request)
    host = require_host(request, st.signer)
    body = await read_json(request, RoomIn)
    room = Room(
        id=new_id("rm"),
        host_id=host.host_id,
        title=body.title,
        status="scheduled",
        invite_token=random_code(22),
        scheduled_ms=parse_iso(body.scheduled_at) if body.scheduled_at else None,
        started_ms=None,
        ended_ms=None,
        created_ms=st.clock.now_ms(),
    )
    async with st.sessions() as session, session.begin():
        await _check_host_exists(session, host)
        session.add(room)
    return JSONResponse(room_json(room, base_url=st.settings.base_url, for_host=True), status_code=201)


async def _check_host_exists(session: Any, host: HostIdentity) -> None:
    if await session.get(Host, host.host_id) is None:
        raise InvalidToken("This host no longer exists.")


@doc(responses={200: RoomOut}, summary="Get a room (its host, or a viewer of it)")
async def get_room(request: Request) -> JSONResponse:
    st = state(request)
    who = identify(request, st.signer)
    async with st.sessions() as session:
        room = await session.get(Room, request.path_params["room"])
    if room is None:
        raise UnknownResource("No such room.")
    if isinstance(who, HostIdentity) and room.host_id != who.host_id:
        raise Forbidden("This room belongs to another host.")
    if isinstance(who, ViewerIdentity) and who.room_id != room.id:
        raise Forbidden("You are not a viewer of this room.")
    return JSONResponse(
        room_json(room, base_url=st.settings.base_url, for_host=isinstance(who, HostIdentity))
    )


async def _lifecycle(request: Request, action: RoomAction) -> JSONResponse:
    st = state(request)
    host = require_host(request, st.signer)
    now = st.clock.now_ms()
    async with st.sessions() as session, session.begin():
        room = await session.get(Room, request.path_params["room"], with_for_update=True)
        if room is None:
            raise UnknownResource("No such room.")
        if room.host_id != host.host_id:
            raise Forbidden("This room belongs to another host.")
        new_status = transition(room.status, action)
        if new_status != room.status:
            room.status = new_status.value
            if action is RoomAction.GO_LIVE:
                room.started_ms = now
            else:
                room.ended_ms = now
    if action is RoomAction.END:
        await st.catalog.close_room_cards(room.id)
    await st.realtime.publish_room(room.id, public_room(room))
    return JSONResponse(room_json(room, base_url=st.settings.base_url, for_host=True))


@doc(responses={200: RoomOut}, summary="Go live")
async def go_live(request: Request) -> JSONResponse:
    return await _lifecycle(request, RoomAction.GO_LIVE)


@doc(responses={200: RoomOut}, summary="End the show (closes its open cards)")
async def end_room(request: Request) -> JSONResponse:
    return await _lifecycle(request, RoomAction.END)


@doc(
    body=JoinIn,
    responses={201: JoinOut},
    auth=False,
    summary="Join a room with its invite token or a promoter's share code",
)
async def join_room(request: Request) -> JSONResponse:
    st = state(request)
    body = await read_json(request, JoinIn)
    room_id = request.path_params["room"]
    base = st.settings.base_url.rstrip("/")
    async with st.sessions() as session, session.begin():
        room = await session.get(Room, room_id)
        if room is None:
            raise UnknownResource("No such room.")
        if room.status == "ended":
            raise InvalidInvite("This show has ended.")
        referrer: Viewer | None = None
        if not hmac.compare_digest(body.invite.encode(), room.invite_token.encode()):
            referrer = await _share_owner(session, room_id, body.invite)
            if referrer is None:
                raise InvalidInvite("This invite is not valid for this room.")
        elif body.ref:
            referrer = await _share_owner(session, room_id, body.ref)  # an unknown ref is ignored, not fatal
        existing = await _returning_viewer(request, session, room_id)
        if existing is not None:
            viewer = existing  # first touch: a returning viewer keeps their original referrer
        else:
            viewer = Viewer(
                id=new_id("vw"),
                room_id=room_id,
                name=body.name,
                share_code=random_code(10),
                referrer_id=referrer.id if referrer else None,
                created_ms=st.clock.now_ms(),
            )
            session.add(viewer)
    token = st.signer.viewer_token(viewer.id, room_id, viewer.referrer_id)
    return JSONResponse(
        {
            "viewer_id": viewer.id,
            "room_id": room_id,
            "name": viewer.name,
            "token": token,
            "share_code": viewer.share_code,
            "share_url": f"{base}/r/{room_id}?invite={viewer.share_code}",
            "referrer_id": viewer.referrer_id,
        },
        status_code=201,
    )


async def _share_owner(session: Any, room_id: str, code: str) -> Viewer | None:
    found = (await session.execute(select(Viewer).where(Viewer.share_code == code))).scalar_one_or_none()
    if found is None or found.room_id != room_id:
        return None
    return found  # type: ignore[no-any-return]


async def _returning_viewer(request: Request, session: Any, room_id: str) -> Viewer | None:
    token = bearer(request)
    if token is None:
        return None
    try:
        who = state(request).signer.verify(token)
    except InvalidToken:
        return None
    if not isinstance(who, ViewerIdentity) or who.room_id != room_id:
        return None
    return await session.get(Viewer, who.viewer_id)  # type: ignore[no-any-return]


routes = [
    Route("/api/hosts", create_host, methods=["POST"]),
    Route("/api/rooms", create_room, methods=["POST"]),
    Route("/api/rooms/{room:id}", get_room, methods=["GET"]),
    Route("/api/rooms/{room:id}/live", go_live, methods=["POST"]),
    Route("/api/rooms/{room:id}/end", end_room, methods=["POST"]),
    Route("/api/rooms/{room:id}/join", join_room, methods=["POST"]),
]
