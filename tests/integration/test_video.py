"""WHIP ingest and WHEP playback against the real app, with aiortc clients: a host publishes a synthetic
320x240 @ 15 fps pattern (and silence), viewers receive decoded frames.

SQLite only: the video edge reads one room row; which SQL backend holds it is irrelevant here, and every
media session costs seconds of the machine's CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from live.video import Video
from loadtests import harness
from loadtests.harness import join, new_host
from loadtests.harness.video import PacedVideo
from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

SDP = {"Content-Type": "application/sdp"}
EXTERNAL = "https://sfu.example.com/{room}/{kind}"
WAIT = 15.0  # seconds; generous for a shared 2-core machine, never reached when things work


class Pattern(PacedVideo):
    """A bright bar moving across a grey frame, paced at ``fps``."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__(width, height, fps)

    def luma(self, count: int) -> bytes:
        bar = (count * 8) % self.width
        row = bytearray(b"\x50" * self.width)
        row[bar : bar + 32] = b"\xeb" * len(row[bar : bar + 32])
        return bytes(row) * self.height


@dataclass
class Room:
    id: str
    host_token: str
    viewer_token: str
    invite: str = ""


@dataclass
class Peer:
    pc: RTCPeerConnection
    response: httpx.Response
    tracks: dict[str, MediaStreamTrack]

    @property
    def location(self) -> str:
        return self.response.headers["location"]


def peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))  # None would mean a public STUN server


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(settings(redis_url, tmp_path)) as live:
        yield live


def settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'livecart.db'}", redis_url, tmp_path, **overrides)


@pytest.fixture
async def peers() -> AsyncIterator[list[RTCPeerConnection]]:
    """Every client peer a test opens; all are closed at its end, whatever happened."""
    opened: list[RTCPeerConnection] = []
    yield opened
    await asyncio.gather(*(pc.close() for pc in opened))


async def new_room(client: httpx.AsyncClient, title: str = "Show") -> Room:
    """A host's room, not live yet, and one viewer of it."""
    host_token = await new_host(client)
    room = await harness.new_room(client, host_token, title, live=False)
    viewer = await join(client, room["id"], room["invite_token"], "V")
    return Room(room["id"], host_token, viewer.token, room["invite_token"])


async def another_viewer(client: httpx.AsyncClient, room: Room, name: str = "W") -> str:
    """A new viewer of the room (another customer); their token."""
    return (await join(client, room.id, room.invite, name)).token


