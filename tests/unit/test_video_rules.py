"""The video edge's pure decisions (live/video_rules.py), its settings, and the thumbnail encoder."""

from __future__ import annotations

import io
from typing import Any

import av
import pytest
from pydantic import ValidationError

from base.settings import IceServer, Settings
from live.errors import InvalidSdp, ViewerCap
from live.thumbnail import jpeg
from live.video import Video
from live.video_rules import (
    Redirect,
    Serve,
    check_offer,
    ice_link_header,
    is_sdp,
    route_whep,
    route_whip,
    sessions_to_replace,
)
from livecart.edge import status_of

EXTERNAL = "https://sfu.example.com/{room}/{kind}"


def whep(
    viewers: int, *, max_viewers: int = 2, external: str | None = EXTERNAL, mode: str = "overflow"
) -> Any:
    return route_whep(
        room_id="rm_1", viewers=viewers, max_viewers=max_viewers, external_url=external, mode=mode
    )


@pytest.mark.parametrize(
    ("theirs", "max_per_viewer", "replaced"),
    [
        ([], 1, []),
        (["w1"], 1, ["w1"]),
        (["w1", "w2", "w3"], 1, ["w1", "w2", "w3"]),  # more than allowed (the cap was lowered): all go
        (["w1"], 2, []),
        (["w1", "w2"], 2, ["w1"]),  # the oldest
        (["w1", "w2", "w3"], 2, ["w1", "w2"]),
    ],
)
def test_a_new_offer_replaces_the_viewers_oldest_sessions_past_their_cap(
    theirs: list[str], max_per_viewer: int, replaced: list[str]
) -> None:
    assert sessions_to_replace(theirs, max_per_viewer=max_per_viewer) == replaced


def test_whep_is_served_here_up_to_the_cap_then_redirected() -> None:
    assert whep(0) == Serve()
    assert whep(1) == Serve()
    assert whep(2) == Redirect("https://sfu.example.com/rm_1/whep")
    assert whep(0, max_viewers=0) == Redirect("https://sfu.example.com/rm_1/whep")


def test_whep_past_the_cap_without_an_external_engine_is_refused() -> None:
    assert whep(1, external=None) == Serve()
    with pytest.raises(ViewerCap) as caught:
        whep(2, external=None)
    assert status_of(type(caught.value)) == 409 and caught.value.extra == {"max_viewers": 2}


def test_mode_always_sends_both_whip_and_whep_away() -> None:
    assert whep(0, mode="always") == Redirect("https://sfu.example.com/rm_1/whep")
    assert route_whip(room_id="rm_1", external_url=EXTERNAL, mode="always") == Redirect(
        "https://sfu.example.com/rm_1/whip"
    )
    assert route_whip(room_id="rm_1", external_url=EXTERNAL, mode="overflow") == Serve()
    assert route_whip(room_id="rm_1", external_url=None, mode="overflow") == Serve()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/sdp", True),
        ("Application/SDP; charset=utf-8", True),
        ("application/json", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_content_type(header: str | None, expected: bool) -> None:
    assert is_sdp(header) is expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \r\n",
        b"\xff\xfe",
        b"hello",
        b"v=1\r\nm=video 9 X 96\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\x00\r\nm=a\r\n",
    ],
)
def test_offers_that_are_not_sdp_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidSdp):
        check_offer(body)


def test_an_offer_with_bare_newlines_gets_crlf() -> None:
    assert (
        check_offer(b"v=0\ns=-\nm=video 9 UDP/TLS/RTP/SAVPF 96\n")
        == "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    )
    crlf = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    assert check_offer(crlf.encode()) == crlf


def test_ice_servers_are_advertised_in_link_headers() -> None:
    assert ice_link_header([]) is None
    servers = [
        IceServer(urls="stun:stun.example.net"),
        IceServer(urls=["turn:turn.example.net?transport=udp"], username="u", credential='p"w'),
    ]
    assert ice_link_header(servers) == (
        '<stun:stun.example.net>; rel="ice-server", '
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p\\"w"; '
        'credential-type="password"'
    )


def test_no_ice_server_is_configured_unless_set() -> None:
    # aiortc treats ``iceServers=None`` as "use Google's public STUN server": the list must be explicit.
    assert Video().configuration().iceServers == []
    configured = Video(ice_servers=[IceServer(urls="turn:t.example.net", username="u", credential="c")])
    [server] = configured.configuration().iceServers or []
    assert (server.urls, server.username, server.credential) == ("turn:t.example.net", "u", "c")


def test_settings_parse_ice_servers_and_check_the_external_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECART_ICE_SERVERS", '[{"urls": ["stun:s.example.net"]}]')
    monkeypatch.setenv("LIVECART_WHEP_MAX_VIEWERS", "4")
    settings = Settings()
    assert settings.ice_servers == [IceServer(urls=["stun:s.example.net"])]
    assert settings.whep_max_viewers == 4
    assert Settings(video_external_url="https://e.example/{room}/whep").video_external_url
    for bad in [
        "ftp://e.example/{room}",
        "https://e.example/whep",
        "https://e.example/{room}/{token}",
        "https://{",
    ]:
        with pytest.raises(ValidationError):
            Settings(video_external_url=bad)
    with pytest.raises(ValidationError):
        Settings(video_external_mode="always")


def test_thumbnail_is_a_small_jpeg_keeping_the_aspect_ratio() -> None:
    frame = av.VideoFrame(640, 360, "yuv420p")
    for plane in frame.planes:
        plane.update(b"\x80" * plane.buffer_size)
    image = jpeg(frame)
    assert image.startswith(b"\xff\xd8") and image.endswith(b"\xff\xd9")
    assert size(image) == (320, 180)
    small = av.VideoFrame(160, 120, "yuv420p")
    for plane in small.planes:
        plane.update(b"\x10" * plane.buffer_size)
    assert size(jpeg(small)) == (160, 120)  # never enlarged


def size(image: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(image), "r") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height
