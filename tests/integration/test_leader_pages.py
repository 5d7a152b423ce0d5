"""The pages of issue 12 as the server renders them, on SQLite and PostgreSQL: the leader page ``/l/{host}``
of a shop that exists (its config names the shop) and of one that does not (a 404 page), both under the
pages' Content-Security-Policy; the viewer page tells the room's shop (for 我的订单) only to a link that
admits to the room or a browser signed in at that shop, never to a bare room id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.harness import new_host, new_phone, new_room
from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, ok


@pytest.fixture
async def server(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with LiveServer(make_settings(database_url, redis_url, tmp_path)) as live:
        yield live


def config_of(page: str) -> dict[str, Any]:
    found: list[str] = []

    class Meta(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = dict(attrs)
            if tag == "meta" and names.get("name") == "livecart-config":
                found.append(names.get("content") or "")

    Meta().feed(page)
    assert len(found) == 1, page[:300]
    config: dict[str, Any] = json.loads(found[0])
    return config


def strict_policy(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_leader_page_of_a_shop_and_of_no_shop(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await new_host(client, "梅<b>小店</b>")
        shop = await ok(await client.get("/api/shop", headers=auth(token)))

        page = await client.get(f"/l/{shop['id']}")
        assert page.status_code == 200
        strict_policy(page)
        assert config_of(page.text)["host_id"] == shop["id"]
        assert config_of(page.text)["shop"] == "梅<b>小店</b>"
        assert "<title>梅&lt;b&gt;小店&lt;/b&gt; · 团长中心</title>" in page.text  # escaped, Chinese first
        assert '<script type="module" src="/static/leader.js"></script>' in page.text
        english = await client.get(f"/l/{shop['id']}", headers={"Accept-Language": "en"})
        assert "Leader page</title>" in english.text

        unknown = await client.get("/l/hst_nobody")
        assert unknown.status_code == 404
        strict_policy(unknown)
        assert "找不到这家店" in unknown.text
        assert "<script" not in unknown.text
        assert (await client.get("/l/no%20such%20host")).status_code == 404


async def test_the_viewer_page_names_the_shop_only_to_whom_the_room_admits(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await new_host(client, "梅")
        shop = await ok(await client.get("/api/shop", headers=auth(token)))
        room = await new_room(client, token, "周五秒杀")

        bare = await client.get(f"/r/{room['id']}")
        assert bare.status_code == 200
        assert config_of(bare.text)["host_id"] is None  # a bare room id tells nobody whose show it is
        wrong = await client.get(f"/r/{room['id']}", params={"invite": "not-an-invite"})
        assert config_of(wrong.text)["host_id"] is None
        invited = await client.get(f"/r/{room['id']}", params={"invite": room["invite_token"]})
        assert config_of(invited.text)["host_id"] == shop["id"]

        # Signed in at the shop (its cookie), a returning buyer's page without the invite knows it too.
        phone = new_phone()
        sent = await ok(
            await client.post(f"/api/shops/{shop['id']}/sign-in/code", json={"phone": phone}), 202
        )
        await ok(
            await client.post(
                f"/api/shops/{shop['id']}/sign-in", json={"phone": phone, "code": sent["dev_code"]}
            )
        )
        assert f"lc_c_{shop['id']}" in client.cookies
        returning = await client.get(f"/r/{room['id']}")
        assert config_of(returning.text)["host_id"] == shop["id"]

        # Another shop's cookie is not this shop's.
        other = await new_host(client, "别家")
        other_room = await new_room(client, other, "别家的场")
        assert config_of((await client.get(f"/r/{other_room['id']}")).text)["host_id"] is None
        assert config_of((await client.get("/r/rm_missing")).text)["host_id"] is None
