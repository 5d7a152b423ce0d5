"""Signing in with WeChat (网页授权, ``snsapi_base``) and the JS-SDK share set-up, end to end: the real app
against a local server that answers in WeChat's format (``tests/fake_providers.py``), on SQLite and
PostgreSQL with the real Redis.

``/auth/wechat/start`` sends the browser to WeChat with the documented parameters and a signed state;
``/auth/wechat/callback`` with a code WeChat knows sets the shop's cookie and returns to the page; the same
``openid`` is always the same customer (its ``unionid`` kept); a code WeChat refuses is a 401, and a forged,
old or foreign state, or a path to another site, is refused with nothing changed. The share set-up's
signature verifies by WeChat's documented algorithm and its ticket is fetched once while it lasts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from identity.models import Customer
from identity.wechat import STATE_SALT
from livecart.app import create_app
from loadtests.harness import Port
from tests.conftest import LiveServer, make_settings
from tests.fake_providers import FakeWeChat
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration


@dataclass
class World:
    server: LiveServer
    client: httpx.AsyncClient
    wechat: FakeWeChat
    api: str  # the stand-in's base URL

    @property
    def authorize_url(self) -> str:
        return f"{self.api}/connect/oauth2/authorize"


def wechat_settings(fake: FakeWeChat, api: str) -> dict[str, Any]:
    return {
        "wechat_app_id": fake.app_id,
        "wechat_app_secret": fake.app_secret,
        "wechat_api_base": api,
        "wechat_authorize_url": f"{api}/connect/oauth2/authorize",
        "sign_in_provider_timeout_seconds": 2.0,
    }


@asynccontextmanager
async def world_of(
    database_url: str, redis_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[World]:
    fake = FakeWeChat()
    async with fake.server() as api:
        port = Port()  # the app's own address is its base URL: WeChat sends the browser back there
        settings = make_settings(
            database_url,
            redis_url,
            tmp_path,
            base_url=port.url,
            **{**wechat_settings(fake, api.url), **overrides},
        )
        async with (
            LiveServer(settings, port=port) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            yield World(server, client, fake, api.url)


@pytest.fixture
async def world(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with world_of(database_url, redis_url, tmp_path) as w:
        yield w


async def new_room(client: httpx.AsyncClient) -> dict[str, Any]:
    host = await ok(await client.post("/api/hosts", json={"name": "Host"}), 201)
    room: dict[str, Any] = await ok(
        await client.post("/api/rooms", json={"title": "Show"}, headers=auth(host["token"])), 201
    )
    return room


def cookies_set(r: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in r.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def refused(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and body["detail"], body
    return str(body["detail"])


async def start(w: World, room: str, next_path: str | None = None) -> str:
    """Start a sign-in as the browser does; the state WeChat will bring back."""
    params = {"room": room} | ({"next": next_path} if next_path else {})
    r = await w.client.get("/auth/wechat/start", params=params)
    assert r.status_code == 302, r.text
    return dict(parse_qsl(urlsplit(r.headers["location"]).query))["state"]


async def callback(w: World, code: str, state: str) -> httpx.Response:
    return await w.client.get("/auth/wechat/callback", params={"code": code, "state": state})


async def customers(w: World) -> list[Customer]:
    async with w.server.state.sessions() as session:
        return list((await session.execute(select(Customer).order_by(Customer.created_ms))).scalars())


# -- web authorization --------------------------------------------------------------------------------


async def test_start_sends_the_browser_to_wechat(world: World) -> None:
    room = await new_room(world.client)
    r = await world.client.get("/auth/wechat/start", params={"room": room["id"], "next": "/r/x?invite=abc"})
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    url, _, fragment = location.partition("#")
    assert fragment == "wechat_redirect" and url.startswith(world.authorize_url + "?")
    params = parse_qsl(urlsplit(url).query)
    # in the order WeChat's documentation gives them
    assert [k for k, _ in params] == ["appid", "redirect_uri", "response_type", "scope", "state"]
    q = dict(params)
    assert q["appid"] == world.wechat.app_id and q["scope"] == "snsapi_base" and q["response_type"] == "code"
    assert q["redirect_uri"] == f"{world.server.url}/auth/wechat/callback"
    nonce = cookies_set(r)["lc_wx_state"]
    assert nonce["httponly"] is True and nonce["path"] == "/auth/wechat/callback"
    assert int(nonce["max-age"]) == 600 and nonce["samesite"].lower() == "lax"


async def test_the_callback_signs_the_buyer_in_and_returns_to_the_page(world: World) -> None:
    room = await new_room(world.client)
    page = f"/r/{room['id']}?invite={room['invite_token']}"
    state = await start(world, room["id"], page)
    r = await callback(world, world.wechat.new_code("oWX_buyer_1", "uWX_person_1"), state)
    assert r.status_code == 302 and r.headers["location"] == page, r.text
    jar = cookies_set(r)
    (name,) = [k for k in jar if k.startswith("lc_c_")]
    cookie = jar[name]
    assert cookie["httponly"] is True and cookie["samesite"].lower() == "lax" and cookie["path"] == "/"
    assert jar["lc_wx_state"].value == "" or int(jar["lc_wx_state"]["max-age"]) == 0  # used up
    (customer,) = await customers(world)
    assert (customer.wechat_openid, customer.wechat_unionid, customer.phone) == (
        "oWX_buyer_1",
        "uWX_person_1",
        None,
    )
    # the cookie signs the page in: the verified room's join takes it, as this customer
    world.client.cookies.clear()
    joined = await world.client.post(
        f"/api/rooms/{room['id']}/join",
        json={"invite": room["invite_token"]},
        headers={"Cookie": f"{name}={cookie.value}"},
    )
    assert (await ok(joined))["customer_id"] == customer.id


async def test_the_same_openid_is_the_same_customer_at_one_host_only(world: World) -> None:
    room, other_shop = await new_room(world.client), await new_room(world.client)

    async def sign_in(room_id: str, openid: str, unionid: str | None = None) -> str:
        r = await callback(world, world.wechat.new_code(openid, unionid), await start(world, room_id))
        assert r.status_code == 302 and r.headers["location"] == f"/r/{room_id}", r.text
        (token,) = [c.value for k, c in cookies_set(r).items() if k.startswith("lc_c_")]
        return str(world.server.state.signer.verify(token).customer_id)

    first = await sign_in(room["id"], "oWX_same")
    again = await sign_in(room["id"], "oWX_same", "uWX_later")  # a unionid WeChat gives later is kept
    someone_else = await sign_in(room["id"], "oWX_someone_else")
    elsewhere = await sign_in(other_shop["id"], "oWX_same")
    assert first == again and len({first, someone_else, elsewhere}) == 3
    rows = {c.id: c for c in await customers(world)}
    assert set(rows) == {first, someone_else, elsewhere}
    assert (rows[first].wechat_openid, rows[first].wechat_unionid) == ("oWX_same", "uWX_later")
    assert rows[first].host_id != rows[elsewhere].host_id


async def test_a_code_wechat_refuses_is_a_401_and_changes_nothing(world: World) -> None:
    room = await new_room(world.client)
    state = await start(world, room["id"])
    detail = refused(await callback(world, "a-code-wechat-never-gave", state), 401, "invalid_code")
    assert "40029" in detail
    used = world.wechat.new_code("oWX_once")
    assert (await callback(world, used, await start(world, room["id"]))).status_code == 302
    refused(await callback(world, used, await start(world, room["id"])), 401, "invalid_code")  # used once
    assert [c.wechat_openid for c in await customers(world)] == ["oWX_once"]


async def test_a_forged_old_or_foreign_state_is_refused_and_changes_nothing(world: World) -> None:
    room = await new_room(world.client)
    state = await start(world, room["id"])
    code = world.wechat.new_code("oWX_victim")
    forged = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    assert "not made here" in refused(await callback(world, code, forged), 400, "invalid_state")
    other_key = URLSafeTimedSerializer("some-other-key", salt=STATE_SALT).dumps([room["id"], "/", "n"])
    refused(await callback(world, code, other_key), 400, "invalid_state")

    class TenMinutesAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 601

    nonce = world.client.cookies["lc_wx_state"]
    old = URLSafeTimedSerializer("test-secret-key", salt=STATE_SALT, signer=TenMinutesAgo).dumps(
        [room["id"], f"/r/{room['id']}", nonce]
    )
    assert "too long" in refused(await callback(world, code, old), 400, "invalid_state")
    # a callback link someone else started (their state, their code) signs no one in in this browser
    async with httpx.AsyncClient(base_url=world.server.url) as victim:
        r = await victim.get("/auth/wechat/callback", params={"code": code, "state": state})
    assert "another browser" in refused(r, 400, "invalid_state")
    assert await customers(world) == []
    assert (await callback(world, code, state)).status_code == 302  # the code was never spent on them


@pytest.mark.parametrize(
    "next_path", ["//evil.com", "//evil.com/r/x", "/\\evil.com", "https://evil.com", "r/x"]
)
async def test_a_path_to_another_site_is_refused(world: World, next_path: str) -> None:
    room = await new_room(world.client)
    r = await world.client.get("/auth/wechat/start", params={"room": room["id"], "next": next_path})
    assert "next" in refused(r, 422, "invalid_request")
    assert "location" not in r.headers


async def test_an_unknown_room_and_missing_parameters(world: World) -> None:
    refused(await world.client.get("/auth/wechat/start", params={"room": "nope"}), 404, "not_found")
    refused(await world.client.get("/auth/wechat/start"), 422, "invalid_request")
    refused(await world.client.get("/auth/wechat/callback", params={"code": "x"}), 422, "invalid_request")


async def test_starts_and_callbacks_are_limited_per_address(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    limits = {"limits_scale": 1, "limit_sign_in_per_ip": "2/hour"}
    async with world_of(database_url, redis_url, tmp_path, **limits) as w:
        room = await new_room(w.client)
        for _ in range(2):  # starts and callbacks each have the address's two
            state = await start(w, room["id"])
            assert (await callback(w, w.wechat.new_code("oWX_1"), state)).status_code == 302
        r = await w.client.get("/auth/wechat/start", params={"room": room["id"]})
        refused(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) > 0
        refused(await callback(w, w.wechat.new_code("oWX_1"), state), 429, "rate_limited")


async def test_wechat_unreachable_is_a_502(database_url: str, redis_url: str, tmp_path: Path) -> None:
    with Port() as gone:  # bound, never listening
        async with world_of(database_url, redis_url, tmp_path, wechat_api_base=gone.url) as w:
            room = await new_room(w.client)
            r = await callback(w, "code", await start(w, room["id"]))
            refused(r, 502, "provider_failed")
            r = await w.client.get(
                f"/api/rooms/{room['id']}/wechat/share-config",
                params={"url": f"{w.server.url}/r/{room['id']}"},
            )
            refused(r, 502, "provider_failed")


async def test_without_an_app_id_wechat_is_off(client: httpx.AsyncClient) -> None:
    room = await new_room(client)
    for path, params in (
        ("/auth/wechat/start", {"room": room["id"]}),
        ("/auth/wechat/callback", {"code": "c", "state": "s.t"}),
        (f"/api/rooms/{room['id']}/wechat/share-config", {"url": "http://127.0.0.1/r/x"}),
    ):
        refused(await client.get(path, params=params), 409, "wechat_not_configured")


@pytest.mark.parametrize("half", [{"wechat_app_id": "wx123"}, {"wechat_app_secret": "s3cret"}])
def test_half_a_set_up_refuses_to_start(half: dict[str, str], tmp_path: Path) -> None:
    settings = make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/1", tmp_path, **half)
    with pytest.raises(ValueError, match="LIVECART_WECHAT_APP_ID and LIVECART_WECHAT_APP_SECRET"):
        create_app(settings)


async def test_the_app_secret_never_reaches_the_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    room = await new_room(world.client)
    with caplog.at_level(logging.INFO):
        r = await callback(world, world.wechat.new_code("oWX_1"), await start(world, room["id"]))
        assert r.status_code == 302
        await callback(world, "refused-code", await start(world, room["id"]))
    # (uvicorn's access lines are left out: the stand-in's show the request it was sent)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "uvicorn.access")
    assert "/sns/oauth2/access_token" in logged and "secret=***" in logged
    assert world.wechat.app_secret not in logged


# -- the JS-SDK share set-up --------------------------------------------------------------------------


def documented_signature(ticket: str, config: dict[str, Any], page: str) -> str:
    """JS-SDK 附录1: SHA-1 of the four fields sorted by name, the page URL without its fragment."""
    text = f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}&url={page}"
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


async def share_config(w: World, room: str, url: str) -> httpx.Response:
    return await w.client.get(f"/api/rooms/{room}/wechat/share-config", params={"url": url})


async def test_the_share_signature_verifies_and_the_ticket_is_fetched_once(world: World) -> None:
    room = await new_room(world.client)
    page = f"{world.server.url}/r/{room['id']}?invite={room['invite_token']}"
    before = int(time.time())
    config = await ok(await share_config(world, room["id"], page + "#chat"))
    assert set(config) == {"appId", "timestamp", "nonceStr", "signature"}
    assert config["appId"] == world.wechat.app_id and before - 1 <= config["timestamp"] <= time.time() + 1
    assert config["signature"] == documented_signature(world.wechat.ticket, config, page)
    again = await ok(await share_config(world, room["id"], page))
    assert again["nonceStr"] != config["nonceStr"] and again["signature"] != config["signature"]
    assert (world.wechat.token_calls, world.wechat.ticket_calls) == (1, 1)  # cached: no new fetch
    # concurrent first calls on a fresh cache fetch once too
    await world.server.state.redis.delete(f"livecart:wechat:{world.wechat.app_id}:jsapi_ticket")
    await asyncio.gather(*(share_config(world, room["id"], page) for _ in range(10)))
    assert world.wechat.ticket_calls == 2


async def test_an_expired_ticket_or_token_is_fetched_again(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with world_of(database_url, redis_url, tmp_path) as w:
        w.wechat.expires_in = 2  # kept about one second
        room = await new_room(w.client)
        page = f"{w.server.url}/r/{room['id']}"
        await ok(await share_config(w, room["id"], page))
        await asyncio.sleep(1.2)
        await ok(await share_config(w, room["id"], page))
        assert (w.wechat.token_calls, w.wechat.ticket_calls) == (2, 2)
        # WeChat revokes the token early (another server fetched a new one): one retry with a fresh token
        w.wechat.expires_in = 7200
        await asyncio.sleep(1.2)
        w.wechat._tokens.clear()
        await w.server.state.redis.set(f"livecart:wechat:{w.wechat.app_id}:access_token", "revoked")
        config = await ok(await share_config(w, room["id"], page))
        assert (w.wechat.token_calls, w.wechat.ticket_calls) == (3, 4)
        assert config["signature"] == documented_signature(w.wechat.ticket, config, page)


async def test_only_pages_of_this_server_are_signed(world: World) -> None:
    room = await new_room(world.client)
    for url in ("https://evil.example/r/x", f"https://{urlsplit(world.server.url).netloc}/r/x"):
        assert "not a page of this server" in refused(
            await share_config(world, room["id"], url), 422, "invalid_url"
        )
    refused(await share_config(world, room["id"], "javascript:alert(1)"), 422, "invalid_request")
    refused(await share_config(world, "nope", f"{world.server.url}/r/nope"), 404, "not_found")
    assert world.wechat.ticket_calls == 0
