"""Pure decisions of the video edge (WHIP ingest, WHEP playback): where a session is served, what an offer
must look like, which ICE servers a client is told about. No I/O; ``live/video.py`` is the aiortc adapter.

Where a session goes (SPEC section 6, the scale-out path):

- ``video_external_mode="always"``: WHIP and WHEP are both redirected (``307``) to the external engine;
  this server only checks who may publish or watch.
- otherwise WHIP is served here, and WHEP here up to ``whep_max_viewers`` per room. A viewer past the cap
  is redirected to the external engine when one is configured, and refused (``viewer_cap``) when not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from live.errors import InvalidSdp, ViewerCap
from livecart.settings import IceServer

Kind = Literal["whip", "whep"]
SDP_MEDIA_TYPE = "application/sdp"


@dataclass(frozen=True, slots=True)
class Serve:
    """Negotiate the session in this process."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer ``307 Temporary Redirect`` to ``location`` (the client re-sends its offer there)."""

    location: str


Route = Serve | Redirect


def external_location(template: str, *, room_id: str, kind: Kind) -> str:
    """The external engine's endpoint for this room (the template was checked by ``Settings``)."""
    return template.format(room=quote(room_id, safe=""), kind=kind)


def route_whip(*, room_id: str, external_url: str | None, mode: str) -> Route:
    if external_url is not None and mode == "always":
        return Redirect(external_location(external_url, room_id=room_id, kind="whip"))
    return Serve()


def route_whep(*, room_id: str, viewers: int, max_viewers: int, external_url: str | None, mode: str) -> Route:
    """``viewers``: the room's WHEP sessions in this process, those still negotiating included."""
    if external_url is not None and (mode == "always" or viewers >= max_viewers):
        return Redirect(external_location(external_url, room_id=room_id, kind="whep"))
    if viewers >= max_viewers:
        raise ViewerCap(
            f"This room already has {viewers} video viewers, as many as this server serves.",
            extra={"max_viewers": max_viewers},
        )
    return Serve()


def is_sdp(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` header names ``application/sdp`` (parameters such as a charset allowed)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == SDP_MEDIA_TYPE


def check_offer(body: bytes) -> str:
    """The offer as text, when it looks like an SDP session description with at least one media section;
    ``InvalidSdp`` otherwise. What only WebRTC can judge (codecs, fingerprints) is left to it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSdp("The offer is not UTF-8 text.") from None
    if "\x00" in text:
        raise InvalidSdp("The offer contains a NUL character.")
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise InvalidSdp("The offer is not an SDP session description (it must start with 'v=0').")
    if not any(line.startswith("m=") for line in lines):
        raise InvalidSdp("The offer has no media section (m=).")
    if "\r\n" not in text:
        text = "\r\n".join(lines) + "\r\n"  # SDP lines end in CRLF; a hand-written offer may use LF
    return text


def ice_link_header(servers: Sequence[IceServer]) -> str | None:
    """The ``Link`` header by which WHIP and WHEP tell a client the ICE servers to use (WHIP, RFC 9725)."""
    links = []
    for server in servers:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None:
                link += f'; username="{_quoted(server.username)}"'
            if server.credential is not None:
                link += f'; credential="{_quoted(server.credential)}"; credential-type="password"'
            links.append(link)
    return ", ".join(links) or None


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
