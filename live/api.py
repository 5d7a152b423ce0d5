"""HTTP endpoints of ``live``: rooms (the host's list of them) and their lifecycle, per-invitee
invites, joining."""

from __future__ import annotations

import hmac
from typing import Any

from sqlalchemy import or_, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.clock import parse_iso
from base.db import insert_ignoring_conflicts
from base.errors import DependencyUnavailable, InvalidRequest, RateLimited
from base.http import client_ip, read_json, read_query
from base.ids import new_id, random_code
from base.limits import Limit
from base.openapi import doc
from identity.errors import InvalidInvite, InvalidToken, SignInRequired
from identity.guards import Caller, bearer, require_in_room
from identity.models import Customer
from identity.tokens import (
    CustomerIdentity,
    HostIdentity,
    InviteClaim,
    ViewerIdentity,
    customer_cookie,
    is_invite_token,
)
from live import bindings, host_rooms, invites
from live.bindings import Bringer
from live.errors import InvalidPage, RoomStateConflict, UnknownRoom
from live.models import Host, Invite, Room, Viewer
from live.rooms import RoomAction, admits_joins, transition
from live.schemas import (
    InviteIn,
    InviteOut,
    JoinIn,
    JoinOut,
    RoomIn,
    RoomOut,
    RoomsQuery,
)
from live.services import LiveServices, services
from live.views import public_room, room_json


@doc(body=RoomIn, responses={201: RoomOut}, summary="Create a room (a show)")
async def create_room(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, RoomIn)
    room = Room(
        id=new_id("rm"),
        host_id=host.host_id,
        title=body.title,
        status="scheduled",
        invite_token=random_code(22),
        sign_in=body.sign_in,
        scheduled_ms=parse_iso(body.scheduled_at) if body.scheduled_at else None,
        started_ms=None,
        ended_ms=None,
        created_ms=st.clock.now_ms(),
    )
    async with st.sessions() as session, session.begin():
        await _check_host_exists(session, host)
        session.add(room)
    return JSONResponse(room_json(room, base_url=st.settings.base_url, for_host=True), status_code=201)


@doc(
    query=RoomsQuery,
    responses={200: [RoomOut]},
    errors=[InvalidPage],
    summary="List your rooms, newest first, a page at a time",
)
async def list_rooms(request: Request) -> JSONResponse:
    """The host's own rooms as ``GET /api/rooms/{room}`` shows them to the host (invite link included).
    A full page may have more after it: ask again with ``before`` set to its last room's id."""
    st = services(request)
    host = await st.auth.require_host(request)
    query = read_query(request, RoomsQuery)
    async with st.sessions() as session:
        after = None
        if query.before is not None:
            after = await session.get(Room, query.before)
            if after is None or after.host_id != host.host_id:  # another host's room reads as unknown
                raise InvalidPage("before: this is not one of your rooms.")
        rooms = await host_rooms.page(
            session, host.host_id, limit=query.limit, status=query.status, after=after
        )
    base = st.settings.base_url
    return JSONResponse([room_json(room, base_url=base, for_host=True) for room in rooms])


async def _check_host_exists(session: Any, host: HostIdentity) -> None:
    if await session.get(Host, host.host_id) is None:
        raise InvalidToken("This host no longer exists.")


async def visible_room(request: Request, who: Caller) -> Room:
    """The room of the path, when ``who`` is its host or one of its viewers (404 / 403 otherwise)."""
    async with services(request).sessions() as session:
        room = await session.get(Room, request.path_params["room"])
    if room is None:
        raise UnknownRoom("No such room.")
    require_in_room(who, room.id, room.host_id)
    return room


@doc(responses={200: RoomOut}, errors=[UnknownRoom], summary="Get a room (its host, or a viewer of it)")
async def get_room(request: Request) -> JSONResponse:
    st = services(request)
    who = await st.auth.identify(request)
    room = await visible_room(request, who)
    return JSONResponse(
        room_json(room, base_url=st.settings.base_url, for_host=isinstance(who, HostIdentity))
    )