async def publish(
    client: httpx.AsyncClient, peers: list[RTCPeerConnection], room: Room, *, h264_only: bool = False
) -> Peer:
    pc = peer()
    peers.append(pc)
    video = pc.addTransceiver(Pattern(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    if h264_only:
        # What OBS 30+ offers: H.264 constrained baseline (42e01f), packetization-mode 1.
        codecs = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences(
            [c for c in codecs if c.mimeType == "video/H264" and c.parameters["profile-level-id"] == "42e01f"]
        )
    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(
        f"/api/rooms/{room.id}/whip",
        content=pc.localDescription.sdp,
        headers={**auth(room.host_token), **SDP},
    )
    assert response.status_code == 201, response.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return Peer(pc, response, {})


async def offer_to_watch(
    peers: list[RTCPeerConnection],
) -> tuple[RTCPeerConnection, dict[str, MediaStreamTrack]]:
    pc = peer()
    peers.append(pc)
    tracks: dict[str, MediaStreamTrack] = {}
    pc.on("track", lambda track: tracks.setdefault(track.kind, track))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, tracks


async def watch(
    client: httpx.AsyncClient, peers: list[RTCPeerConnection], room: Room, token: str | None = None
) -> Peer:
    pc, tracks = await offer_to_watch(peers)
    response = await client.post(
        f"/api/rooms/{room.id}/whep",
        content=pc.localDescription.sdp,
        headers={**auth(token or room.viewer_token), **SDP},
    )
    if response.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return Peer(pc, response, tracks)


async def frames(track: MediaStreamTrack, count: int) -> list[av.VideoFrame]:
    got = []
    for _ in range(count):
        frame = await asyncio.wait_for(track.recv(), WAIT)
        assert isinstance(frame, av.VideoFrame)
        got.append(frame)
    return got


async def ends(track: MediaStreamTrack) -> None:
    """The track ends (``MediaStreamError``) within the wait, after whatever frames were in flight."""
    with pytest.raises(MediaStreamError):
        async with asyncio.timeout(WAIT):
            while True:
                await track.recv()


async def sessions(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    found = {}
    for line in text.splitlines():
        if line.startswith("livecart_video_sessions{"):
            name, value = line.rsplit(" ", 1)
            found[name.split('"')[1]] = float(value)
    return found


async def thumbnail(client: httpx.AsyncClient, room: Room, token: str) -> bytes:
    async with asyncio.timeout(WAIT):
        while True:
            r = await client.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(token))
            if r.status_code == 200:
                assert r.headers["content-type"] == "image/jpeg"
                return r.content
            assert r.status_code == 404, r.text
            await asyncio.sleep(0.2)


async def test_publish_watch_thumbnail_and_delete(client: httpx.AsyncClient, peers: list[Any]) -> None:
    room = await new_room(client)
    assert (
        await client.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(room.host_token))
    ).status_code == 404

    host = await publish(client, peers, room)
    assert host.response.headers["content-type"] == "application/sdp"
    assert host.location.startswith(f"/api/rooms/{room.id}/whip/")
    assert "a=recvonly" in host.response.text and "a=candidate:" in host.response.text  # non-trickle

    viewer = await watch(client, peers, room)
    assert viewer.response.status_code == 201, viewer.response.text
    assert viewer.location.startswith(f"/api/rooms/{room.id}/whep/")
    got = await frames(viewer.tracks["video"], 5)
    assert (got[0].width, got[0].height) == (320, 240)
    assert max(bytes(got[-1].planes[0])) > 200  # the publisher's bright bar, through decode and re-encode
    assert await sessions(client) == {"whip": 1, "whep": 1}

    jpeg = await thumbnail(client, room, room.viewer_token)
    assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9") and len(jpeg) < 50_000

    # Someone else's session cannot be stopped; the host's DELETE ends the ingest and its viewers.
    other = await new_room(client, "Other")
    assert (await client.delete(host.location, headers=auth(other.host_token))).status_code == 403
    assert (await client.delete(host.location, headers=auth(room.viewer_token))).status_code == 403
    assert (await client.delete(host.location, headers=auth(room.host_token))).status_code == 204
    await ends(viewer.tracks["video"])
    assert await sessions(client) == {"whip": 0, "whep": 0}
    assert (await client.delete(host.location, headers=auth(room.host_token))).status_code == 404
    assert (await client.delete(viewer.location, headers=auth(room.viewer_token))).status_code == 404
    no_ingest = await watch(client, peers, room)
    assert no_ingest.response.status_code == 409
    assert no_ingest.response.json()["error"] == "not_live"


async def test_h264_only_offer_as_obs_sends_it(client: httpx.AsyncClient, peers: list[Any]) -> None:
    room = await new_room(client)
    host = await publish(client, peers, room, h264_only=True)
    video_section = host.response.text.split("m=video", 1)[1].split("m=audio", 1)[0]
    assert "H264/90000" in video_section and "packetization-mode=1" in video_section
    assert "VP8" not in video_section

    viewer = await watch(client, peers, room, token=room.host_token)  # the host may watch too
    assert viewer.response.status_code == 201, viewer.response.text
    await frames(viewer.tracks["video"], 3)
    # The viewer stops watching; the ingest goes on.
    assert (await client.delete(viewer.location, headers=auth(room.host_token))).status_code == 204
    assert await sessions(client) == {"whip": 1, "whep": 0}
    # A viewer that just goes away (closes its peer, no DELETE) is cleaned up when its connection closes.
    gone = await watch(client, peers, room)
    await frames(gone.tracks["video"], 1)
    await gone.pc.close()
    async with asyncio.timeout(WAIT):
        while (await sessions(client))["whep"]:
            await asyncio.sleep(0.1)
    assert (await client.delete(gone.location, headers=auth(room.viewer_token))).status_code == 404


async def test_bad_requests_get_clear_errors_and_leave_nothing(
    client: httpx.AsyncClient, server: LiveServer, peers: list[Any]
) -> None:
    room, other = await new_room(client), await new_room(client, "Other")
    pc, _ = await offer_to_watch(peers)
    offer = pc.localDescription.sdp
    whip, whep = f"/api/rooms/{room.id}/whip", f"/api/rooms/{room.id}/whep"

    async def post(url: str, token: str | None, body: str | bytes = offer, **headers: str) -> httpx.Response:
        sent = {**SDP, **(auth(token) if token else {}), **headers}
        return await client.post(url, content=body, headers=sent)

    cases: list[tuple[httpx.Response, int, str]] = [
        (await post(whip, None), 401, "unauthorized"),
        (await post(whip, room.host_token + "x"), 401, "unauthorized"),
        (await post(whep, "h.forged.token"), 401, "unauthorized"),
        (await post(whip, room.viewer_token), 403, "forbidden"),
        (await post(whip, other.host_token), 403, "forbidden"),
        (await post(whep, other.viewer_token), 403, "forbidden"),
        (await post("/api/rooms/rm_nope/whip", room.host_token), 404, "not_found"),
        (
            await post(whip, room.host_token, **{"Content-Type": "application/json"}),
            415,
            "unsupported_media_type",
        ),
        (await post(whip, room.host_token, **{"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
        (await post(whip, room.host_token, b""), 400, "invalid_sdp"),
        (await post(whip, room.host_token, b"\xff\xfe garbage"), 400, "invalid_sdp"),
        (await post(whip, room.host_token, "hello, I am not SDP"), 400, "invalid_sdp"),
        (await post(whip, room.host_token, "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"), 400, "invalid_sdp"),
        # A well-formed offer that sends nothing cannot be an ingest.
        (await post(whip, room.host_token), 400, "invalid_sdp"),
        (await post(whip, room.host_token, "v=0\r\n" + "a=x\r\n" * 20_000), 413, "payload_too_large"),
        (await post(whep, room.viewer_token), 409, "not_live"),
        (await client.delete(f"{whip}/whip_nope", headers=auth(room.host_token)), 404, "unknown_session"),
        (await client.delete(f"{whep}/whep_nope", headers=auth(room.viewer_token)), 404, "unknown_session"),
        (
            await client.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(other.viewer_token)),
            403,
            "forbidden",
        ),
    ]
    for response, status, code in cases:
        request = response.request
        assert (response.status_code, response.json()["error"]) == (status, code), (
            f"{request.method} {request.url} {request.headers.get('content-type')}: {response.text}"
        )
    assert cases[0][0].headers["www-authenticate"] == "Bearer"
    assert "sendonly" in cases[13][0].json()["detail"]
    assert await sessions(client) == {"whip": 0, "whep": 0}
    assert not server.state.video.is_live(room.id)
    assert (await client.get("/healthz")).status_code == 200


async def test_viewer_cap_redirects_to_the_external_engine(
    redis_url: str, tmp_path: Path, peers: list[Any]
) -> None:
    async with (
        LiveServer(settings(redis_url, tmp_path, whep_max_viewers=1, video_external_url=EXTERNAL)) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30) as c,
    ):
        room = await new_room(c)
        await publish(c, peers, room)
        first = await watch(c, peers, room)
        assert first.response.status_code == 201, first.response.text
        second = await watch(c, peers, room, await another_viewer(c, room))
        assert second.response.status_code == 307
        assert second.location == f"https://sfu.example.com/{room.id}/whep"
        assert await sessions(c) == {"whip": 1, "whep": 1}


async def test_external_mode_always_redirects_whip_and_whep(
    redis_url: str, tmp_path: Path, peers: list[Any]
) -> None:
    overrides = {"video_external_url": EXTERNAL, "video_external_mode": "always"}
    async with (
        LiveServer(settings(redis_url, tmp_path, **overrides)) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30) as c,
    ):
        room = await new_room(c)
        pc, _ = await offer_to_watch(peers)
        body = pc.localDescription.sdp
        r = await c.post(f"/api/rooms/{room.id}/whip", content=body, headers={**auth(room.host_token), **SDP})
        assert (r.status_code, r.headers["location"]) == (307, f"https://sfu.example.com/{room.id}/whip")
        r = await c.post(
            f"/api/rooms/{room.id}/whep", content=body, headers={**auth(room.viewer_token), **SDP}
        )
        assert (r.status_code, r.headers["location"]) == (307, f"https://sfu.example.com/{room.id}/whep")
        # Access is still checked before anyone is pointed anywhere.
        r = await c.post(f"/api/rooms/{room.id}/whep", content=body, headers={**auth("v.forged"), **SDP})
        assert r.status_code == 401


async def test_republish_replaces_and_ending_the_room_closes_everything(
    client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    first = await publish(client, peers, room)
    second = await publish(client, peers, room)  # OBS reconnecting: the new publish wins
    assert second.location != first.location
    assert (await client.delete(first.location, headers=auth(room.host_token))).status_code == 404
    viewer = await watch(client, peers, room)
    assert viewer.response.status_code == 201, viewer.response.text
    await frames(viewer.tracks["video"], 2)
    assert await sessions(client) == {"whip": 1, "whep": 1}

    await ok(await client.post(f"/api/rooms/{room.id}/end", headers=auth(room.host_token)))
    await ends(viewer.tracks["video"])
    assert await sessions(client) == {"whip": 0, "whep": 0}
    r = await client.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(room.host_token))
    assert r.status_code == 404
    pc, _ = await offer_to_watch(peers)
    r = await client.post(
        f"/api/rooms/{room.id}/whip",
        content=pc.localDescription.sdp,
        headers={**auth(room.host_token), **SDP},
    )
    assert (r.status_code, r.json()["error"]) == (409, "room_ended")


async def test_shutdown_closes_every_peer(redis_url: str, tmp_path: Path, peers: list[Any]) -> None:
    async with (
        LiveServer(settings(redis_url, tmp_path)) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30) as c,
    ):
        room = await new_room(c)
        await publish(c, peers, room)
        viewer = await watch(c, peers, room)
        await frames(viewer.tracks["video"], 1)
    await ends(viewer.tracks["video"])
    assert not app.state.video.is_live(room.id)


