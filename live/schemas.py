"""Request bodies and response shapes of the live API (contract v1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from base.fields import DisplayName, HostName, Instant, Label, QueryInt, RequestBody, Title, Token, Url
from base.settings import IceServer
from identity.wechat import NEXT_MAX, NEXT_PATTERN


class HostIn(RequestBody):
    name: HostName
    #: The host's mobile number: they sign in on another device with a code sent to it (optional; without
    #: it a host signs in again only from a signed-in device or with ``livecart create-session``).
    phone: Phone | None = None


class HostOut(BaseModel):
    id: str
    name: str
    #: The new session's token: ``Authorization: Bearer <token>`` for every host call.
    token: str
    session_id: str
    expires_at: str


class SessionOut(BaseModel):
    id: str
    label: str
    created_at: str
    last_used_at: str
    expires_at: str
    revoked_at: str | None
    active: bool
    current: bool


class RevokedOut(BaseModel):
    revoked: int


class StreamKeyOut(BaseModel):
    #: For OBS (WHIP, ``Bearer`` token); shown only now: rotating makes a new one and retires this one.
    stream_key: str
    created_at: str


Phone = Annotated[
    str, Field(min_length=3, max_length=32, description="A mobile number; +86 if no country code")
]


class CodeIn(RequestBody):
    phone: Phone


class CodeSentOut(BaseModel):
    sent: bool
    #: The code itself: only from the dev SMS provider (development servers).
    dev_code: str | None = None


class SignInIn(RequestBody):
    phone: Phone
    code: Annotated[str, Field(min_length=4, max_length=8, pattern=r"^\s*[0-9]+\s*$")]


class SignInOut(BaseModel):
    customer_id: str
    #: ``Authorization: Bearer <token>`` for joining this shop's rooms (also set as an HttpOnly cookie).
    token: str


class RoomIn(RequestBody):
    title: Title
    #: ``verified``: viewers sign in (phone code or WeChat), one viewer per customer, limits hold;
    #: ``guest``: v1, anyone with the invite joins under any name (per-buyer limits can be dodged).
    sign_in: Literal["verified", "guest"] = "verified"
    #: RFC 3339 with a UTC offset (``base.fields.Instant``), kept as its instant in UTC.
    scheduled_at: Instant | None = None


class JoinIn(RequestBody):
    invite: Token
    #: Required in a guest room; in a verified room the customer's earlier name is kept if omitted.
    name: DisplayName | None = None
    ref: Token | None = None


#: Per-invitee invites: valid for a week unless told otherwise, for at most 90 days.
INVITE_DEFAULT_SECONDS = 7 * 24 * 3600
INVITE_MAX_SECONDS = 90 * 24 * 3600
INVITE_MAX_USES = 100_000


class InviteIn(RequestBody):
    #: Who the invite is for (shown to the host only).
    label: Label | None = None
    max_uses: Annotated[int, Field(ge=1, le=INVITE_MAX_USES)] = 1
    expires_in_seconds: Annotated[int, Field(gt=0, le=INVITE_MAX_SECONDS)] = INVITE_DEFAULT_SECONDS


#: ``GET /api/rooms``: rooms per page unless told otherwise, and at most.
ROOMS_PAGE_DEFAULT = 50
ROOMS_PAGE_MAX = 200


class RoomsQuery(BaseModel):
    """The query string of ``GET /api/rooms`` (validated laxly: query values are text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["scheduled", "live", "ended"] | None = Field(
        default=None, description="Only the rooms in this status"
    )
    limit: QueryInt = Field(
        default=ROOMS_PAGE_DEFAULT, ge=1, le=ROOMS_PAGE_MAX, description="Rooms in this page (at most 200)"
    )
    before: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z_-]{1,64}$",
        description="The next page: the id of the last room of the previous one (one of your rooms)",
    )


class RoomOut(BaseModel):
    id: str
    #: The host's shop (``/l/{host_id}``, ``/api/me?shop=``).
    host_id: str
    title: str
    status: Literal["scheduled", "live", "ended"]
    scheduled_at: str | None
    started_at: str | None
    ended_at: str | None
    invite_token: str | None
    invite_url: str | None
    sign_in: Literal["verified", "guest"]


