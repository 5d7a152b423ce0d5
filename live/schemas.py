"""Request bodies and response shapes of the live API (contract v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HostIn(Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class RoomIn(Body):
    title: Text
    scheduled_at: AwareDatetime | None = None


class JoinIn(Body):
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


def _unused(_: datetime) -> None:  # keeps the datetime import for pydantic's forward refs
    return None
