"""HLS and the replay in real Chromium (SPEC section 11): an aiortc WHIP publisher feeds a room, the app
encodes it once into HLS, and the pages play it with the vendored hls.js.

- The room's ten WHEP slots are taken by aiortc viewers (cheaper than browsers); the eleventh viewer's page
  is refused WHEP (``409 viewer_cap``), plays the show over HLS instead (its ``<video>`` advances), says so
  and shows the delay; when a slot frees, its 实时 switch takes it back to WHEP.
- A show with a card pinned and opened some seconds in (watched from the start with 从头看 meanwhile) ends in
  front of a viewer: the page plays the replay from the start and shows the card at its moments (absent
  before it was pinned, pinned, then on sale); tapping a moment seeks there; the sale the shop kept open
  after the show is bought from the replay; a reload plays it again, and someone who missed the show is
  offered it, signs in and watches. In the console the host saw the encoder's state, set the shop's replay
  settings, and hides the replay (the viewer is told there is none) and deletes it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection
from playwright.async_api import Page, expect

from loadtests.harness import new_card
from tests.conftest import LiveServer
from tests.e2e.conftest import Problems, api, open_page, pay_on_page, sign_in_on_page
from tests.integration.test_video import Room, another_viewer, frames, new_room, publish, watch
from tests.shop_api import auth

pytestmark = pytest.mark.integration

CAP = 10
WAIT = 30.0  # seconds; generous for a shared 2-core machine, never reached when things work
TIME = "() => document.querySelector('#video').currentTime"
REPLAY_TIME = "() => document.querySelector('#replay-video').currentTime"
DECODED = "() => { const v = document.querySelector('#video'); return v.readyState >= 2 && v.videoWidth > 0 }"


@pytest.fixture
def site_settings() -> dict[str, Any]:
    return {"whep_max_viewers": CAP, "hls_segment_seconds": 1.0}


@pytest.fixture
async def peers() -> AsyncIterator[list[RTCPeerConnection]]:
    """Every aiortc peer a test opens; all are closed at its end, whatever happened."""
    opened: list[RTCPeerConnection] = []
    yield opened
    await asyncio.gather(*(pc.close() for pc in opened))


async def live_room(client: httpx.AsyncClient, peers: list[RTCPeerConnection]) -> Room:
    """A live room with the host on camera (an aiortc publisher), once its first HLS segment exists."""
    room = await new_room(client)
    assert (await client.post(f"/api/rooms/{room.id}/live", headers=auth(room.host_token))).status_code == 200
    await publish(client, peers, room)
    await hls_status(client, room, lambda s: s["segments"] >= 1)
    return room


async def hls_status(client: httpx.AsyncClient, room: Room, done: Any) -> dict[str, Any]:
    """The room's encoder status (GET /hls, as its host) once ``done(status)``."""
    async with asyncio.timeout(WAIT):
        while True:
            r = await client.get(f"/api/rooms/{room.id}/hls", headers=auth(room.host_token))
            assert r.status_code == 200, r.text
            if done(r.json()):
                return dict(r.json())
            await asyncio.sleep(0.2)


async def viewer_page(site: LiveServer, browser: Any, problems: Problems, room: Room, phone: str) -> Page:
    _, page = await open_page(browser, problems, f"viewer {phone}", phone=True)
    await page.goto(f"{site.url}/r/{room.id}?invite={room.invite}")
    await sign_in_on_page(page, phone, name=f"Viewer {phone[-2:]}")
    await expect(page.locator("#show")).to_be_visible()
    return page


async def advances(page: Page, expression: str, *, by: float = 1.0) -> float:
    """Wait until the video's currentTime (``expression``) is past 0, then until it has moved on ``by``
    seconds: the video really plays. Returns the later position."""
    await page.wait_for_function(f"() => ({expression})() > 0", timeout=WAIT * 1000)
    first = await page.evaluate(expression)
    await page.wait_for_function(f"() => ({expression})() >= {first + by}", timeout=WAIT * 1000)
    return float(await page.evaluate(expression))


