"""HTTP endpoints of a show's replay (SPEC §11, issue 14): ``GET``, ``PATCH`` and ``DELETE``
``/api/rooms/{room}/replay``.

The room's host, or one of its viewers, reads it (``LIVECART_LIMIT_REPLAY_PER_CUSTOMER``, counted per
customer, guest viewer or host); only the host changes it (``LIVECART_LIMIT_REPLAY_PER_HOST``). The service is
``shop.replay.Replays``, handed over by the app's wiring as the request state's ``replays``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.errors import RateLimited
from base.http import read_json
from base.limits import Limit
from base.openapi import ErrorSpec, doc
from identity.tokens import HostIdentity
from live.errors import UnknownRoom
from shop.errors import UnknownResource
from shop.replay_schemas import ReplayOut, ReplayPatchIn
from shop.services import ShopServices, services

ERRORS: list[ErrorSpec] = [UnknownRoom, (UnknownResource, "no_replay"), RateLimited]


async def _host(request: Request) -> tuple[ShopServices, HostIdentity]:
    st = services(request)
    host = await st.auth.require_host(request)
    await st.rate_limits.hit(Limit.REPLAY_PER_HOST, host.host_id, what="changes of replays")
    return st, host


@doc(
    responses={200: ReplayOut},
    errors=ERRORS,
    summary="The show's replay: its signed playlist, and its cards' moments in the video (host or viewer)",
)
async def get_replay(request: Request) -> JSONResponse:
    st = services(request)
    who = await st.auth.identify(request)
    key = who.host_id if isinstance(who, HostIdentity) else who.buyer_key
    await st.rate_limits.hit(Limit.REPLAY_PER_CUSTOMER, key, what="replay requests")
    return JSONResponse(await services(request).replays.view(who, request.path_params["room"]))


@doc(
    body=ReplayPatchIn,
    responses={200: ReplayOut},
    errors=ERRORS,
    summary="Publish the replay to the room's viewers, or hide it (the host)",
)
async def patch_replay(request: Request) -> JSONResponse:
    _, host = await _host(request)
    body = await read_json(request, ReplayPatchIn)
    return JSONResponse(
        await services(request).replays.set_visible(host, request.path_params["room"], visible=body.visible)
    )


@doc(
    responses={204: "Deleted: its files are gone (or go when the show ends, if it is on)"},
    errors=ERRORS,
    summary="Delete the replay for good (the host)",
)
async def delete_replay(request: Request) -> Response:
    _, host = await _host(request)
    await services(request).replays.delete(host, request.path_params["room"])
    return Response(status_code=204)


routes = [
    Route("/api/rooms/{room:id}/replay", get_replay, methods=["GET"]),
    Route("/api/rooms/{room:id}/replay", patch_replay, methods=["PATCH"]),
    Route("/api/rooms/{room:id}/replay", delete_replay, methods=["DELETE"]),
]
