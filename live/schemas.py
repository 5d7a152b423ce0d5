"""Request bodies and response shapes of the live API (contract v1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Strict

from livecart.fields import DisplayName, HostName, RequestBody, Title, Token


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
