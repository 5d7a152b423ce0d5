"""HTTP endpoints of the video edge: WHIP ingest and WHEP playback (``application/sdp`` in and out, RFC 9725
and the WHEP draft), and the room thumbnail.

Who may: WHIP is the room's host; the host token is the stream key (OBS 30+ sends its "Bearer Token" field
as ``Authorization: Bearer``). WHEP and the thumbnail are the host or a viewer of the room. Checks run in
this order, and each failure changes nothing: token (401), room (404), ownership (403), room ended (409),
Content-Type (415), body size (413), SDP (400), where to serve (``307`` to an external engine, or
``viewer_cap``), then the negotiation (400 when WebRTC cannot answer the offer).

With several workers, a request about a room whose video a sibling worker holds is checked here as far as
the offer, then forwarded to that worker, which checks it again and answers; the answer is relayed with
``Via``. The viewer cap is counted there, where all of the room's viewers are. A viewer's new WHEP offer
replaces their previous session (``whep_max_per_viewer``), and a session whose client never completes ICE
is closed after ``whep_unanswered_seconds``: neither an offer storm nor abandoned offers hold the room's
slots. When that worker is gone the
room counts as not live: WHIP publishes here, WHEP is ``409 not_live``, the rest ``404``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from base.clock import iso
from base.errors import WrongMediaType
from base.http import read_body
from base.openapi import ErrorSpec, Header, Reply, doc
from live import host_rooms
from live.api import visible_room
from live.errors import (
    ForgedForward,
    InvalidSdp,
    NoThumbnail,
    NotLive,
    NotYourVideo,
    RoomStateConflict,
    UnknownRoom,
    UnknownVideoSession,
    VideoUnavailable,
    ViewerCap,
)
from live.hls_api import signed_url
from live.hls_rules import LIVE_PLAYLIST
from live.hls_store import HlsStore
from live.models import Room
from live.rooms import RoomStatus
from live.schemas import HlsStatusOut, VideoOut
from live.services import services
from live.video import Negotiated
from live.video_rules import (
    FORWARDED_HEADER,
    Kind,
    Redirect,
    check_offer,
    ice_link_header,
    is_forwarded,
    is_sdp,
    must_find_owner,
    route_whep,
    route_whip,
)

#: What a request that may be forwarded to the sibling worker holding the room's video answers: a forged
#: claim to be forwarded (403), that worker not answering in time (503).
SIBLING_ERRORS: tuple[ErrorSpec, ...] = (ForgedForward, (VideoUnavailable, "video_worker_unavailable"))
#: What an SDP offer answers besides: the room, its state, the offer's media type and text, shutting down.
SDP_ERRORS: tuple[ErrorSpec, ...] = (
    UnknownRoom,
    (RoomStateConflict, "room_ended"),
    WrongMediaType,
    InvalidSdp,
    VideoUnavailable,
    *SIBLING_ERRORS,
)
_SESSION = {"Location": Header("The session's URL: DELETE it to stop")}
_ICE = {"Link": Header("The ICE (STUN/TURN) servers, as RFC 9725 links (when configured)", required=False)}
_EXTERNAL = {"Location": Header("The external video engine's endpoint for this room")}
_PRIVATE_CACHE = {"Cache-Control": Header("private: for this caller only")}


def _check_open(room: Room) -> None:
    if room.status == RoomStatus.ENDED:
        raise RoomStateConflict("This show has ended; it has no video any more.", code="room_ended")


def _check_sdp_type(request: Request) -> None:
    if not is_sdp(request.headers.get("content-type")):
        raise WrongMediaType("Send the offer with 'Content-Type: application/sdp'.")


async def _offer(request: Request) -> str:
    return check_offer(await read_body(request, max_bytes=services(request).settings.max_body_bytes))


class _Gone:
    """The sibling that the room's record names did not take the connection: it is dead."""


GONE = _Gone()


def _forwarded(request: Request) -> bool:
    siblings = services(request).siblings
    return is_forwarded(request.headers.get(FORWARDED_HEADER), token=siblings.token if siblings else None)


async def _at_owner(request: Request, room_id: str, body: bytes = b"") -> Response | _Gone | None:
    """The answer of the sibling worker that holds the room's video, when one does (``GONE`` when it is
    dead); ``None``: serve the request here. Refuses a forged claim to be forwarded (403)."""
    st = services(request)
    forwarded = _forwarded(request)  # checked on every request, so a forged claim is never just ignored
    held_here = st.video.is_live(room_id)
    if not must_find_owner(clustered=st.siblings is not None, forwarded=forwarded, held_here=held_here):
        return None
    assert st.siblings is not None
    owner = await st.siblings.elsewhere(room_id)
    if owner is None:
        return None
    relayed = await st.siblings.relay(request, room_id, owner, body)
    return GONE if relayed is None else relayed


def _redirect(route: Redirect) -> Response:
    return Response(status_code=307, headers={"Location": route.location})