async def test_a_peer_that_never_connects_is_dropped(peers: list[Any]) -> None:
    """The adapter alone: an offer is answered, but the publisher never applies the answer."""
    video = Video(connect_timeout=0.5)
    pc = peer()
    peers.append(pc)
    pc.addTransceiver(Pattern(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await video.publish("rm_1", host_id="hst_1", offer=pc.localDescription.sdp)
    assert video.is_live("rm_1")
    async with asyncio.timeout(WAIT):
        while video.is_live("rm_1"):
            await asyncio.sleep(0.1)
    await video.close()


async def test_one_viewer_holds_one_whep_session_whatever_they_offer(
    redis_url: str, tmp_path: Path, peers: list[Any]
) -> None:
    """A viewer's new offer replaces their session (the old peer is closed): offering again and again, one
    viewer cannot take the room's slots, and another viewer still gets one."""
    async with (
        LiveServer(settings(redis_url, tmp_path, whep_max_viewers=2)) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30) as c,
    ):
        room = await new_room(c)
        await publish(c, peers, room)
        first = await watch(c, peers, room)
        assert first.response.status_code == 201, first.response.text
        await frames(first.tracks["video"], 1)
        again = []
        for _ in range(3):  # the room has 2 slots: without the per-viewer cap the third would be refused
            later = await watch(c, peers, room)
            assert later.response.status_code == 201, later.response.text
            again.append(later)
            assert app.state.video.viewers(room.id) == 1
        await ends(first.tracks["video"])  # replaced: its peer was closed by the server
        assert (await c.delete(first.location, headers=auth(room.viewer_token))).status_code == 404
        await frames(again[-1].tracks["video"], 2)  # the newest one plays
        other = await watch(c, peers, room, await another_viewer(c, room))
        assert other.response.status_code == 201, other.response.text
        await frames(other.tracks["video"], 1)
        assert await sessions(c) == {"whip": 1, "whep": 2}
        # The room is full now; the first viewer's new offer still gets their own slot back.
        third = await watch(c, peers, room, await another_viewer(c, room, "X"))
        assert (third.response.status_code, third.response.json()["error"]) == (409, "viewer_cap")
        back = await watch(c, peers, room)
        assert back.response.status_code == 201, back.response.text
        assert await sessions(c) == {"whip": 1, "whep": 2}


async def test_an_offer_whose_client_never_connects_frees_its_slot(
    redis_url: str, tmp_path: Path, peers: list[Any]
) -> None:
    """The offer is answered but the client never completes ICE: the session is closed within
    ``whep_unanswered_seconds`` and its slot of the room's cap goes to the next viewer."""
    overrides = {"whep_max_viewers": 1, "whep_unanswered_seconds": 1.0}
    async with (
        LiveServer(settings(redis_url, tmp_path, **overrides)) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30) as c,
    ):
        room = await new_room(c)
        await publish(c, peers, room)
        pc, _ = await offer_to_watch(peers)  # the answer is never applied: no ICE, ever
        r = await c.post(
            f"/api/rooms/{room.id}/whep",
            content=pc.localDescription.sdp,
            headers={**auth(room.viewer_token), **SDP},
        )
        assert r.status_code == 201, r.text
        answered = asyncio.get_running_loop().time()
        other = await another_viewer(c, room)
        refused = await watch(c, peers, room, other)
        assert (refused.response.status_code, refused.response.json()["error"]) == (409, "viewer_cap")
        async with asyncio.timeout(WAIT):
            while app.state.video.viewers(room.id):
                await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() - answered <= 1.0 + 1.0
        admitted = await watch(c, peers, room, other)
        assert admitted.response.status_code == 201, admitted.response.text
        await frames(admitted.tracks["video"], 1)
