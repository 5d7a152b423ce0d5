"""What a show is, for whoever holds a link to it: title, host, status, sign-in mode and cover. The viewer
page shows it before anyone signs in, and the page's Open Graph tags (``live.pages``) unfold it in
messengers.

A room is not public, so the preview answers only for a link that would let its holder join: the room's
invite token, a per-invitee invite that still stands (signature, room and expiry in the token; not revoked
in SQL; its uses are not counted, since whoever used it may come back), or the share code of one of the
room's viewers. Anything else is 403 ``invalid_invite``, an unknown room included: the answer never tells
which room ids exist.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from base.fields import Token
from base.http import read_query
from base.openapi import doc
from identity.errors import InvalidInvite
from identity.tokens import is_invite_token
from live import bindings, invites
from live.models import Host, Room
from live.rooms import RoomStatus, admits_joins
from live.services import LiveServices, services


class PreviewQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    invite: Token


class PreviewOut(BaseModel):
    title: str
    host_name: str
    status: Literal["scheduled", "live", "ended"]
    sign_in: Literal["verified", "guest"]
    #: The first pinned product's image (an ``https`` link the host chose), ``null`` when none has one.
    cover_url: str | None
    #: The show ended and its replay (回放) is published: the link still admits whoever holds it, to watch.
    replay: bool


@dataclass(frozen=True, slots=True)
class Preview:
    title: str
    host_name: str
    status: str
    sign_in: str
    cover_url: str | None
    replay: bool = False

    def json(self) -> dict[str, str | bool | None]:
        return asdict(self)


NOT_VALID = "This link is not valid for this show."


async def preview(st: LiveServices, room_id: str, invite: str) -> Preview:
    """The room's preview for the holder of ``invite``; ``InvalidInvite`` when it admits nobody."""
    now = st.clock.now_ms()
    claim = st.signer.verify_invite(invite, room_id=room_id, now_ms=now) if is_invite_token(invite) else None
    async with st.sessions() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise InvalidInvite(NOT_VALID)
        if claim is not None:
            await invites.check_usable(session, claim, now_ms=now)
        elif (
            not hmac.compare_digest(invite.encode(), room.invite_token.encode())
            and await bindings.bringer(session, room_id, room.host_id, invite) is None
        ):
            raise InvalidInvite(NOT_VALID)
        host = await session.get(Host, room.host_id)
    ended = room.status == RoomStatus.ENDED
    published = room.replay is None  # kept and published
    replay = ended and admits_joins(
        room.status, replay_published=published, recorded=st.hls_store.exists(room.id)
    )
    cover = await st.room_cover(room_id) if st.room_cover is not None else None
    return Preview(
        title=room.title,
        host_name=host.name if host is not None else "",
        status=room.status,
        sign_in=room.sign_in,
        cover_url=cover,
        replay=replay,
    )


@doc(
    query=PreviewQuery,
    responses={200: PreviewOut},
    auth=False,
    errors=[InvalidInvite],
    summary="What a show is (title, host, status, sign-in, cover), for the holder of an invite or share code",
)
async def room_preview(request: Request) -> JSONResponse:
    query = read_query(request, PreviewQuery)
    found = await preview(services(request), request.path_params["room"], query.invite)
    return JSONResponse(found.json())


routes = [Route("/api/rooms/{room:id}/preview", room_preview, methods=["GET"])]
