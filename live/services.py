"""What ``live``'s endpoints work with, built once by the app wiring and reached through the request state
(``services(request)``): nothing outside this list, and nothing of another package's but what it names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from base.clock import Clock
from base.events import Events
from base.limits import RateLimits
from base.settings import Settings
from identity.codes import SignInCodes
from identity.guards import Authenticator
from identity.sms import SmsSender
from identity.tokens import TokenSigner
from identity.wechat import WeChat
from live.hls_files import HlsFiles
from live.hls_store import HlsStore
from live.video import Video
from live.video_siblings import Siblings

#: Called when a show ends, after its room is committed as ended (the shop closes the room's cards).
RoomEnded = Callable[[str], Awaitable[None]]
#: A show's picture for its link preview (the shop's first pinned product image), or ``None``.
RoomCover = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class LiveServices:
    settings: Settings
    clock: Clock
    signer: TokenSigner
    auth: Authenticator
    rate_limits: RateLimits
    sessions: async_sessionmaker[AsyncSession]
    events: Events
    room_ended: RoomEnded
    video: Video
    #: The rooms' HLS recordings on disk (``LIVECART_DATA_DIR``/hls), whether HLS is on or not (replays).
    hls_store: HlsStore
    #: What serves those files: whole reads and recent segments in memory.
    hls_files: HlsFiles
    codes: SignInCodes
    #: Where sign-in codes are sent; ``None``: phone sign-in is off.
    sms: SmsSender | None
    #: WeChat web authorization and the JS-SDK ticket; ``None``: no AppID, WeChat sign-in is off.
    wechat: WeChat | None = None
    #: The other workers of ``livecart serve --workers N``; ``None`` in a single process.
    siblings: Siblings | None = None
    #: Where a room's cover comes from (``live.preview``); ``None``: previews have no cover.
    room_cover: RoomCover | None = None


def services(conn: HTTPConnection) -> LiveServices:
    return cast(LiveServices, conn.state.live)
