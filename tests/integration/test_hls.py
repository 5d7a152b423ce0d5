"""HLS for the whole audience (SPEC section 11) against the real app: an aiortc WHIP publisher feeds a room,
the app encodes it once into HLS (its encoder process), and plain HTTP clients play it with the signed URL
of ``GET /api/rooms/{room}/video``, as hls.js or a CDN would.

SQLite only, as tests/integration/test_video.py: the video edge reads one room row; every media session
costs seconds of the machine's CPU.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from live.hls_rules import sign_grant
from loadtests.harness import new_card
from loadtests.harness.video import ClockPattern, read_clock
from tests.conftest import LiveServer
from tests.integration.test_video import Room, frames, new_room, publish, settings, watch
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

WAIT = 20.0  # seconds; generous for a shared 2-core machine, never reached when things work
KEY = "test-secret-key"  # make_settings's


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(settings(redis_url, tmp_path)) as live:
        yield live


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
        yield c


@pytest.fixture
async def peers() -> AsyncIterator[list[RTCPeerConnection]]:
    opened: list[RTCPeerConnection] = []
    yield opened
    await asyncio.gather(*(pc.close() for pc in opened))


async def hls_url(client: httpx.AsyncClient, room: Room) -> str:
    r = await client.get(f"/api/rooms/{room.id}/video", headers=auth(room.viewer_token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hls"].startswith(f"/api/rooms/{room.id}/hls/") and body["hls"].endswith("/live.m3u8")
    return str(body["hls"])


def segments_of(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def playlist_with(
    client: httpx.AsyncClient, url: str, *, more_than: int = 0, ended: bool = False
) -> str:
    """The playlist once it lists more than ``more_than`` segments (and ends, when ``ended``)."""
    async with asyncio.timeout(WAIT):
        while True:
            r = await client.get(url)
            if r.status_code == 200:
                text = r.text
                last = segments_of(text)
                if last and int(last[-1][4:10]) > more_than and (not ended or "#EXT-X-ENDLIST" in text):
                    return text
            else:
                assert r.status_code == 404, r.text
            await asyncio.sleep(0.25)


def decode(segment: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        return list(container.decode(video=0))


def encoder_pids(room_id: str) -> list[int]:
    """The HLS encoder processes of the room (children of this test process: the app runs in it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"live.hls_worker" in cmdline and any(room_id.encode() in part for part in cmdline):
                found.append(int(entry))
    return found


async def test_one_encoder_writes_hls_that_decodes_and_ends_with_the_show(
    client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    began = time.monotonic()
    await publish_clock(client, peers, room)  # frames that carry their capture time
    url = await hls_url(client, room)
    text = await playlist_with(client, url)
    assert time.monotonic() - began < 10.0
    assert text.startswith("#EXTM3U") and "#EXT-X-PROGRAM-DATE-TIME:" in text

    r = await client.get(url)
    assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert r.headers["cache-control"] == "public, max-age=1"
    name = segments_of(r.text)[-1]
    segment = await client.get(url.rsplit("/", 1)[0] + "/" + name)
    assert segment.status_code == 200
    assert segment.headers["content-type"] == "video/mp2t"
    assert segment.headers["cache-control"] == "public, max-age=31536000, immutable"
    frames = decode(segment.content)
    assert frames and all((f.width, f.height) == (640, 360) for f in frames)
    assert frames[0].key_frame
    # The picture is the camera's: each frame's barcode reads a capture time, in order, from the last
    # seconds (decoded through VP8 and H.264 both).
    stamps = [read_clock(f) for f in frames]
    assert None not in stamps and stamps == sorted(stamps)
    assert 0 < time.time() * 1000 - stamps[-1] < 10_000
    assert len(encoder_pids(room.id)) == 1

    # The show ends: the playlist is finished within 10 s and kept.
    r = await client.post(f"/api/rooms/{room.id}/end", headers=auth(room.host_token))
    assert r.status_code == 200, r.text
    began = time.monotonic()
    final = await playlist_with(client, url, ended=True)
    assert time.monotonic() - began < 10.0
    r = await client.get(url)
    assert r.headers["cache-control"] == "public, max-age=60"
    full = await client.get(url.replace("/live.m3u8", "/full.m3u8"))
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in full.text and "#EXT-X-ENDLIST" in full.text
    assert set(segments_of(final)) <= set(segments_of(full.text))
    async with asyncio.timeout(WAIT):
        while encoder_pids(room.id):
            await asyncio.sleep(0.1)


async def test_grants_are_checked_and_200_players_get_the_latest_segment(
    server: LiveServer, client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    other = await new_room(client, "Other show")
    await publish(client, peers, room)
    url = await hls_url(client, room)
    text = await playlist_with(client, url, more_than=1)
    base = url.rsplit("/", 2)[0]  # /api/rooms/{room}/hls
    grant = url.rsplit("/", 2)[1]
    name = segments_of(text)[-1]

    # No credential but the grant: anyone with the URL plays (a CDN caches it for everyone).
    assert (await client.get(f"{base}/{grant}/{name}")).status_code == 200
    expires, signature = grant.split(".")
    forged = f"{expires}.{'A' * len(signature)}"
    later = f"{int(expires) + 600}.{signature}"  # a longer life under the same signature
    past = int(time.time()) - 1
    expired = sign_grant(KEY, room.id, past)
    foreign = (await hls_url(client, other)).rsplit("/", 2)[1]  # another room's genuine grant
    wrong_key = sign_grant("another-deployment-key", room.id, int(expires))
    for bad, code in [
        (forged, "forbidden"),
        (later, "forbidden"),
        (expired, "hls_expired"),
        (foreign, "forbidden"),
        (wrong_key, "forbidden"),
        ("nonsense", "forbidden"),
        (f"{expires}.", "forbidden"),
    ]:
        for target in ("live.m3u8", "full.m3u8", name):
            r = await client.get(f"{base}/{bad}/{target}")
            assert r.status_code == 403, (bad, target, r.text)
            assert r.json()["error"] == code
    # Only playlists and segment names are served from the room's directory.
    for target in ("segments.jsonl", "ended", ".live.m3u8.tmp", "seg-1.ts", "seg-000001.ts.part", "..%2Fx"):
        assert (await client.get(f"{base}/{grant}/{target}")).status_code == 404, target
    assert (await client.get(f"{base}/{grant}/seg-999999.ts")).status_code == 404

    # A range, as players and caches ask for.
    whole = (await client.get(f"{base}/{grant}/{name}")).content
    part = await client.get(f"{base}/{grant}/{name}", headers={"Range": "bytes=188-375"})
    assert part.status_code == 206 and part.content == whole[188:376]
    assert part.headers["content-range"] == f"bytes 188-375/{len(whole)}"

    # 200 concurrent players each read the playlist and fetch its newest segment: all get it, whole.
    async def player() -> tuple[str, bytes]:
        listed = segments_of((await client.get(url)).text)[-1]
        r = await client.get(f"{base}/{grant}/{listed}")
        assert r.status_code == 200, r.text
        return listed, r.content

    got = await asyncio.gather(*(player() for _ in range(200)))
    newest = max(n for n, _ in got)
    assert int(newest[4:10]) >= int(name[4:10])
    folder = server.settings.data_dir / "hls" / room.id
    on_disk = {n: (folder / n).read_bytes() for n, _ in got}
    assert all(content == on_disk[n] for n, content in got)
    assert all(decode(content) for content in {c for _, c in got})


async def status(client: httpx.AsyncClient, room: Room) -> dict[str, Any]:
    r = await client.get(f"/api/rooms/{room.id}/hls", headers=auth(room.host_token))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "private, no-store"
    return dict(r.json())


async def test_a_crashed_encoder_is_restarted_and_the_recording_goes_on(
    client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    assert (await status(client, room))["state"] == "waiting"
    await publish(client, peers, room)
    url = await hls_url(client, room)
    text = await playlist_with(client, url, more_than=1)
    before = int(segments_of(text)[-1][4:10])
    found = await status(client, room)
    assert found["state"] == "encoding" and found["restarts"] == 0 and found["segments"] >= 2
    assert (found["width"], found["height"]) == (320, 240) and found["bytes"] > 0
    [pid] = encoder_pids(room.id)

    os.kill(pid, signal.SIGKILL)
    after = await playlist_with(client, url, more_than=before + 1)
    [new_pid] = encoder_pids(room.id)
    assert new_pid != pid
    assert (await status(client, room))["restarts"] == 1
    # The restarted encoder's first segment is marked as a discontinuity; every listed segment decodes.
    full = (await client.get(url.replace("/live.m3u8", "/full.m3u8"))).text
    assert "#EXT-X-DISCONTINUITY" in full
    base = url.rsplit("/", 1)[0]
    for name in segments_of(after)[-2:]:
        assert decode((await client.get(f"{base}/{name}")).content)
    listed = segments_of(full)
    assert listed == sorted(set(listed))  # in order, none twice


async def test_who_sees_the_encoder_state(client: httpx.AsyncClient, peers: list[Any]) -> None:
    room = await new_room(client)
    other = await new_room(client, "Someone else's show")
    path = f"/api/rooms/{room.id}/hls"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=auth(room.viewer_token))).status_code == 403
    assert (await client.get(path, headers=auth(other.host_token))).status_code == 403
    assert (await client.get(path, headers=auth(other.viewer_token))).status_code == 403
    assert (await client.get("/api/rooms/room_nope/hls", headers=auth(room.host_token))).status_code == 404
    assert (await client.get(path, headers=auth(room.host_token))).status_code == 200
    # /video signs the playlist for the room's host and viewers only.
    video = f"/api/rooms/{room.id}/video"
    assert (await client.get(video)).status_code == 401
    assert (await client.get(video, headers=auth(other.viewer_token))).status_code in (403, 404)
    host_url = (await client.get(video, headers=auth(room.host_token))).json()["hls"]
    assert host_url == await hls_url(client, room)  # one URL for everyone in the bucket: one CDN entry


async def test_hls_requests_are_rate_limited_per_address(redis_url: str, tmp_path: Path) -> None:
    limited = settings(redis_url, tmp_path, limits_scale=1, limit_hls_per_ip="5/minute")
    async with LiveServer(limited) as live, httpx.AsyncClient(base_url=live.url) as client:
        room = await new_room(client)
        url = await hls_url(client, room)
        answers = [(await client.get(url)).status_code for _ in range(7)]
        assert answers == [404] * 5 + [429] * 2  # counted before anything else, a forged grant too
        r = await client.get(url.replace(url.rsplit("/", 2)[1], "1.AAAA"))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


async def test_with_hls_off_video_has_no_playlist_and_nothing_is_encoded(
    redis_url: str, tmp_path: Path, peers: list[Any]
) -> None:
    off = settings(redis_url, tmp_path, hls_enabled=False)
    async with LiveServer(off) as live, httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        room = await new_room(client)
        await publish(client, peers, room)
        body = (await client.get(f"/api/rooms/{room.id}/video", headers=auth(room.viewer_token))).json()
        assert "hls" not in body and body["ice_servers"] == []
        assert (await status(client, room))["state"] == "off"
        await asyncio.sleep(3)
        assert encoder_pids(room.id) == []
        assert not (live.settings.data_dir / "hls" / room.id).exists()


async def publish_clock(client: httpx.AsyncClient, peers: list[Any], room: Room) -> ClockPattern:
    """The host publishes frames that carry their capture time (and silence)."""
    camera = ClockPattern(640, 360, 15)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peers.append(pc)
    pc.addTransceiver(camera, direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    r = await client.post(
        f"/api/rooms/{room.id}/whip",
        content=pc.localDescription.sdp,
        headers={**auth(room.host_token), "Content-Type": "application/sdp"},
    )
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return camera


def frame_at(playlist: str, segments: dict[str, bytes], t: float) -> av.VideoFrame:
    """The frame of the replay shown ``t`` seconds in: found through the playlist's durations."""
    elapsed = 0.0
    lines = playlist.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].rstrip(","))
            name = lines[n + 1]
            if t < elapsed + duration or n + 2 >= len(lines) - 1:
                frames = decode(segments[name])
                first = float(frames[0].time)
                return min(frames, key=lambda f: abs(float(f.time) - first - (t - elapsed)))
            elapsed += duration
    raise AssertionError(f"no segment at {t}")


async def test_the_replay_timeline_points_at_the_moments_in_the_video(
    client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    await publish_clock(client, peers, room)
    host = auth(room.host_token)
    url = await hls_url(client, room)
    await playlist_with(client, url, more_than=1)
    _, card_id = await new_card(client, room.host_token, room.id, stock=5, price=990, open_sale=False)
    card = {"id": card_id}
    await asyncio.sleep(2.5)
    await ok(await client.post(f"/api/cards/{card['id']}/open", json={}, headers=host))
    await asyncio.sleep(2.5)
    await ok(await client.patch(f"/api/cards/{card['id']}", json={"price": 800}, headers=host))
    await asyncio.sleep(2.5)
    await ok(await client.post(f"/api/rooms/{room.id}/end", headers=host))

    async with asyncio.timeout(WAIT):
        while True:
            replay = await ok(
                await client.get(f"/api/rooms/{room.id}/replay", headers=auth(room.viewer_token))
            )
            if replay["state"] == "ready":
                break
            await asyncio.sleep(0.2)
    events = [(m["event"], m["card_id"]) for m in replay["timeline"]]
    assert events[:3] == [("pinned", card["id"]), ("opened", card["id"]), ("price_cut", card["id"])]
    assert events[-1] == ("closed", card["id"])
    full = (await client.get(replay["hls"])).text
    assert "#EXT-X-ENDLIST" in full
    base = replay["hls"].rsplit("/", 1)[0]
    segments = {name: (await client.get(f"{base}/{name}")).content for name in segments_of(full)}
    # Each moment's offset shows the picture the camera took at that moment: its barcode reads the same
    # wall-clock time (within what capture, network and a frame of 15 fps take).
    for moment in replay["timeline"][:3]:
        at_ms = round(datetime.fromisoformat(moment["at"]).timestamp() * 1000)
        shown = read_clock(frame_at(full, segments, moment["t"]))
        assert shown is not None, moment
        assert -300 <= at_ms - shown <= 700, (moment, shown, at_ms)
    assert replay["timeline"][1]["t"] - replay["timeline"][0]["t"] == pytest.approx(2.5, abs=0.6)


async def test_a_stuck_encoder_drops_frames_and_never_holds_the_ingest(
    client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    await publish(client, peers, room)
    url = await hls_url(client, room)
    text = await playlist_with(client, url, more_than=1)
    [pid] = encoder_pids(room.id)
    viewer = await watch(client, peers, room)
    assert viewer.response.status_code == 201, viewer.response.text
    os.kill(pid, signal.SIGSTOP)  # the encoder stops reading: its pipe fills, then its queue
    try:
        await asyncio.sleep(2.0)
        # The ingest goes on: the WHEP viewer keeps getting frames, the thumbnail keeps coming.
        got = await frames(viewer.tracks["video"], 15)
        assert len(got) == 15
        found = await status(client, room)
        assert found["dropped_frames"] > 0 and found["state"] == "encoding"
    finally:
        os.kill(pid, signal.SIGCONT)
    stuck_at = int(segments_of(text)[-1][4:10])
    after = await playlist_with(client, url, more_than=stuck_at + 2)
    assert encoder_pids(room.id) == [pid]  # the same encoder caught up: nothing crashed
    base = url.rsplit("/", 1)[0]
    assert decode((await client.get(f"{base}/{segments_of(after)[-1]}")).content)
