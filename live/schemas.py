"""Request bodies and response shapes of the live API (contract v1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, Strict

from livecart.fields import DisplayName, HostName, Label, RequestBody, Title, Token


class HostIn(RequestBody):
    name: HostName


class RoomIn(RequestBody):
    title: Title
    #: ISO 8601 with a UTC offset; parsed from its JSON string even though bodies are validated strictly.
    scheduled_at: Annotated[AwareDatetime, Strict(False)] | None = None


class JoinIn(RequestBody):
    invite: Token
    name: DisplayName
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


class HostOut(BaseModel):
    id: str
    name: str
    token: str


class RoomOut(BaseModel):
    id: str
    title: str
    status: Literal["scheduled", "live", "ended"]
    scheduled_at: str | None
    started_at: str | None
    ended_at: str | None
    invite_token: str | None
    invite_url: str | None


class JoinOut(BaseModel):
    viewer_id: str
    room_id: str
    name: str
    token: str
    share_code: str
    share_url: str
    referrer_id: str | None


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