async def test_the_eleventh_viewer_watches_over_hls(
    site: LiveServer, browser: Any, problems: Problems, peers: list[RTCPeerConnection]
) -> None:
    async with api(site) as client:
        room = await live_room(client, peers)
        tokens = [room.viewer_token] + [await another_viewer(client, room, f"W{i}") for i in range(CAP - 1)]
        watchers = [await watch(client, peers, room, token) for token in tokens]
        assert [w.response.status_code for w in watchers] == [201] * CAP
        await frames(watchers[-1].tracks["video"], 1)
        assert site.state.video.viewers(room.id) == CAP

        page = await viewer_page(site, browser, problems, room, "13800138011")
        mode = page.locator("#video-mode")
        await expect(mode).to_have_attribute("data-mode", "hls", timeout=WAIT * 1000)
        await expect(mode).to_contain_text("Smooth (HLS)")
        await expect(page.locator("#video-note")).to_contain_text("Real-time is full")
        await expect(page.locator("#video-toggle")).to_be_visible()
        await advances(page, TIME, by=2.0)
        # The delay from the playlists' EXT-X-PROGRAM-DATE-TIME: a few segments, never minutes.
        await expect(mode).to_contain_text(re.compile(r"about [\d.]+ s behind"), timeout=WAIT * 1000)
        found = re.search(r"about ([\d.]+) s behind", await mode.inner_text())
        assert found is not None and 0 < float(found[1]) < 20, await mode.inner_text()
        assert site.state.video.viewers(room.id) == CAP  # the HLS viewer holds no WHEP slot
        # hls.js transmuxes in its vendored worker, a script of this origin: the policy needs no blob:.
        workers = [worker.url for worker in page.workers]
        assert f"{site.url}/static/vendor/hls.js/hls.worker.js" in workers, workers

        # Choosing real-time while the slots are full keeps HLS playing and says why.
        await page.click("#video-toggle [data-mode=webrtc]")
        await expect(mode).to_have_attribute("data-mode", "hls", timeout=WAIT * 1000)
        await expect(page.locator("#video-note")).to_contain_text("Real-time is full")
        smooth = page.locator("#video-toggle [data-mode=hls]")
        await expect(smooth).to_have_attribute("aria-pressed", "true")  # the switch shows what plays
        # A slot frees: the switch takes the page to WHEP, which decodes frames.
        gone = watchers.pop()
        r = await client.delete(gone.location, headers=auth(tokens[-1]))
        assert r.status_code == 204, r.text
        await page.click("#video-toggle [data-mode=webrtc]")
        await expect(mode).to_have_attribute("data-mode", "webrtc", timeout=WAIT * 1000)
        await expect(mode).to_contain_text("Real-time (WebRTC)")
        await page.wait_for_function(DECODED, timeout=WAIT * 1000)
        assert site.state.video.viewers(room.id) == CAP
        await expect(page.locator("#video-toggle [data-mode=webrtc]")).to_have_attribute(
            "aria-pressed", "true"
        )
    assert problems.seen == []


SAMPLE = """(cardId) => {
  const card = document.querySelector(`#replay-cards [data-card-id="${cardId}"]`);
  return [document.querySelector('#replay-video').currentTime, card ? card.dataset.status : null];
}"""


