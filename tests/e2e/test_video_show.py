"""Video in real Chromium: the host goes on camera (Chromium's fake camera) from the console, which
publishes over WHIP; a viewer's page plays the show over WHEP and its <video> decodes frames; stopping the
camera DELETEs the WHIP session and the viewer falls back to waiting.

The server is configured with an ICE server (``LIVECART_ICE_SERVERS``): a STUN server of the test's own
on 127.0.0.1 that tells every client its address is ``MAPPED_IP``. Both pages must give it to their peer
connections (asked for with the token, ``GET /api/rooms/{room}/video``), the browser must really query it
(a server-reflexive candidate for ``MAPPED_IP`` in its offer), and the video must still flow. (A TURN
server is left out: Chromium's gathering waits out a TURN server that cannot allocate, so each offer would
take the pages' 5 s gathering cap; that the credentials reach the page exactly is checked over HTTP in
``tests/integration/test_video_config.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice import stun
from playwright.async_api import Browser, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import Problems, api, open_page, sign_in_on_page

pytestmark = pytest.mark.integration

#: What the test's STUN server says every client's address is (TEST-NET-3: documentation, never routed).
MAPPED_IP = "203.0.113.7"
#: Every RTCPeerConnection the page makes, kept for the test (an init script runs before the page's own).
RECORD_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__peers.push(this); }
  };
})()"""
ICE_OF_PEERS = "() => window.__peers.map((pc) => pc.getConfiguration().iceServers)"
OFFER_OF_LAST_PEER = "() => window.__peers[window.__peers.length - 1].localDescription.sdp"


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests (RFC 8489) with ``MAPPED_IP`` and the client's port; counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if (request.message_method, request.message_class) != (stun.Method.BINDING, stun.Class.REQUEST):
            return
        self.requests += 1
        response = stun.Message(
            stun.Method.BINDING,
            stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": (MAPPED_IP, addr[1])},
        )
        response.add_fingerprint()
        self.transport.sendto(bytes(response), addr)


@pytest.fixture
async def stun_server() -> AsyncIterator[tuple[StunServer, int]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        StunServer, local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@pytest.fixture
def ice_servers(stun_server: tuple[StunServer, int]) -> list[dict[str, Any]]:
    return [
        {"urls": [f"stun:127.0.0.1:{stun_server[1]}"]},
    ]


@pytest.fixture
def site_settings(ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ice_servers": ice_servers}


async def assert_peers_use(page: Page, ice_servers: list[dict[str, Any]]) -> None:
    configs = await page.evaluate(ICE_OF_PEERS)
    assert configs, "the page made no RTCPeerConnection"
    # Chromium reports a missing username or credential as "".
    expected = [{"username": "", "credential": "", **server} for server in ice_servers]
    for config in configs:
        assert config == expected
    offer = await page.evaluate(OFFER_OF_LAST_PEER)
    assert f" {MAPPED_IP} " in offer and "typ srflx" in offer, offer  # it asked the STUN server


DECODED = "() => { const v = document.querySelector('#video'); return v.readyState >= 2 && v.videoWidth > 0 }"
FRAMES = """() => new Promise((resolve) => {
  const video = document.querySelector('#video');
  let frames = 0;
  const step = () => (++frames >= 5 ? resolve(frames) : video.requestVideoFrameCallback(step));
  video.requestVideoFrameCallback(step);
})"""


async def test_host_camera_reaches_a_viewer(
    site: LiveServer,
    browser: Browser,
    problems: Problems,
    stun_server: tuple[StunServer, int],
    ice_servers: list[dict[str, Any]],
) -> None:
    async with api(site) as client:
        host_token = (await client.post("/api/hosts", json={"name": "Camera host"})).json()["token"]
        auth = {"Authorization": f"Bearer {host_token}"}
        room = (await client.post("/api/rooms", json={"title": "On camera"}, headers=auth)).json()

        _, host = await open_page(browser, problems, "host", permissions=["camera", "microphone"])
        await host.add_init_script(RECORD_PEERS)
        await host.goto(f"{site.url}/host#room={room['id']}")
        await host.fill("#signin-form textarea", host_token)
        await host.click("#signin-form button")
        await expect(host.locator("#room-title")).to_have_text("On camera")

        # The viewer comes first and waits: the page retries WHEP until the host is on camera.
        _, viewer = await open_page(browser, problems, "viewer", phone=True)
        await viewer.add_init_script(RECORD_PEERS)
        await viewer.goto(room["invite_url"])
        await sign_in_on_page(viewer, "13800138000", name="Early bird")
        await expect(viewer.locator("#video-status")).to_contain_text("Waiting for the host")

        await host.click("#camera-start")
        await expect(host.locator("#camera-status")).to_have_text("publishing: connected", timeout=20_000)
        await expect(host.locator("#room-status")).to_have_text("live")  # going on camera starts the show
        await expect(viewer.locator("#room-status")).to_have_text("LIVE")

        await viewer.wait_for_function(DECODED, timeout=30_000)
        assert await viewer.evaluate(FRAMES) >= 5
        await expect(viewer.locator("#video-status")).to_be_hidden()
        width, height = await viewer.evaluate(
            "() => { const v = document.querySelector('#video'); return [v.videoWidth, v.videoHeight] }"
        )
        assert width > 0 and height > 0

        # Both peers were made with the configured ICE servers, and the browser queried the STUN server.
        await assert_peers_use(host, ice_servers)
        await assert_peers_use(viewer, ice_servers)
        assert stun_server[0].requests > 0

        # A thumbnail is grabbed from the live video for the room.
        for _ in range(50):
            thumb = await client.get(f"/api/rooms/{room['id']}/thumbnail.jpg", headers=auth)
            if thumb.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"

        await host.click("#camera-stop")
        await expect(host.locator("#camera-status")).to_have_text("camera off")
        await expect(viewer.locator("#video-status")).to_be_visible(timeout=20_000)
        for _ in range(50):  # the page's DELETE of the WHIP session ends the ingest
            if not site.state.video.is_live(room["id"]):
                break
            await asyncio.sleep(0.1)
        assert not site.state.video.is_live(room["id"])
    assert problems.seen == []
