"""HTTP endpoints of the video edge: WHIP ingest and WHEP playback (``application/sdp`` in and out, RFC 9725
and the WHEP draft), and the room thumbnail.

Who may: WHIP is the room's host; the host token is the stream key (OBS 30+ sends its "Bearer Token" field
as ``Authorization: Bearer``). WHEP and the thumbnail are the host or a viewer of the room. Checks run in
this order, and each failure changes nothing: token (401), room (404), ownership (403), room ended (409),
Content-Type (415), body size (413), SDP (400), where to serve (``307`` to an external engine, or
``viewer_cap``), then the negotiation (400 when WebRTC cannot answer the offer).
"""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from live.access import identify, require_host
from live.api import visible_room
from live.errors import RoomStateConflict
from live.models import Room
from live.rooms import RoomStatus
from live.video import Negotiated
from live.video_rules import Kind, Redirect, check_offer, ice_link_header, is_sdp, route_whep, route_whip
from livecart.errors import NotFound, UnsupportedMediaType
from livecart.http import read_body, state
from livecart.openapi import doc

SDP_ERRORS = (400, 409, 413, 415)


def _check_open(room: Room) -> None:
    if room.status == RoomStatus.ENDED:
        raise RoomStateConflict("This show has ended; it has no video any more.", code="room_ended")


def _check_sdp_type(request: Request) -> None:
    if not is_sdp(request.headers.get("content-type")):
        raise UnsupportedMediaType("Send the offer with 'Content-Type: application/sdp'.")


async def _offer(request: Request) -> str:
    return check_offer(await read_body(request, max_bytes=state(request).settings.max_body_bytes))


def _redirect(route: Redirect) -> Response:
    return Response(status_code=307, headers={"Location": route.location})


def _created(request: Request, kind: Kind, negotiated: Negotiated) -> Response:
    headers = {"Location": f"/api/rooms/{request.path_params['room']}/{kind}/{negotiated.session_id}"}
    link = ice_link_header(state(request).settings.ice_servers)
    if link:
        headers["Link"] = link
    return Response(negotiated.answer, status_code=201, media_type="application/sdp", headers=headers)


@doc(
    summary="WHIP: publish the room's video (the host token is the stream key)",
    raw_body="application/sdp",
    responses={
        201: "The SDP answer (application/sdp); Location names the session, DELETE it to stop",
        307: "Publish to the external video engine named by Location instead",
    },
    errors=SDP_ERRORS,
)
async def whip(request: Request) -> Response:
    st = state(request)
    host = require_host(request, st.signer)
    room = await visible_room(request, host)
    _check_open(room)
    _check_sdp_type(request)
    offer = await _offer(request)
    route = route_whip(
        room_id=room.id, external_url=st.settings.video_external_url, mode=st.settings.video_external_mode
    )
    if isinstance(route, Redirect):
        return _redirect(route)
    negotiated = await st.video.publish(room.id, host_id=host.host_id, offer=offer)
    # The room may have ended while the offer was negotiated, after ending it closed the room's video: look
    # again now that the ingest is registered (ending commits before it closes the video, so one of the two
    # sees the other).
    async with st.sessions() as session:
        current = await session.get(Room, room.id)
    if current is None or current.status == RoomStatus.ENDED:
        with contextlib.suppress(NotFound):  # already gone (replaced, or its peer went away)
            await st.video.stop_publish(room.id, negotiated.session_id, who=host)
        raise RoomStateConflict("This show ended while its video was connecting.", code="room_ended")
    return _created(request, "whip", negotiated)


@doc(summary="WHIP: stop publishing (ends every viewer's WHEP session)", responses={204: "Stopped"})
async def stop_whip(request: Request) -> Response:
    st = state(request)
    host = require_host(request, st.signer)
    await st.video.stop_publish(request.path_params["room"], request.path_params["session"], who=host)
    return Response(status_code=204)


@doc(
    summary="WHEP: watch the room's video (a viewer of the room, or its host)",
    raw_body="application/sdp",
    responses={
        201: "The SDP answer (application/sdp); Location names the session, DELETE it to stop",
        307: "Watch on the external video engine named by Location instead (past the cap, or by setting)",
    },
    errors=SDP_ERRORS,
)
async def whep(request: Request) -> Response:
    st = state(request)
    who = identify(request, st.signer)
    room = await visible_room(request, who)
    _check_open(room)
    _check_sdp_type(request)
    offer = await _offer(request)
    # No await between counting the viewers and ``play`` taking the slot: concurrent offers cannot overshoot.
    route = route_whep(
        room_id=room.id,
        viewers=st.video.viewers(room.id),
        max_viewers=st.settings.whep_max_viewers,
        external_url=st.settings.video_external_url,
        mode=st.settings.video_external_mode,
    )
    if isinstance(route, Redirect):
        return _redirect(route)
    return _created(request, "whep", await st.video.play(room.id, viewer=who, offer=offer))


@doc(summary="WHEP: stop watching", responses={204: "Stopped"})
async def stop_whep(request: Request) -> Response:
    st = state(request)
    who = identify(request, st.signer)
    await st.video.stop_play(request.path_params["room"], request.path_params["session"], who=who)
    return Response(status_code=204)


@doc(
    summary="A recent frame of the room's live video, as a small JPEG",
    responses={200: "image/jpeg, at most 320 pixels wide"},
)
async def thumbnail(request: Request) -> Response:
    st = state(request)
    room = await visible_room(request, identify(request, st.signer))
    image = st.video.thumbnail(room.id)
    if image is None:
        raise NotFound("This room has no thumbnail (yet): none is grabbed before its video is live.")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3"})


routes = [
    Route("/api/rooms/{room:id}/whip", whip, methods=["POST"]),
    Route("/api/rooms/{room:id}/whip/{session:id}", stop_whip, methods=["DELETE"]),
    Route("/api/rooms/{room:id}/whep", whep, methods=["POST"]),
    Route("/api/rooms/{room:id}/whep/{session:id}", stop_whep, methods=["DELETE"]),
    Route("/api/rooms/{room:id}/thumbnail.jpg", thumbnail, methods=["GET"]),
]
