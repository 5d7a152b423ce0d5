"""What a link to a show tells, over HTTP against the real app: ``GET /api/rooms/{room}/preview`` answers
(title, host, status, sign-in, cover) for the room's invite, a standing per-invitee invite and a viewer's
share code, and 403 ``invalid_invite`` for anything else (a revoked or expired invite, another room's
code, an unknown room); the viewer page's Open Graph tags say the same for a link that admits, escaped,
and only generic words for one that does not.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.e2e.conftest import api
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

TITLE = '</title><script>alert(1)</script> "Friday" & <flash>'


def meta_tags(page: str) -> dict[str, str]:
    found: dict[str, str] = {}

    class Meta(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = dict(attrs)
            key = names.get("property") or names.get("name")
            if tag == "meta" and key:
                assert key not in found, f"{key} twice"
                found[key] = names.get("content") or ""

    Meta().feed(page)
    return found


async def world(site: LiveServer) -> dict[str, Any]:
    async with api(site) as client:
        host = await ok(await client.post("/api/hosts", json={"name": "Mei & <Co>"}))
        headers = auth(host["token"])
        room = await ok(
            await client.post("/api/rooms", json={"title": TITLE, "sign_in": "guest"}, headers=headers)
        )
        other = await ok(
            await client.post("/api/rooms", json={"title": "Other", "sign_in": "guest"}, headers=headers)
        )
        invite = await ok(await client.post(f"/api/rooms/{room['id']}/invites", json={}, headers=headers))
        revoked = await ok(await client.post(f"/api/rooms/{room['id']}/invites", json={}, headers=headers))
        await ok(await client.delete(f"/api/rooms/{room['id']}/invites/{revoked['id']}", headers=headers))
        viewer = await ok(
            await client.post(
                f"/api/rooms/{room['id']}/join", json={"invite": room["invite_token"], "name": "Li"}
            )
        )
        other_viewer = await ok(
            await client.post(
                f"/api/rooms/{other['id']}/join", json={"invite": other["invite_token"], "name": "Wang"}
            )
        )
    return {
        "host": host["token"],
        "room": room,
        "other": other,
        "invite": invite["token"],
        "revoked": revoked["token"],
        "share_code": viewer["share_code"],
        "other_invite": other["invite_token"],
        "other_share": other_viewer["share_code"],
    }


async def test_the_preview_answers_only_for_a_link_that_admits(site: LiveServer) -> None:
    w = await world(site)
    room_id = w["room"]["id"]
    expected = {
        "title": TITLE,
        "host_name": "Mei & <Co>",
        "status": "scheduled",
        "sign_in": "guest",
        "cover_url": None,
        "replay": False,  # not ended: nothing to replay yet
    }
    async with api(site) as client:
        for invite in (w["room"]["invite_token"], w["invite"], w["share_code"]):
            response = await client.get(f"/api/rooms/{room_id}/preview", params={"invite": invite})
            assert response.status_code == 200, invite
            assert response.json() == expected
        for invite in (
            "made-up",
            w["revoked"],
            w["other_invite"],
            w["other_share"],
            "i." + w["invite"][2:-2] + "xx",
        ):
            response = await client.get(f"/api/rooms/{room_id}/preview", params={"invite": invite})
            assert response.status_code == 403, invite
            assert response.json()["error"] == "invalid_invite"
        unknown = await client.get("/api/rooms/rm_00000000000000000000000000/preview", params={"invite": "x"})
        assert (unknown.status_code, unknown.json()["error"]) == (403, "invalid_invite")
        missing = await client.get(f"/api/rooms/{room_id}/preview")
        assert missing.status_code == 422

        # The cover: the image of the first product pinned in the room that has one.
        headers = auth(w["host"])
        plain = await ok(
            await client.post("/api/products", json={"name": "Tea", "price": 100}, headers=headers)
        )
        pictured = await ok(
            await client.post(
                "/api/products",
                json={"name": "Cake", "price": 100, "image_url": "https://img.example/cake.jpg"},
                headers=headers,
            )
        )
        later = await ok(
            await client.post(
                "/api/products",
                json={"name": "Pie", "price": 100, "image_url": "https://img.example/pie.jpg"},
                headers=headers,
            )
        )
        for product in (plain, pictured, later):
            card = {"product_id": product["id"], "price": 100, "stock": 1}
            await ok(await client.post(f"/api/rooms/{room_id}/cards", json=card, headers=headers))
        await ok(await client.post(f"/api/rooms/{room_id}/live", headers=headers))
        response = await client.get(f"/api/rooms/{room_id}/preview", params={"invite": w["share_code"]})
        assert response.json() == {**expected, "status": "live", "cover_url": "https://img.example/cake.jpg"}


async def test_the_page_unfolds_in_messengers_only_for_a_link_that_admits(site: LiveServer) -> None:
    w = await world(site)
    room_id = w["room"]["id"]
    async with api(site) as client:
        page = await client.get(
            f"/r/{room_id}", params={"invite": w["invite"]}, headers={"Accept-Language": "en"}
        )
        assert page.status_code == 200
        meta = meta_tags(page.text)
        assert meta["og:title"] == TITLE
        assert meta["og:description"] == "Hosted by Mei & <Co> · Coming up"
        assert meta["og:image"] == f"{site.url}/static/og-default.png"
        assert meta["og:url"].startswith(f"{site.url}/r/{room_id}?invite=")
        assert "<script>alert" not in page.text and "<flash>" not in page.text
        assert page.text.count("<title>") == 1
        image = await client.get("/static/og-default.png")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

        chinese = meta_tags((await client.get(f"/r/{room_id}", params={"invite": w["share_code"]})).text)
        assert chinese["og:description"] == "主播 Mei & <Co> · 即将开播"

        for invite in ("made-up", w["revoked"], w["other_invite"]):
            page = await client.get(
                f"/r/{room_id}", params={"invite": invite}, headers={"Accept-Language": "en"}
            )
            assert page.status_code == 200  # the page still loads, and says why on screen
            meta = meta_tags(page.text)
            assert meta["og:title"] == "A LiveCart live show"
            assert meta["og:url"] == f"{site.url}/r/{room_id}"
            assert "Friday" not in page.text and "Mei" not in page.text
        assert "WeChat" not in (await client.get(f"/r/{room_id}")).text


@pytest.mark.parametrize(
    "site_settings", [{"wechat_app_id": "wx0123456789abcdef", "wechat_app_secret": "s" * 32}]
)
async def test_inside_wechat_the_page_loads_the_js_sdk(site: LiveServer) -> None:
    w = await world(site)
    wechat = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 MicroMessenger/8.0.47 NetType/WIFI"
    async with api(site) as client:
        inside = await client.get(f"/r/{w['room']['id']}", headers={"User-Agent": wechat})
        outside = await client.get(f"/r/{w['room']['id']}")
    sdk = '<script src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"></script>'
    assert sdk in inside.text
    assert "script-src 'self' https://res.wx.qq.com;" in inside.headers["content-security-policy"]
    assert '"wechat_share":true' in inside.text.replace("&quot;", '"')
    assert sdk not in outside.text
    assert "res.wx.qq.com" not in outside.headers["content-security-policy"]
    assert '"wechat_sign_in":true' in outside.text.replace("&quot;", '"')
