"""Video in real Chromium: the host goes on camera (Chromium's fake camera) from the console, which
publishes over WHIP; a viewer's page plays the show over WHEP and its <video> decodes frames; stopping the
camera DELETEs the WHIP session and the viewer falls back to waiting.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import Problems, open_page

pytestmark = pytest.mark.integration

DECODED = "() => { const v = document.querySelector('#video'); return v.readyState >= 2 && v.videoWidth > 0 }"
FRAMES = """() => new Promise((resolve) => {
  const video = document.querySelector('#video');
  let frames = 0;
  const step = () => (++frames >= 5 ? resolve(frames) : video.requestVideoFrameCallback(step));
  video.requestVideoFrameCallback(step);
})"""


async def test_host_camera_reaches_a_viewer(site: LiveServer, browser: Browser, problems: Problems) -> None:
    async with httpx.AsyncClient(base_url=site.url) as client:
        host_token = (await client.post("/api/hosts", json={"name": "Camera host"})).json()["token"]
        auth = {"Authorization": f"Bearer {host_token}"}
        room = (await client.post("/api/rooms", json={"title": "On camera"}, headers=auth)).json()

        _, host = await open_page(browser, problems, "host", permissions=["camera", "microphone"])
        await host.goto(f"{site.url}/host#room={room['id']}")
        await host.fill("#signin-form textarea", host_token)
        await host.click("#signin-form button")
        await expect(host.locator("#room-title")).to_have_text("On camera")

        # The viewer comes first and waits: the page retries WHEP until the host is on camera.
        _, viewer = await open_page(browser, problems, "viewer", phone=True)
        await viewer.goto(room["invite_url"])
        await viewer.fill("#join-form input[name=name]", "Early bird")
        await viewer.click("#join-form button")
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
