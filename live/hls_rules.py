"""Pure decisions of the HLS edge (SPEC section 11): signed playlist URLs, playlist text, when a segment is
cut, the media clock of an ingest, and the size of the encoded picture. No I/O; ``live/hls_store.py`` keeps
the files, ``live/hls_encoder.py`` runs the encoder, ``live/hls_api.py`` serves them.

Signed URLs (grants). A grant is ``EXPIRES.SIGNATURE`` in the path of a room's HLS URLs:
``/api/rooms/{room}/hls/{grant}/live.m3u8``. The playlists name their segments relatively, so a player
fetches the segments under the same grant, and nothing else is asked of it: no cookie, no token. The
signature is an HMAC of the room and the expiry under the deployment's secret key (older keys still verify,
as for tokens). The expiry is rounded up to a bucket, so every viewer of a room in the same few minutes gets
the same URLs, which a CDN or an nginx cache in front stores once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from live.errors import HlsForbidden

#: The playlists of a room's directory: the live window, and every segment (the replay).
LIVE_PLAYLIST = "live.m3u8"
FULL_PLAYLIST = "full.m3u8"
PLAYLISTS = (LIVE_PLAYLIST, FULL_PLAYLIST)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
#: Segment file names: ``seg-000042.ts`` (the sequence number, zero-padded so that names sort).
SEGMENT_PREFIX, SEGMENT_SUFFIX = "seg-", ".ts"
_SIGNATURE_BYTES = 18  # 144 bits, 24 characters of base64url


# -- grants -------------------------------------------------------------------------------------------


def grant_expiry(now_ms: int, *, ttl_seconds: int, bucket_seconds: int) -> int:
    """When a grant issued now expires (epoch seconds): at least ``ttl_seconds`` from now, rounded up to a
    multiple of ``bucket_seconds``."""
    earliest = now_ms // 1000 + ttl_seconds
    return math.ceil(earliest / bucket_seconds) * bucket_seconds


def _signature(key: str, room_id: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"livecart-hls:{room_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:_SIGNATURE_BYTES]).decode().rstrip("=")


def sign_grant(key: str, room_id: str, expires: int) -> str:
    """The grant for ``room_id`` until ``expires`` (epoch seconds), signed with ``key`` (the newest)."""
    return f"{expires}.{_signature(key, room_id, expires)}"


def check_grant(keys: Sequence[str], room_id: str, grant: str, *, now_ms: int) -> int:
    """The grant's expiry when it is a genuine, unexpired grant for ``room_id`` under one of ``keys``;
    ``HlsForbidden`` (403) otherwise: forged, for another room, malformed or expired."""
    expires_text, dot, signature = grant.partition(".")
    if not dot or not expires_text.isdigit() or len(expires_text) > 12:
        raise HlsForbidden("This video link is not valid.")
    expires = int(expires_text)
    if not any(hmac.compare_digest(signature, _signature(k, room_id, expires)) for k in keys):
        raise HlsForbidden("This video link is not valid.")
    if expires * 1000 <= now_ms:
        raise HlsForbidden("This video link has expired; reload the page for a new one.", code="hls_expired")
    return expires


def hls_path(room_id: str, grant: str, name: str) -> str:
    """The path of one of a room's HLS files under a grant (``name``: a playlist or a segment)."""
    return f"/api/rooms/{room_id}/hls/{grant}/{name}"


# -- files ---------------------------------------------------------------------------------------------


def segment_name(seq: int) -> str:
    return f"{SEGMENT_PREFIX}{seq:06d}{SEGMENT_SUFFIX}"


def is_served_name(name: str) -> bool:
    """Whether ``name`` is a file a grant serves: a playlist, or a segment name as ``segment_name`` writes
    it. Nothing else in a room's directory (its records, a half-written file) is ever served."""
    if name in PLAYLISTS:
        return True
    digits = name.removeprefix(SEGMENT_PREFIX).removesuffix(SEGMENT_SUFFIX)
    return (
        name.startswith(SEGMENT_PREFIX)
        and name.endswith(SEGMENT_SUFFIX)
        and len(digits) == 6
        and digits.isdigit()
    )


def media_type(name: str) -> str:
    return PLAYLIST_TYPE if name.endswith(".m3u8") else SEGMENT_TYPE


