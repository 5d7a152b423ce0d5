"""Pure decisions of the video edge (WHIP ingest, WHEP playback): where a session is served, what an offer
must look like, which ICE servers a client is told about. No I/O; ``live/video.py`` is the aiortc adapter.

Where a session goes (SPEC section 6, the scale-out path):

- ``video_external_mode="always"``: WHIP and WHEP are both redirected (``307``) to the external engine;
  this server only checks who may publish or watch.
- otherwise WHIP is served here, and WHEP here up to ``whep_max_viewers`` per room. A viewer past the cap
  is redirected to the external engine when one is configured, and refused (``viewer_cap``) when not.
- one viewer holds at most ``whep_max_per_viewer`` of those sessions: their new offer replaces their oldest
  (``sessions_to_replace``), whose slots count as free for the new offer. One viewer cannot take every
  slot of a room by offering again and again.

Which worker serves it (``livecart serve --workers N``): a room's ingest, its viewers and its thumbnail
live in one process, the ingest's *owner*, recorded in Redis (``live/video_siblings.py``). A request about a
room whose ingest another worker holds is forwarded to that worker's private address; one that a sibling
forwarded is served where it lands (never forwarded twice), and it proves where it comes from with the
deployment's forward token, which a client cannot forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from base.settings import IceServer
from live.errors import ForgedForward, InvalidSdp, ViewerCap

Kind = Literal["whip", "whep"]
SDP_MEDIA_TYPE = "application/sdp"
#: The header by which a worker marks a request it forwards to a sibling; its value is the forward token.
FORWARDED_HEADER = "x-livecart-forwarded"


@dataclass(frozen=True, slots=True)
class Serve:
    """Negotiate the session in this process."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer ``307 Temporary Redirect`` to ``location`` (the client re-sends its offer there)."""

    location: str


@dataclass(frozen=True, slots=True)
class Sibling:
    """Forward the request to the sibling worker at ``url`` (its private address), and relay its answer."""

    url: str


Route = Serve | Redirect
Placement = Serve | Sibling


@dataclass(frozen=True, slots=True)
class Owner:
    """Which worker holds a room's ingest, as recorded in Redis: its private address and the session id."""

    url: str
    ingest_id: str

    def encode(self) -> str:
        """The record's exact text; compare-and-delete compares it whole, so it must be deterministic."""
        return json.dumps({"url": self.url, "ingest": self.ingest_id}, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> Owner | None:
        """The record, or ``None`` for one that is not (a foreign or damaged value counts as no owner)."""
        try:
            value = json.loads(raw)
            return cls(url=str(value["url"]), ingest_id=str(value["ingest"]))
        except (ValueError, TypeError, KeyError):
            return None


def forward_token(secret_key: str, group: str) -> str:
    """The proof that a request comes from a worker of this deployment (``group``): derived from the secret
    key, which clients never see, so a client cannot make a worker take its request for a forwarded one."""
    message = f"livecart-video-forward:{group}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def is_forwarded(header: str | None, *, token: str | None) -> bool:
    """Whether a request was forwarded by a sibling worker (its ``FORWARDED_HEADER`` holds ``token``; a
    single worker has no token). A request that claims it and cannot prove it is refused (``ForgedForward``)
    rather than served as if the claim were true or false."""
    if header is None:
        return False
    if token is None or not hmac.compare_digest(header.encode(), token.encode()):
        raise ForgedForward("This request claims to come from another LiveCart worker, and it does not.")
    return True


def must_find_owner(*, clustered: bool, forwarded: bool, held_here: bool) -> bool:
    """Whether a video request needs the room's owner record before it can be served: only in a worker of
    several, only for a request from a client (a forwarded one is served where it lands, so nothing goes
    round in circles), and only when this process does not hold the room's ingest itself (then it is the
    owner: a publish replaces its own ingest, and its viewers, sessions and thumbnail are here)."""
    return clustered and not forwarded and not held_here


def place(owner: Owner | None, *, me: str) -> Placement:
    """Where a request about a room goes, given its owner record: to the sibling that holds the ingest, or
    here when none does (WHIP publishes here; WHEP, DELETE and the thumbnail find nothing) or this one does.
    A sibling that turns out not to answer is treated as no owner by the caller."""
    if owner is None or owner.url == me:
        return Serve()
    return Sibling(owner.url)


def external_location(template: str, *, room_id: str, kind: Kind) -> str:
    """The external engine's endpoint for this room (the template was checked by ``Settings``)."""
    return template.format(room=quote(room_id, safe=""), kind=kind)


def route_whip(*, room_id: str, external_url: str | None, mode: str) -> Route:
    if external_url is not None and mode == "always":
        return Redirect(external_location(external_url, room_id=room_id, kind="whip"))
    return Serve()


def sessions_to_replace(theirs: Sequence[str], *, max_per_viewer: int) -> list[str]:
    """A viewer who holds ``theirs`` (their WHEP sessions in the room, oldest first) makes a new offer: the
    sessions it replaces, their oldest, so that with the new one they hold at most ``max_per_viewer``."""
    excess = len(theirs) + 1 - max_per_viewer
    return list(theirs[:excess]) if excess > 0 else []


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