def _created(request: Request, kind: Kind, negotiated: Negotiated) -> Response:
    headers = {"Location": f"/api/rooms/{request.path_params['room']}/{kind}/{negotiated.session_id}"}
    link = ice_link_header(services(request).settings.ice_servers)
    if link:
        headers["Link"] = link
    return Response(negotiated.answer, status_code=201, media_type="application/sdp", headers=headers)


@doc(
    summary="WHIP: publish the room's video (a host session token, or the host's stream key from OBS)",
    raw_body="application/sdp",
    responses={
        201: Reply("The SDP answer", {"application/sdp": None}, {**_SESSION, **_ICE}),
        307: Reply("Publish to the external video engine named by Location instead", headers=_EXTERNAL),
    },
    errors=SDP_ERRORS,
)
async def whip(request: Request) -> Response:
    st = services(request)
    host = await st.auth.require_streamer(request)
    room = await visible_room(request, host)
    _check_open(room)
    _check_sdp_type(request)
    offer = await _offer(request)
    route = route_whip(
        room_id=room.id, external_url=st.settings.video_external_url, mode=st.settings.video_external_mode
    )
    if isinstance(route, Redirect):
        return _redirect(route)
    relayed = await _at_owner(request, room.id, offer.encode())
    if isinstance(relayed, Response):
        return relayed  # the sibling that holds the room's ingest replaced it there
    # No live sibling holds the room (or the one recorded is dead): the ingest starts here.
    negotiated = await st.video.publish(room.id, host_id=host.host_id, offer=offer)
    # The room may have ended while the offer was negotiated, after ending it closed the room's video: look
    # again now that the ingest is registered (ending commits before it closes the video, so one of the two
    # sees the other).
    async with st.sessions() as session:
        current = await session.get(Room, room.id)
    if current is None or current.status == RoomStatus.ENDED:
        with contextlib.suppress(UnknownVideoSession):  # already gone (replaced, or its peer went away)
            await st.video.stop_publish(room.id, negotiated.session_id, who=host)
        raise RoomStateConflict("This show ended while its video was connecting.", code="room_ended")
    return _created(request, "whip", negotiated)


@doc(
    summary="WHIP: stop publishing (ends every viewer's WHEP session)",
    responses={204: "Stopped"},
    errors=[UnknownVideoSession, NotYourVideo, *SIBLING_ERRORS],
)
async def stop_whip(request: Request) -> Response:
    st = services(request)
    host = await st.auth.require_streamer(request)
    relayed = await _at_owner(request, request.path_params["room"])
    if isinstance(relayed, Response):
        return relayed
    await st.video.stop_publish(request.path_params["room"], request.path_params["session"], who=host)
    return Response(status_code=204)


@doc(
    summary="WHEP: watch the room's video (a viewer of the room, or its host)",
    raw_body="application/sdp",
    responses={
        201: Reply("The SDP answer", {"application/sdp": None}, {**_SESSION, **_ICE}),
        307: Reply(
            "Watch on the external video engine named by Location instead (past the cap, or by setting)",
            headers=_EXTERNAL,
        ),
    },
    errors=[*SDP_ERRORS, NotLive, ViewerCap],
)
async def whep(request: Request) -> Response:
    st = services(request)
    who = await st.auth.identify(request)
    room = await visible_room(request, who)
    _check_open(room)
    _check_sdp_type(request)
    offer = await _offer(request)
    relayed = await _at_owner(request, room.id, offer.encode())
    if isinstance(relayed, Response):
        return relayed
    if relayed is GONE:
        raise NotLive("The worker that served this room's video has gone; try again when the host is back.")
    # No await between counting the viewers and ``play`` taking the slot: concurrent offers cannot overshoot.
    # The viewer's own sessions that this offer replaces do not count: their slots are theirs to reuse.
    replaces = st.video.replaced_by(room.id, who, max_per_viewer=st.settings.whep_max_per_viewer)
    route = route_whep(
        room_id=room.id,
        viewers=st.video.viewers(room.id) - len(replaces),
        max_viewers=st.settings.whep_max_viewers,
        external_url=st.settings.video_external_url,
        mode=st.settings.video_external_mode,
    )
    if isinstance(route, Redirect):
        return _redirect(route)
    negotiated = await st.video.play(
        room.id,
        viewer=who,
        offer=offer,
        replaces=replaces,
        connect_timeout=st.settings.whep_unanswered_seconds,
    )
    return _created(request, "whep", negotiated)


@doc(
    summary="WHEP: stop watching",
    responses={204: "Stopped"},
    errors=[UnknownVideoSession, NotYourVideo, *SIBLING_ERRORS],
)
async def stop_whep(request: Request) -> Response:
    st = services(request)
    who = await st.auth.identify(request)
    relayed = await _at_owner(request, request.path_params["room"])
    if isinstance(relayed, Response):
        return relayed
    await st.video.stop_play(request.path_params["room"], request.path_params["session"], who=who)
    return Response(status_code=204)


