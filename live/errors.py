"""Errors of ``live``: rooms, invites, video.

LiveError
├── UnknownRoom, UnknownVideoSession, NoThumbnail,
│   UnknownSession, NoHls                              (not found)
├── PhoneTaken                                         (a conflict)
├── RoomStateConflict, NotLive, ViewerCap              (the room's state does not allow it)
├── SignupClosed, ForgedForward, NotYourVideo,
│   HlsForbidden                                       (refused)
├── InvalidSdp                                         (a bad offer)
├── InvalidPage                                        (a bad page of a list)
└── VideoUnavailable                                   (shutting down, or a sibling did not answer)
"""

from __future__ import annotations

from base.errors import LiveCartError


class LiveError(LiveCartError):
    """The root of ``live``'s errors."""


class UnknownRoom(LiveError):
    default_code = "not_found"


class UnknownVideoSession(LiveError):
    default_code = "unknown_session"


class NoThumbnail(LiveError):
    default_code = "not_found"


class RoomStateConflict(LiveError):
    default_code = "invalid_room_state"


class InvalidSdp(LiveError):
    """An SDP offer that is empty, not SDP, or that WebRTC cannot answer (no common codec, no media)."""

    default_code = "invalid_sdp"


class NotLive(LiveError):
    """WHEP for a room whose host is not publishing video (now)."""

    default_code = "not_live"


class ViewerCap(LiveError):
    """The room has as many WHEP viewers as this server encodes for, and no external engine is set."""

    default_code = "viewer_cap"


class SignupClosed(LiveError):
    default_code = "signup_closed"


class ForgedForward(LiveError):
    """A request that claims to be forwarded by another worker of this deployment without its token."""

    default_code = "forged_forward"


class NotYourVideo(LiveError):
    """A WHIP or WHEP session that belongs to someone else."""

    default_code = "forbidden"


class InvalidPage(LiveError):
    default_code = "invalid_request"


class VideoUnavailable(LiveError):
    """The server is shutting down, or the worker that holds the room's video did not answer in time."""

    default_code = "unavailable"


class UnknownSession(LiveError):
    """A host session id that is not one of the host's active sessions."""

    default_code = "not_found"


class PhoneTaken(LiveError):
    """Another host signed up with this phone number."""

    default_code = "phone_taken"


class HlsForbidden(LiveError):
    """An HLS URL whose grant is forged, for another room, malformed (``forbidden``) or expired
    (``hls_expired``)."""

    default_code = "forbidden"


class NoHls(LiveError):
    """No such HLS file: the room has no recording (yet), or not that segment."""

    default_code = "not_found"
