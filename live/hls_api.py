"""Serving a room's HLS recording (SPEC section 11): ``GET /api/rooms/{room}/hls/{grant}/{name}``.

Built to sit behind a CDN or an nginx cache and to serve many players from one process: the grant in the
path is the only credential (``live.hls_rules``: an HMAC check, no database, no session), so any number of
players share one cached copy of each file. Checks, in order: the per-address rate limit (429), the grant
(403: forged, another room's, malformed, expired), the name (404 for anything that is not a playlist or a
segment name), a hidden replay (404), the file (404 until it exists).

- Playlists: ``application/vnd.apple.mpegurl``, ``Cache-Control: public, max-age=1`` while the show is on
  (half a segment: a cache in front still sees each new segment in time), ``max-age=60`` once it ended.
- Segments: ``video/mp2t``, ``public, max-age=31536000, immutable`` (a segment never changes once listed).
- A file is read whole in one thread hop and what many players ask for in the same seconds is answered from
  memory (``live/hls_files.py``); a ``Range`` request is answered from the file by Starlette's
  ``FileResponse`` (``206``). ``Access-Control-Allow-Origin: *`` so that a player on a page of another origin
  (a CDN host) may read them.
- The per-address limit is counted in this process's memory, not Redis: video never waits on Redis, and
  Redis never carries a thousand players' requests (with N workers an address may make N times as many).
"""

from __future__ import annotations

import asyncio
import os

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from base.errors import RateLimited
from base.http import client_ip
from base.limits import Limit
from base.openapi import Header, Reply, doc
from base.settings import Settings
from live.errors import HlsForbidden, NoHls
from live.hls_rules import (
    FULL_PLAYLIST,
    PLAYLIST_TYPE,
    SEGMENT_TYPE,
    check_grant,
    grant_expiry,
    hls_path,
    is_served_name,
    sign_grant,
)
from live.services import services

SEGMENT_CACHE = "public, max-age=31536000, immutable"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
ENDED_PLAYLIST_CACHE = "public, max-age=60"


def signed_url(settings: Settings, room_id: str, name: str, now_ms: int) -> tuple[str, int]:
    """The path of one of the room's HLS files under a grant issued now, and the grant's expiry (epoch s)."""
    expires = grant_expiry(
        now_ms, ttl_seconds=settings.hls_grant_seconds, bucket_seconds=settings.hls_grant_bucket_seconds
    )
    return hls_path(room_id, sign_grant(settings.signing_keys[0], room_id, expires), name), expires


@doc(
    summary="A file of the room's HLS recording: a playlist or a segment (the signed path is the credential)",
    auth=False,
    responses={
        200: Reply(
            "The playlist or the segment",
            {PLAYLIST_TYPE: None, SEGMENT_TYPE: None},
            {"Cache-Control": Header("public; immutable for a segment")},
        ),
        206: "A range of the file (a Range request)",
    },
    errors=[RateLimited, HlsForbidden, (HlsForbidden, "hls_expired"), NoHls, (NoHls, "no_replay")],
)
async def hls_file(request: Request) -> Response:
    st = services(request)
    await st.rate_limits.hit(Limit.HLS_PER_IP, client_ip(request), what="video requests")
    room_id, name = request.path_params["room"], request.path_params["name"]
    check_grant(st.settings.signing_keys, room_id, request.path_params["grant"], now_ms=st.clock.now_ms())
    if not is_served_name(name):
        raise NoHls("No such file.")
    files = st.hls_files
    room = await files.room(room_id)
    if not room.exists:
        raise NoHls("No such file (yet): the video has not started, or this recording is gone.")
    if room.hidden and (room.ended or name == FULL_PLAYLIST):
        raise NoHls("The host has hidden this replay.", code="no_replay")
    try:
        if name.endswith(".m3u8"):
            text = await files.playlist(room_id, name)
            cache = ENDED_PLAYLIST_CACHE if text.rstrip().endswith(b"#EXT-X-ENDLIST") else LIVE_PLAYLIST_CACHE
            headers = {"Cache-Control": cache, "Access-Control-Allow-Origin": "*"}
            return Response(text, media_type=PLAYLIST_TYPE, headers=headers)
        headers = {"Cache-Control": SEGMENT_CACHE, "Access-Control-Allow-Origin": "*"}
        if "range" in request.headers:  # a part: Starlette's own range handling, from the file
            path = st.hls_store.room_dir(room_id) / name
            stat = await asyncio.to_thread(os.stat, path)
            return FileResponse(path, media_type=SEGMENT_TYPE, headers=headers, stat_result=stat)
        body = await files.segment(room_id, name)
    except FileNotFoundError:
        raise NoHls("No such file (yet): the video has not started, or this segment is gone.") from None
    return Response(body, media_type=SEGMENT_TYPE, headers={**headers, "Accept-Ranges": "bytes"})


routes = [Route("/api/rooms/{room:id}/hls/{grant}/{name}", hls_file, methods=["GET", "HEAD"])]
