"""``GET /api/rooms/{room}/video``, what a browser needs before its WHIP or WHEP offer: the configured
STUN/TURN servers (``LIVECART_ICE_SERVERS``), for the room's host and viewers only, never cached; none
when none are configured. On SQLite and PostgreSQL (it reads the room row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.harness import join
from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

ICE_SERVERS: list[dict[str, Any]] = [
    {"urls": "stun:stun.example.net:3478"},
    {
        "urls": ["turn:turn.example.net:3478?transport=udp", "turns:turn.example.net:5349"],
        "username": "mei",
        "credential": 'pa"ss\\word',
    },
]


async def room_with_viewer(client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, Any], str]:
    host = await ok(await client.post("/api/hosts", json={"name": "Host"}), 201)
    h = auth(host["token"])
    room = await ok(await client.post("/api/rooms", json={"title": "Show"}, headers=h), 201)
    viewer = await join(client, room["id"], room["invite_token"], "Viewer")  # a customer, signed in first
    return h, room, viewer.token


async def test_none_by_default(client: httpx.AsyncClient, server: LiveServer) -> None:
    h, room, viewer = await room_with_viewer(client)
    for headers in (h, auth(viewer)):
        r = await client.get(f"/api/rooms/{room['id']}/video", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"ice_servers", "hls", "hls_expires_at"}  # HLS is on by default
        assert body["ice_servers"] == []
        assert body["hls"].startswith(f"/api/rooms/{room['id']}/hls/") and body["hls"].endswith("/live.m3u8")


async def test_the_configured_servers_exactly_for_the_host_and_viewers_only(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, redis_url, tmp_path, ice_servers=ICE_SERVERS)
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url) as client:
        h, room, viewer = await room_with_viewer(client)
        other_h, other_room, other_viewer = await room_with_viewer(client)
        path = f"/api/rooms/{room['id']}/video"

        expected = {
            "ice_servers": [
                {"urls": ["stun:stun.example.net:3478"]},  # one URL or several: always a list
                {
                    "urls": ["turn:turn.example.net:3478?transport=udp", "turns:turn.example.net:5349"],
                    "username": "mei",
                    "credential": 'pa"ss\\word',
                },
            ]
        }
        for headers in (h, auth(viewer)):
            r = await client.get(path, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert {k: body[k] for k in ("ice_servers",)} == expected  # no "username": null for STUN
            assert set(body) == {"ice_servers", "hls", "hls_expires_at"}
            assert r.headers["content-type"] == "application/json"
            assert "no-store" in r.headers["cache-control"]  # TURN credentials: never kept by a cache

        for headers, status, code in (
            ({}, 401, "unauthorized"),
            (auth("v.forged"), 401, "unauthorized"),
            (auth(other_viewer), 403, "forbidden"),  # a viewer of another room
            (other_h, 403, "forbidden"),  # another host
        ):
            r = await client.get(path, headers=headers)
            assert (r.status_code, r.json()["error"]) == (status, code), (headers, r.text)
            assert "turn.example.net" not in r.text
        r = await client.get("/api/rooms/rm_nope/video", headers=h)
        assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
        assert (await client.get(f"/api/rooms/{other_room['id']}/video", headers=other_h)).status_code == 200

        # The public pages never carry them.
        for page in ("/host", f"/r/{room['id']}", "/static/webrtc.js", "/static/viewer.js"):
            assert "turn.example.net" not in (await client.get(page)).text, page