# -- playlists -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished segment of a room's recording, as its record in ``segments.jsonl`` keeps it."""

    seq: int
    duration: float  # seconds
    #: Wall-clock time of its first frame (epoch ms): the playlist's ``EXT-X-PROGRAM-DATE-TIME``, and how
    #: a moment of the show (a card opened) is found in the video.
    start_ms: int
    #: It does not continue the one before (a new ingest, a restarted encoder, a new picture size).
    discontinuity: bool = False
    width: int = 0
    height: int = 0
    bytes: int = 0

    @property
    def name(self) -> str:
        return segment_name(self.seq)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration * 1000)


def _date_time(epoch_ms: int) -> str:
    seconds, ms = divmod(epoch_ms, 1000)
    days, rest = divmod(seconds, 86400)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=days, seconds=rest)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def playlist(
    segments: Sequence[Segment],
    *,
    target_seconds: float,
    ended: bool,
    window: int | None = None,
) -> str:
    """An HLS media playlist (RFC 8216) of ``segments`` (in order): the last ``window`` of them for the
    live playlist, all of them (``None``) for the replay's. ``ended``: no segment will follow
    (``#EXT-X-ENDLIST``). Each segment carries its wall-clock start (``EXT-X-PROGRAM-DATE-TIME``), from
    which a player shows its delay; a discontinuity is marked, and counted for the ones that left the
    window (``EXT-X-DISCONTINUITY-SEQUENCE``)."""
    shown = list(segments[-window:]) if window is not None and segments else list(segments)
    left = len(segments) - len(shown)
    target = max([math.ceil(target_seconds)] + [round(s.duration) for s in shown])
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{target}"]
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{shown[0].seq if shown else 0}")
    gone = sum(1 for s in segments[:left] if s.discontinuity)
    if gone:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{gone}")
    if window is None:
        lines.append("#EXT-X-PLAYLIST-TYPE:" + ("VOD" if ended else "EVENT"))
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for n, segment in enumerate(shown):
        if segment.discontinuity and (n > 0 or left > 0):
            lines.append("#EXT-X-DISCONTINUITY")
        if n == 0 or segment.discontinuity:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(segment.start_ms)}")
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(segment.name)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# -- encoding ------------------------------------------------------------------------------------------


def should_cut(elapsed: float, *, frame_interval: float, target: float) -> bool:
    """Whether the next video frame, ``elapsed`` seconds after the current segment's first, starts a new
    segment (as a keyframe): so that the segment lasts at most ``target`` even when the frame after this
    one comes ``frame_interval`` later, and never less than half of it."""
    return elapsed >= target / 2 and elapsed + frame_interval > target


def picture_size(width: int, height: int, *, max_short_side: int) -> tuple[int, int]:
    """The encoded size of a ``width`` x ``height`` picture: scaled down (never up) so its shorter side is
    at most ``max_short_side``, aspect kept, both even (H.264 4:2:0 needs it: an odd side loses a pixel)."""
    short = min(width, height)
    scale = min(1.0, max_short_side / short) if short > 0 else 1.0
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class MediaClock:
    """The presentation time of an ingest's frames on one wall clock shared by its tracks.

    WebRTC stamps each track from its own random origin (RTP timestamps), so audio and video cannot be put
    side by side by their timestamps alone. The first frame of a track anchors it to the wall clock at its
    arrival; later frames keep their own spacing (smooth, whatever the network jitter), until they drift
    more than ``max_drift`` from the wall clock (a stall, a timestamp jump, a new source), when the track
    is anchored again. Times are seconds since the recording's ``epoch`` (a wall-clock instant)."""

    def __init__(self, epoch: float, *, max_drift: float = 1.0) -> None:
        self.epoch = epoch
        self.max_drift = max_drift
        self._anchors: dict[str, tuple[float, float]] = {}  # track -> (its timestamp, our time) at anchor
        self._last: dict[str, float] = {}

    def time_of(self, track: str, stamp: float, *, arrived: float) -> float:
        """Our time of a frame of ``track`` stamped ``stamp`` (its own seconds) that arrived at wall clock
        ``arrived``; never before the track's previous frame."""
        now = arrived - self.epoch
        anchor = self._anchors.get(track)
        at = now if anchor is None else anchor[1] + (stamp - anchor[0])
        if anchor is None or abs(at - now) > self.max_drift:
            self._anchors[track] = (stamp, now)
            at = now
        previous = self._last.get(track)
        if previous is not None and at <= previous:
            at = previous + 1e-3
        self._last[track] = at
        return at