async def test_the_replay_plays_and_shows_each_card_at_its_moment(
    site: LiveServer, browser: Any, problems: Problems, peers: list[RTCPeerConnection]
) -> None:
    async with api(site) as client:
        room = await live_room(client, peers)
        host = auth(room.host_token)

        # The host's console: the encoder's state, and the shop keeps open sales open 2 h after a show.
        _, console = await open_page(browser, problems, "host")
        await console.goto(f"{site.url}/host#room={room.id}")
        await console.fill("#signin-form textarea", room.host_token)
        await console.click("#signin-form button")
        await expect(console.locator("#hls-state")).to_have_attribute(
            "data-state", "encoding", timeout=WAIT * 1000
        )
        await expect(console.locator("#hls-segments")).to_have_text(re.compile(r"^[1-9]\d*$"))
        await console.fill("#replay-settings-form input[name=sales_hours]", "2")
        await console.fill("#replay-settings-form input[name=keep_days]", "7")
        await console.click("#replay-settings-form button")
        await expect(console.locator("#replay-settings-status")).to_have_text("Saved.")
        shop = (await client.get("/api/shop", headers=host)).json()
        assert (shop["replay_keep_days"], shop["replay_sales_hours"]) == (7, 2)

        page = await viewer_page(site, browser, problems, room, "13800138012")
        await page.wait_for_function(DECODED, timeout=WAIT * 1000)

        # Some seconds into the show a card is pinned, a few seconds later its sale opens; then the end.
        await asyncio.sleep(2)
        _, card_id = await new_card(client, room.host_token, room.id, stock=5, price=990, open_sale=False)
        card = {"id": card_id}
        await asyncio.sleep(3)
        assert (await client.post(f"/api/cards/{card['id']}/open", json={}, headers=host)).status_code == 200
        # 从头看: the recording so far plays in place of the live video, until 回到直播.
        await page.click("#watch-from-start")
        await expect(page.locator("#replay")).to_be_visible()
        await expect(page.locator("#replay-state")).to_have_attribute("data-state", "recording")
        await expect(page.locator("#stage")).to_be_hidden()
        await advances(page, REPLAY_TIME, by=1.0)
        await page.click("#replay-back")
        await expect(page.locator("#replay")).to_be_hidden()
        await page.wait_for_function(DECODED, timeout=WAIT * 1000)
        assert (await client.post(f"/api/rooms/{room.id}/end", headers=host)).status_code == 200

        # The page the viewer is on turns into the replay, from the start.
        await expect(page.locator("#replay")).to_be_visible(timeout=WAIT * 1000)
        await expect(page.locator("#stage")).to_be_hidden()
        replay = (await client.get(f"/api/rooms/{room.id}/replay", headers=auth(room.viewer_token))).json()
        moments = {(e["card_id"], e["event"]): e["t"] for e in replay["timeline"]}
        pinned, opened = moments[(card["id"], "pinned")], moments[(card["id"], "opened")]
        assert 1.0 < pinned < opened < replay["duration_seconds"] + 1, replay["timeline"]

        # The card is not there before its moment, pinned once the video passes it, on sale after that.
        seen: list[tuple[float, str | None]] = []
        async with asyncio.timeout(WAIT + opened):
            while not seen or seen[-1][1] != "open":
                time, status = await page.evaluate(SAMPLE, card["id"])
                seen.append((time, status))
                await asyncio.sleep(0.1)
        assert any(status is None and 0 < time < pinned for time, status in seen), seen
        assert any(status == "pinned" for _, status in seen), seen
        for time, status in seen:
            assert status != "pinned" or time >= pinned, seen
            assert status != "open" or time >= opened, seen
            assert status is not None or time < pinned + 1.0, seen  # timeupdate comes every 250 ms or so
        shown = page.locator(f'#replay-cards [data-card-id="{card["id"]}"]')
        await expect(shown.locator(".title")).to_have_text("Tea")  # the harness's product
        await expect(shown.locator(".price-now")).to_have_text("¥9.90")

        # Every event is a moment of the list; tapping one seeks there.
        await expect(page.locator("#replay-moments li")).to_have_count(len(replay["timeline"]))
        await page.locator(
            f'#replay-moments li[data-event="pinned"][data-card-id="{card["id"]}"] button'
        ).click()
        await page.wait_for_function(
            f"() => Math.abs(({REPLAY_TIME})() - {pinned}) < 1.5", timeout=WAIT * 1000
        )
        await expect(shown).to_have_attribute("data-status", "pinned")

        # The sale is still open (the shop's 2 h): bought from the replay, through the page's checkout.
        await shown.locator("button.buy").click()
        await pay_on_page(page)
        await expect(page.locator("#my-orders li .status").first).to_have_text("paid", timeout=WAIT * 1000)

        # The console shows the replay; a reload of the viewer's page plays it again.
        await expect(console.locator("#host-replay-state")).to_have_text("ready", timeout=WAIT * 1000)
        await expect(console.locator("#host-replay-visibility")).to_have_attribute("data-visible", "true")
        await page.reload()
        await expect(page.locator("#replay")).to_be_visible(timeout=WAIT * 1000)
        await advances(page, REPLAY_TIME, by=1.0)
        await expect(page.locator("#replay-state")).to_have_attribute("data-state", "ready")

        # Someone who missed the show is offered its replay, signs in, and watches it.
        _, missed = await open_page(browser, problems, "missed the show", phone=True)
        await missed.goto(f"{site.url}/r/{room.id}?invite={room.invite}")
        await expect(missed.locator("#state")).to_have_attribute("data-state", "ended")
        await missed.click("#state-action")
        await sign_in_on_page(missed, "13800138013", name="Late")
        await expect(missed.locator("#replay")).to_be_visible(timeout=WAIT * 1000)
        await advances(missed, REPLAY_TIME, by=1.0)
        await expect(missed.locator("#replay-moments li")).to_have_count(len(replay["timeline"]))

        # Hidden by the host: the viewer is told there is no replay. Deleted: gone for the host too.
        await console.click("#host-replay-hide")
        await expect(console.locator("#host-replay-visibility")).to_have_attribute("data-visible", "false")
        await page.reload()
        await expect(page.locator("#state")).to_have_attribute("data-state", "no_replay", timeout=WAIT * 1000)
        await console.click("#host-replay-delete")
        await console.click("#replay-delete-confirm")
        await expect(console.locator("#host-replay-none")).to_be_visible()
        r = await client.get(f"/api/rooms/{room.id}/replay", headers=host)
        assert (r.status_code, r.json()["error"]) == (404, "no_replay")
    assert problems.seen == []