@doc(
    summary="A recent frame of the room's live video, as a small JPEG",
    responses={200: Reply("A JPEG, at most 320 pixels wide", {"image/jpeg": None}, _PRIVATE_CACHE)},
    errors=[UnknownRoom, NoThumbnail, *SIBLING_ERRORS],
)
async def thumbnail(request: Request) -> Response:
    st = services(request)
    room = await visible_room(request, await st.auth.identify(request))
    relayed = await _at_owner(request, room.id)
    if isinstance(relayed, Response):
        return relayed
    image = st.video.thumbnail(room.id)
    if image is None:
        raise NoThumbnail("This room has no thumbnail (yet): none is grabbed before its video is live.")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3"})


@doc(
    summary="How a browser connects to the room's video: the ICE (STUN/TURN) servers for its peer",
    responses={200: Reply("The ICE servers", {"application/json": VideoOut}, _PRIVATE_CACHE)},
    errors=[UnknownRoom],
)
async def video_config(request: Request) -> Response:
    """The host or a viewer of the room only, and never cached: TURN credentials may be in it. The pages
    ask before each WHIP or WHEP offer, so a rotated credential takes effect at the next connection. With
    HLS on it also signs the room's live playlist (``hls``) for anyone past the WHEP cap."""
    st = services(request)
    room = await visible_room(request, await st.auth.identify(request))
    hls = expires = None
    if st.settings.hls_enabled:
        hls, expires_s = signed_url(st.settings, room.id, LIVE_PLAYLIST, st.clock.now_ms())
        expires = iso(expires_s * 1000)
    body = VideoOut.of(st.settings.ice_servers, hls=hls, hls_expires_at=expires).model_dump_json(
        exclude_none=True
    )
    return Response(body, media_type="application/json", headers={"Cache-Control": "private, no-store"})


@doc(
    summary="The room's HLS encoder: its state, segments, size and restarts (the room's host)",
    responses={200: Reply("The encoder's state", {"application/json": HlsStatusOut}, _PRIVATE_CACHE)},
    errors=[UnknownRoom, *SIBLING_ERRORS],
)
async def hls_status(request: Request) -> Response:
    """Where the room's ingest is held by a sibling worker, that worker answers (its encoder is there)."""
    st = services(request)
    host = await st.auth.require_host(request)
    async with st.sessions() as session:
        room = await host_rooms.owned_room(session, host, request.path_params["room"])
    relayed = await _at_owner(request, room.id)
    if isinstance(relayed, Response):
        return relayed
    recorder = st.video.recorder(room.id)
    if recorder is not None:
        found = recorder.status()
    else:
        found = await asyncio.to_thread(_recorded, st.hls_store, room.id)
        if found["state"] == "waiting" and not st.settings.hls_enabled:
            found["state"] = "off"
    last = found.pop("last_segment_ms")
    out = HlsStatusOut(**found, last_segment_at=iso(last))
    return Response(
        out.model_dump_json(), media_type="application/json", headers={"Cache-Control": "private, no-store"}
    )


def _recorded(store: HlsStore, room_id: str) -> dict[str, Any]:
    """What the room's files say when no encoder of this process records it."""
    segments = store.segments(room_id)
    last = segments[-1] if segments else None
    return {
        "state": "ended" if store.is_ended(room_id) else "waiting",
        "segments": len(segments),
        "duration_seconds": round(sum(s.duration for s in segments), 3),
        "bytes": store.size_bytes(room_id),
        "last_segment_ms": last.end_ms if last else None,
        "restarts": 0,
        "width": last.width if last else None,
        "height": last.height if last else None,
        "dropped_frames": 0,
    }


async def end_video(request: Request) -> Response:
    """Internal, between workers: the room ended on a sibling, which asks this worker, the one holding its
    video, to close it (``Video.end_room``). Only a forwarded request may; to others it does not exist."""
    if not _forwarded(request):
        raise UnknownRoom("Not Found")
    await services(request).video.end_room(request.path_params["room"], ask_siblings=False)
    return Response(status_code=204)


routes = [
    Route("/api/rooms/{room:id}/whip", whip, methods=["POST"]),
    Route("/api/rooms/{room:id}/whip/{session:id}", stop_whip, methods=["DELETE"]),
    Route("/api/rooms/{room:id}/whep", whep, methods=["POST"]),
    Route("/api/rooms/{room:id}/whep/{session:id}", stop_whep, methods=["DELETE"]),
    Route("/api/rooms/{room:id}/thumbnail.jpg", thumbnail, methods=["GET"]),
    Route("/internal/video/rooms/{room:id}/end", end_video, methods=["POST"], include_in_schema=False),
    Route("/api/rooms/{room:id}/video", video_config, methods=["GET"]),
    Route("/api/rooms/{room:id}/hls", hls_status, methods=["GET"]),
]