async def _lifecycle(request: Request, action: RoomAction) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    now = st.clock.now_ms()
    async with st.sessions() as session, session.begin():
        room = await host_rooms.owned_room(session, host, request.path_params["room"], for_update=True)
        new_status = transition(room.status, action)
        if new_status != room.status:
            room.status = new_status.value
            if action is RoomAction.GO_LIVE:
                room.started_ms = now
            else:
                room.ended_ms = now
    if action is RoomAction.END:
        await st.room_ended(room.id)
        await st.video.end_room(room.id)
    await st.events.room_changed(room.id, public_room(room))
    return JSONResponse(room_json(room, base_url=st.settings.base_url, for_host=True))


@doc(responses={200: RoomOut}, errors=[UnknownRoom, (RoomStateConflict, "room_ended")], summary="Go live")
async def go_live(request: Request) -> JSONResponse:
    return await _lifecycle(request, RoomAction.GO_LIVE)


@doc(responses={200: RoomOut}, errors=[UnknownRoom], summary="End the show (closes its open cards)")
async def end_room(request: Request) -> JSONResponse:
    return await _lifecycle(request, RoomAction.END)


@doc(
    body=InviteIn,
    responses={201: InviteOut},
    errors=[UnknownRoom, RoomStateConflict],
    summary="Create a per-invitee invite (max uses, expiry)",
)
async def create_invite(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    body = await read_json(request, InviteIn)
    now = st.clock.now_ms()
    async with st.sessions() as session, session.begin():
        room = await host_rooms.owned_room(session, host, request.path_params["room"])
        if room.status == "ended":
            raise RoomStateConflict("This show has ended; nobody can join it any more.")
        invite = Invite(
            id=new_id("inv"),
            room_id=room.id,
            label=body.label,
            max_uses=body.max_uses,
            uses=0,
            revoked=False,
            expires_ms=now + body.expires_in_seconds * 1000,
            created_ms=now,
        )
        session.add(invite)
    return JSONResponse(
        invites.invite_json(invite, signer=st.signer, base_url=st.settings.base_url), status_code=201
    )


@doc(responses={200: [InviteOut]}, errors=[UnknownRoom], summary="List the room's per-invitee invites")
async def list_invites(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    async with st.sessions() as session:
        room = await host_rooms.owned_room(session, host, request.path_params["room"])
        rows = await invites.for_room(session, room.id)
    return JSONResponse(
        [invites.invite_json(i, signer=st.signer, base_url=st.settings.base_url) for i in rows]
    )


@doc(
    responses={200: InviteOut},
    errors=[UnknownRoom],
    summary="Revoke a per-invitee invite (whoever joined with it stays)",
)
async def revoke_invite(request: Request) -> JSONResponse:
    st = services(request)
    host = await st.auth.require_host(request)
    async with st.sessions() as session, session.begin():
        room = await host_rooms.owned_room(session, host, request.path_params["room"])
        invite = await invites.revoke(session, room.id, request.path_params["invite"])
        if invite is None:
            raise UnknownRoom("This room has no such invite.")
    return JSONResponse(invites.invite_json(invite, signer=st.signer, base_url=st.settings.base_url))


@doc(
    body=JoinIn,
    responses={201: JoinOut, 200: JoinOut},
    auth="optional",  # a customer token (verified rooms: required), or a returning guest's viewer token
    errors=[InvalidInvite, UnknownRoom, SignInRequired, RateLimited],
    summary="Join a room with its invite token, a per-invitee invite or a promoter's share code",
)
async def join_room(request: Request) -> JSONResponse:
    """``invite`` is the room's invite token, a per-invitee invite token (``i.``, one use consumed per new
    viewer), a viewer's share code (that viewer becomes the referrer in the room) or a leader's code of
    the room's host (any of its rooms). With either invite, ``ref`` may name a share or leader code for
    attribution. A signed-in customer whom a code brings is bound to its promoter at this host unless a
    binding is in force (SPEC §9). Nobody is ever their own referrer, nor bound to themselves.

    In a ``verified`` room the caller is a signed-in customer of the room's host (``Authorization: Bearer
    <customer token>``, or the page's cookie): their first join creates their viewer (201), every later
    one, through any invite, code or device, returns that same viewer (200) with its first referrer. In a
    ``guest`` room (v1) each join without a token is a new viewer; a returning viewer's own token keeps
    their identity."""
    st = services(request)
    body = await read_json(request, JoinIn)
    room_id = request.path_params["room"]
    now = st.clock.now_ms()
    await st.rate_limits.hit(Limit.JOIN_PER_IP, client_ip(request), what="joins from this address")
    claim = (
        st.signer.verify_invite(body.invite, room_id=room_id, now_ms=now)
        if is_invite_token(body.invite)
        else None
    )
    async with st.sessions() as session:
        room = await session.get(Room, room_id)
    if room is None:
        raise UnknownRoom("No such room.")
    customer = st.auth.customer(request, cookie=customer_cookie(room.host_id))
    if customer is not None and customer.host_id != room.host_id:
        customer = None  # signed in at another host's shop: a stranger here
    if customer is not None:
        await st.rate_limits.hit(Limit.JOIN_PER_CUSTOMER, customer.customer_id, what="joins")
    elif room.sign_in == "verified":
        raise SignInRequired("Sign in with your phone number (or WeChat) to join this show.")
    elif body.name is None:
        raise InvalidRequest("name: a display name is required to join as a guest.")
    returning = None if customer else _returning_identity(request, room_id)
    for _ in range(3):  # a lost race for the same customer's viewer is retried as a return
        try:
            viewer, created = await _join(st, room_id, body, claim, customer, returning, now=now)
            break
        except _LostRace:
            continue
    else:
        raise DependencyUnavailable("Too many joins at once for this customer; try again.")
    token = st.signer.viewer_token(viewer.id, room_id, viewer.referrer_id, viewer.customer_id)
    base = st.settings.base_url.rstrip("/")
    return JSONResponse(
        {
            "viewer_id": viewer.id,
            "room_id": room_id,
            "name": viewer.name,
            "token": token,
            "share_code": viewer.share_code,
            "share_url": f"{base}/r/{room_id}?invite={viewer.share_code}",
            "referrer_id": viewer.referrer_id,
            "customer_id": viewer.customer_id,
        },
        status_code=201 if created or customer is None else 200,
    )


class _LostRace(Exception):
    """Another request created this customer's viewer first; the transaction is rolled back and redone."""


async def _join(
    st: LiveServices,
    room_id: str,
    body: JoinIn,
    claim: InviteClaim | None,
    customer: CustomerIdentity | None,
    returning: ViewerIdentity | None,
    *,
    now: int,
) -> tuple[Viewer, bool]:
    """One join's transaction: the viewer (found or created) and whether it was created."""
    async with st.sessions() as session, session.begin():
        existing = await _existing_viewer(session, room_id, customer, returning)
        if claim is not None:
            if existing is None:
                try:
                    await invites.consume(session, claim, now_ms=now)  # the guarded write comes first
                except InvalidInvite:
                    # The same customer's concurrent join may have just taken the invite's last use: then
                    # this is their return (the write above waited for that join's commit, and sees it).
                    existing = await _existing_viewer(session, room_id, customer, None)
                    if existing is None:
                        raise
                    await invites.check_usable(session, claim, now_ms=now)
            else:
                await invites.check_usable(session, claim, now_ms=now)
        room = await session.get(Room, room_id)
        if room is None:
            raise UnknownRoom("No such room.")
        published = room.replay is None  # kept and published (``shop.replay_rules.ReplayState.KEPT``)
        recorded = published and room.status == "ended" and st.hls_store.exists(room.id)
        if not admits_joins(room.status, replay_published=published, recorded=recorded):
            raise InvalidInvite("This show has ended.")
        brought: Bringer | None = None
        if claim is None and not hmac.compare_digest(body.invite.encode(), room.invite_token.encode()):
            brought = await bindings.bringer(session, room_id, room.host_id, body.invite)
            if brought is None:
                raise InvalidInvite("This invite is not valid for this room.")
        elif body.ref:  # an unknown ref is ignored, not fatal
            brought = await bindings.bringer(session, room_id, room.host_id, body.ref)
        if customer is not None:
            # The customer's name, only with a new viewer: a return changes nothing (and writes nothing).
            name = body.name if existing is None else None
            await _remember(st, session, room, customer.customer_id, brought, name, now=now)
        referrer = brought.viewer if brought is not None else None
        if existing is not None:
            return existing, False  # first touch: a returning viewer keeps their first referrer (or none)
        # Never one's own referrer: a customer's own share code belongs to their one viewer in this room,
        # which ``existing`` found above; a guest's own code comes with their viewer token (``returning``).
        viewer = Viewer(
            id=new_id("vw"),
            room_id=room_id,
            name=body.name or _default_name(customer),
            share_code=random_code(10),
            referrer_id=referrer.id if referrer else None,
            customer_id=customer.customer_id if customer else None,
            created_ms=now,
        )
        if customer is None:
            session.add(viewer)
            return viewer, True
        inserted = await session.execute(
            insert_ignoring_conflicts(session, Viewer)
            .values(
                id=viewer.id,
                room_id=viewer.room_id,
                name=viewer.name,
                share_code=viewer.share_code,
                referrer_id=viewer.referrer_id,
                customer_id=viewer.customer_id,
                created_ms=viewer.created_ms,
            )
            .returning(Viewer.id)
        )
        if inserted.first() is None:
            raise _LostRace  # rolls back the invite use taken above; the retry finds the viewer
        return viewer, True


async def _existing_viewer(
    session: Any, room_id: str, customer: CustomerIdentity | None, returning: ViewerIdentity | None
) -> Viewer | None:
    """The caller's viewer in this room already: the customer's one, or the returning guest's."""
    if customer is not None:
        found = await session.execute(
            select(Viewer).where(Viewer.room_id == room_id, Viewer.customer_id == customer.customer_id)
        )
        return found.scalar_one_or_none()  # type: ignore[no-any-return]
    return await session.get(Viewer, returning.viewer_id) if returning else None


def _default_name(customer: CustomerIdentity | None) -> str:
    return "观众" if customer is None else f"观众{customer.customer_id[-4:]}"


async def _remember(
    st: LiveServices,
    session: Any,
    room: Room,
    customer_id: str,
    brought: Bringer | None,
    name: str | None,
    *,
    now: int,
) -> None:
    """What a join tells the shop about its customer: who brought them (the binding, if they have none in
    force yet; never themselves) and the name they go by now."""
    if brought is not None and brought.binds and brought.promoter_id is not None:
        await bindings.bind(
            session,
            host_id=room.host_id,
            customer_id=customer_id,
            promoter_id=brought.promoter_id,
            room_id=room.id,
            now_ms=now,
            days=st.settings.binding_days,
        )
    if name is not None:
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id, or_(Customer.name.is_(None), Customer.name != name))
            .values(name=name)
        )


def _returning_identity(request: Request, room_id: str) -> ViewerIdentity | None:
    """The caller's viewer identity in this room, if they sent a valid viewer token for it."""
    token = bearer(request)
    if token is None:
        return None
    try:
        who = services(request).signer.verify(token)
    except InvalidToken:
        return None
    if not isinstance(who, ViewerIdentity) or who.room_id != room_id:
        return None
    return who


routes = [
    Route("/api/rooms", create_room, methods=["POST"]),
    Route("/api/rooms", list_rooms, methods=["GET"]),
    Route("/api/rooms/{room:id}", get_room, methods=["GET"]),
    Route("/api/rooms/{room:id}/live", go_live, methods=["POST"]),
    Route("/api/rooms/{room:id}/end", end_room, methods=["POST"]),
    Route("/api/rooms/{room:id}/join", join_room, methods=["POST"]),
    Route("/api/rooms/{room:id}/invites", create_invite, methods=["POST"]),
    Route("/api/rooms/{room:id}/invites", list_invites, methods=["GET"]),
    Route("/api/rooms/{room:id}/invites/{invite:id}", revoke_invite, methods=["DELETE"]),
]
