"""Errors of ``live``: rooms, invites, identity, video."""

from __future__ import annotations

from livecart.errors import BadRequest, Conflict, Forbidden, Unauthorized


class InvalidInvite(Forbidden):
    default_code = "invalid_invite"


class InvalidToken(Unauthorized):
    default_code = "unauthorized"


class RoomStateConflict(Conflict):
    default_code = "invalid_room_state"


class InvalidSdp(BadRequest):
    """An SDP offer that is empty, not SDP, or that WebRTC cannot answer (no common codec, no media)."""

    default_code = "invalid_sdp"


class NotLive(Conflict):
    """WHEP for a room whose host is not publishing video (now)."""

    default_code = "not_live"


class ViewerCap(Conflict):
    """The room has as many WHEP viewers as this server encodes for, and no external engine is set."""

    default_code = "viewer_cap"


class ForgedForward(Forbidden):
    """A request that claims to be forwarded by another worker of this deployment without its token."""

    default_code = "forged_forward"