class JoinOut(BaseModel):
    viewer_id: str
    room_id: str
    name: str
    token: str
    share_code: str
    share_url: str
    referrer_id: str | None
    #: The signed-in customer this viewer is; ``null`` for a guest.
    customer_id: str | None = None


class InviteOut(BaseModel):
    """A per-invitee invite (its host only)"""

    id: str
    room_id: str
    label: str | None
    token: str
    url: str
    max_uses: int
    uses: int
    expires_at: str
    created_at: str
    revoked: bool


class IceServerOut(BaseModel):
    """One STUN or TURN server, as a browser's RTCPeerConnection takes it (an RTCIceServer)"""

    urls: list[str]
    #: Absent (not null) when the server needs none: a browser would take null for the text "null".
    username: str | None = None
    credential: str | None = None


class VideoOut(BaseModel):
    """How a browser connects to the room's video: the ICE servers for its RTCPeerConnection (WHEP), and
    the signed HLS playlist for everyone past the WHEP cap or who prefers it"""

    ice_servers: list[IceServerOut]
    #: The room's live HLS playlist (a path under the deployment's base URL), signed for this room until
    #: ``hls_expires_at``; it needs no other credential. 404 until the first segment is written. ``None``:
    #: HLS is off (``LIVECART_HLS_ENABLED=false``).
    hls: str | None = None
    hls_expires_at: str | None = None

    @classmethod
    def of(
        cls, servers: Sequence[IceServer], *, hls: str | None = None, hls_expires_at: str | None = None
    ) -> VideoOut:
        """The configured servers (``LIVECART_ICE_SERVERS``), each ``urls`` as a list."""
        return cls(
            ice_servers=[
                IceServerOut(
                    urls=[s.urls] if isinstance(s.urls, str) else list(s.urls),
                    username=s.username,
                    credential=s.credential,
                )
                for s in servers
            ],
            hls=hls,
            hls_expires_at=hls_expires_at,
        )


class HlsStatusOut(BaseModel):
    """The room's HLS encoder, for its host: ``off`` (HLS is off), ``waiting`` (no ingest now), ``encoding``,
    ``restarting`` (the encoder crashed and starts again), ``ended`` (the show ended: a replay)"""

    state: Literal["off", "waiting", "encoding", "restarting", "ended"]
    segments: int
    duration_seconds: float
    bytes: int
    last_segment_at: str | None
    #: Encoder restarts during the current ingest.
    restarts: int
    width: int | None
    height: int | None
    #: Frames of the current ingest not encoded because the encoder was behind or restarting.
    dropped_frames: int


# -- sign-in by WeChat, the JS-SDK share set-up (SPEC §8) ----------------------------------------------

#: The characters of a signed ``state`` (itsdangerous, URL-safe base64 and dots).
STATE_PATTERN = r"^[0-9A-Za-z_.-]{1,1000}$"


class WeChatStartQuery(BaseModel):
    """The query string of ``GET /auth/wechat/start``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    room: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$", description="The room whose shop to sign in to")
    next: str | None = Field(
        default=None,
        max_length=NEXT_MAX,
        pattern=NEXT_PATTERN,
        description="A path of this site to return to (default the room's page, /r/{room})",
    )


class WeChatCallbackQuery(BaseModel):
    """The query string WeChat sends back to ``GET /auth/wechat/callback``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: str = Field(pattern=r"^[!-~]{1,128}$", description="WeChat's one-time authorization code")
    state: str = Field(pattern=STATE_PATTERN, description="The state /auth/wechat/start signed")


class ShareConfigQuery(BaseModel):
    """The query string of ``GET /api/rooms/{room}/wechat/share-config``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: Url = Field(description="The page's full URL (a page of this server), without the #fragment")


class ShareConfigOut(BaseModel):
    """What ``wx.config`` takes besides ``jsApiList``: the JS-SDK signature of the page URL"""

    #: The names are the JS-SDK's own (camelCase), so the page hands the object to wx.config as it is.
    appId: str
    timestamp: int
    nonceStr: str
    signature: str
