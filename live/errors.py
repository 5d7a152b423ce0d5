"""Errors of ``live``: rooms, invites, identity."""

from __future__ import annotations

from livecart.errors import Conflict, Forbidden, Unauthorized


class InvalidInvite(Forbidden):
    default_code = "invalid_invite"


class InvalidToken(Unauthorized):
    default_code = "unauthorized"


class RoomStateConflict(Conflict):
    default_code = "invalid_room_state"
