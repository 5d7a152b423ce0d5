"""Host sessions and the stream key against the real app, on SQLite and PostgreSQL (SPEC §8, issue 11):
a session token that is forged, expired or revoked gets 401; the expiry slides with use; a host lists and
signs out their own sessions only; v1 host tokens no longer sign in; the stream key publishes video and
does nothing else, and rotating it retires the old one at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from identity.tokens import TokenSigner
from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, ok

DAY_MS = 24 * 3600 * 1000
SDP_OFFER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"  # no media: refused after auth, as 400


class OffsetClock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        import time

        return int(time.time() * 1000) + self.offset_ms


async def sign_up(client: httpx.AsyncClient, name: str = "Host", agent: str = "console A") -> dict[str, str]:
    return await ok(  # type: ignore[no-any-return]
        await client.post("/api/hosts", json={"name": name}, headers={"user-agent": agent}), 201
    )


async def rooms(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/rooms", headers=auth(token))


async def test_a_session_works_until_revoked_and_a_host_manages_only_their_own(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    first = await sign_up(client)
    assert first["token"].startswith("s.") and first["expires_at"]
    second = await ok(  # the same host on a second device (sessions mint sessions only via sign-in/CLI)
        await client.post("/api/hosts", json={"name": "Other"}), 201
    )
    assert (await rooms(client, first["token"])).status_code == 200
    listed = await ok(await client.get("/api/sessions", headers=auth(first["token"])))
    assert [(s["id"], s["current"], s["active"], s["label"]) for s in listed] == [
        (first["session_id"], True, True, "console A")
    ]
    # Another host cannot see or sign out this session.
    theirs = await client.delete(f"/api/sessions/{first['session_id']}", headers=auth(second["token"]))
    assert theirs.status_code == 404
    assert (await rooms(client, first["token"])).status_code == 200

    gone = await client.delete(f"/api/sessions/{first['session_id']}", headers=auth(first["token"]))
    assert (await ok(gone)) == {"revoked": 1}
    refused = await rooms(client, first["token"])
    assert refused.status_code == 401 and refused.json()["error"] == "token_expired"
    assert (await rooms(client, second["token"])).status_code == 200  # others untouched


async def test_sign_out_everywhere(server: LiveServer, client: httpx.AsyncClient) -> None:
    host = await sign_up(client)
    signer: TokenSigner = server.state.signer
    async with server.state.sessions() as session, session.begin():
        extra = await server.state.auth.host_sessions.start(session, host["id"], label="phone")
    assert (await rooms(client, extra.token)).status_code == 200
    listed = await ok(await client.get("/api/sessions", headers=auth(extra.token)))
    assert {s["id"]: s["current"] for s in listed} == {host["session_id"]: False, extra.id: True}
    assert (await ok(await client.delete("/api/sessions", headers=auth(host["token"])))) == {"revoked": 2}
    for token in (host["token"], extra.token):
        assert (await rooms(client, token)).status_code == 401
    assert signer.verify(host["token"])  # the signature is still good: it is the session that ended


async def test_forged_and_v1_tokens_are_refused(client: httpx.AsyncClient, server: LiveServer) -> None:
    host = await sign_up(client)
    forged = TokenSigner(["dev-insecure-secret-change-me"]).session_token(host["session_id"], host["id"])
    made_up = server.state.signer.session_token("ses_made_up", host["id"])  # signed, but no such session
    other_host = server.state.signer.session_token(host["session_id"], "hst_someone_else")
    legacy = server.state.signer.legacy_host_token(host["id"])  # what v1 handed out: never expired
    for token, code in (
        (forged, "unauthorized"),
        (made_up, "unauthorized"),
        (other_host, "unauthorized"),
        (legacy, "token_expired"),
        (host["token"][:-2] + "xx", "unauthorized"),
    ):
        refused = await rooms(client, token)
        assert (refused.status_code, refused.json()["error"]) == (401, code), token
    assert (await rooms(client, host["token"])).status_code == 200


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_session_expires_unless_used_and_use_slides_it(
    database: str, redis_url: str, tmp_path: Path
) -> None:
    from tests.conftest import fresh_database

    clock = OffsetClock()
    settings = make_settings(
        await fresh_database(database, tmp_path), redis_url, tmp_path, host_session_days=30
    )
    async with LiveServer(settings, clock=clock) as live, httpx.AsyncClient(base_url=live.url) as client:
        busy = await sign_up(client)
        idle = await sign_up(client)
        clock.offset_ms = 29 * DAY_MS
        assert (await rooms(client, busy["token"])).status_code == 200  # used: 30 more days from now
        clock.offset_ms = 30 * DAY_MS + 1
        expired = await rooms(client, idle["token"])
        assert (expired.status_code, expired.json()["error"]) == (401, "token_expired")
        clock.offset_ms = 58 * DAY_MS
        assert (await rooms(client, busy["token"])).status_code == 200
        clock.offset_ms = 89 * DAY_MS
        assert (await rooms(client, busy["token"])).status_code == 401


async def test_the_stream_key_publishes_video_and_nothing_else(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    host = await sign_up(client)
    room = await ok(await client.post("/api/rooms", json={"title": "Show"}, headers=auth(host["token"])), 201)
    await ok(await client.post(f"/api/rooms/{room['id']}/live", headers=auth(host["token"])))
    key = (await ok(await client.post("/api/stream-key", headers=auth(host["token"]))))["stream_key"]
    assert key.startswith("k.")
    whip = f"/api/rooms/{room['id']}/whip"
    sdp = {"content-type": "application/sdp"}

    with_key = await client.post(whip, content=SDP_OFFER, headers={**sdp, **auth(key)})
    assert with_key.status_code == 400 and with_key.json()["error"] == "invalid_sdp"  # past auth
    for path in ("/api/rooms", "/api/sessions", f"/api/rooms/{room['id']}"):
        assert (await client.get(path, headers=auth(key))).status_code == 401, path

    other = await sign_up(client, "Other")
    other_room = await ok(
        await client.post("/api/rooms", json={"title": "Theirs"}, headers=auth(other["token"])), 201
    )
    await ok(await client.post(f"/api/rooms/{other_room['id']}/live", headers=auth(other["token"])))
    stranger = await client.post(
        f"/api/rooms/{other_room['id']}/whip", content=SDP_OFFER, headers={**sdp, **auth(key)}
    )
    assert stranger.status_code == 403  # a key publishes to its own host's rooms only

    new_key = (await ok(await client.post("/api/stream-key", headers=auth(host["token"]))))["stream_key"]
    assert new_key != key
    retired = await client.post(whip, content=SDP_OFFER, headers={**sdp, **auth(key)})
    assert retired.status_code == 401
    fresh = await client.post(whip, content=SDP_OFFER, headers={**sdp, **auth(new_key)})
    assert fresh.status_code == 400
    assert (await client.post("/api/stream-key", headers=auth(new_key))).status_code == 401


def test_the_cli_signs_a_host_in(tmp_path: Path) -> None:
    """``livecart create-host`` prints a first session, ``livecart create-session`` another for the same
    host (an operator signing back in a host who lost every device)."""
    env = {
        **os.environ,
        "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "LIVECART_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "livecart.cli"]
    made = json.loads(
        subprocess.run(
            [*cli, "create-host", "Mei"], env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    again = json.loads(
        subprocess.run(
            [*cli, "create-session", made["id"]], env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    assert (
        made["token"].startswith("s.")
        and again["id"] == made["id"]
        and again["session_id"] != made["session_id"]
    )
    unknown = subprocess.run([*cli, "create-session", "hst_nobody"], env=env, capture_output=True, text=True)
    assert unknown.returncode != 0 and "no host" in unknown.stderr
