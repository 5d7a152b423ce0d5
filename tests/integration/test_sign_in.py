"""Signing in by phone (SPEC §8, §13), end to end on SQLite and PostgreSQL with the real Redis: a buyer
at a room's shop (``/api/rooms/{room}/sign-in``) and a host on a new device (``/api/host-sign-in``).

The same phone, however typed, at the same host is one customer, another host's shop another; a code works
once and only while it lasts; five wrong codes lock the phone (the right code included) and nobody else;
code requests are limited per phone and per address; the dev provider shows its code (and logs it);
without a provider phone sign-in is off; the cookie is ``HttpOnly``, ``SameSite=Lax`` and, in prod,
``Secure``. A host signs in with a code to the phone they signed up with; an unknown phone is answered
exactly alike and never signs in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.harness import new_phone
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.fake_providers import FakeAliyunSms
from tests.shop_api import auth, new_sale, ok

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving(
    database_url: str, redis_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LiveServer(make_settings(database_url, redis_url, tmp_path, **overrides)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        yield client


async def new_room(client: httpx.AsyncClient, phone: str | None = None) -> tuple[str, str]:
    """A host (with ``phone``, if given) and a live room of theirs: (host token, room id)."""
    host = await ok(await client.post("/api/hosts", json={"name": "Host", "phone": phone}), 201)
    room = await ok(await client.post("/api/rooms", json={"title": "Show"}, headers=auth(host["token"])), 201)
    return host["token"], room["id"]


async def ask_code(client: httpx.AsyncClient, room: str, phone: str) -> str:
    sent = await ok(await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": phone}), 202)
    assert sent["sent"] is True
    return str(sent["dev_code"])


async def sign_in(client: httpx.AsyncClient, room: str, phone: str, code: str) -> httpx.Response:
    return await client.post(f"/api/rooms/{room}/sign-in", json={"phone": phone, "code": code})


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == code and body["detail"], body
    return body


def set_cookie(r: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in r.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


# -- customers ----------------------------------------------------------------------------------------


async def test_one_phone_however_typed_is_one_customer_per_host(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    _, room = await new_room(client)
    _, elsewhere = await new_room(client)
    ids = set()
    for typed in ("13800138000", "+86 138-0013-8000", "0086 138 0013 8000"):
        code = await ask_code(client, room, typed)
        body = await ok(await sign_in(client, room, typed, code))
        assert body["token"].startswith("c.")
        ids.add(body["customer_id"])
    assert len(ids) == 1
    code = await ask_code(client, elsewhere, "13800138000")
    other = await ok(await sign_in(client, elsewhere, "+8613800138000", code))
    assert other["customer_id"] not in ids  # another host's shop: another customer


async def test_a_code_works_once_and_only_at_its_host(client: httpx.AsyncClient, server: LiveServer) -> None:
    _, room = await new_room(client)
    _, elsewhere = await new_room(client)
    phone = new_phone()
    code = await ask_code(client, room, phone)
    refused(await sign_in(client, elsewhere, phone, code), 401, "invalid_code")  # another shop's scope
    await ok(await sign_in(client, room, phone, code))
    refused(await sign_in(client, room, phone, code), 401, "invalid_code")  # used up


async def test_an_expired_code_is_refused(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with serving(database_url, redis_url, tmp_path, sign_in_code_seconds=1) as client:
        _, room = await new_room(client)
        phone = new_phone()
        code = await ask_code(client, room, phone)
        await asyncio.sleep(1.2)
        body = refused(await sign_in(client, room, phone, code), 401, "invalid_code")
        assert "expired" in body["detail"]


async def test_five_wrong_codes_lock_the_phone_and_nobody_else(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, redis_url, tmp_path) as client:
        _, room = await new_room(client)
        phone, other = new_phone(), new_phone()
        code = await ask_code(client, room, phone)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for left in (4, 3, 2, 1, 0):
            body = refused(await sign_in(client, room, phone, wrong), 401, "invalid_code")
            assert body["attempts_left"] == left
        r = await sign_in(client, room, phone, code)  # the right code, too late
        body = refused(r, 429, "locked")
        assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60 and body["retry_after"] > 14 * 60
        refused(await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": phone}), 429, "locked")
        await ok(await sign_in(client, room, other, await ask_code(client, room, other)))


async def test_code_requests_are_limited_per_phone_and_per_address(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, redis_url, tmp_path, limits_scale=1) as client:
        _, room = await new_room(client)
        phone = new_phone()
        await ask_code(client, room, phone)
        r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": phone})
        body = refused(r, 429, "rate_limited")
        assert 0 < int(r.headers["retry-after"]) <= 60 and body["retry_after"] == int(
            r.headers["retry-after"]
        )
        for _ in range(9):  # another phone is still served: ten from this address in the hour
            await ask_code(client, room, new_phone())
        r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": new_phone()})
        refused(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) > 0


async def test_the_dev_provider_shows_and_logs_its_code(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    _, room = await new_room(client)
    with caplog.at_level(logging.WARNING, logger="livecart.sms"):
        code = await ask_code(client, room, "13800138000")
    assert len(code) == 6 and code.isdigit()
    lines = [r.getMessage() for r in caplog.records if r.name == "livecart.sms"]
    assert lines == [f"dev SMS provider: sign-in code for +86138****8000 is {code}"]


async def test_without_a_provider_phone_sign_in_is_off(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, redis_url, tmp_path, sms_provider="none") as client:
        _, room = await new_room(client)
        r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "13800138000"})
        refused(r, 409, "sign_in_unavailable")
        r = await client.post("/api/host-sign-in/code", json={"phone": "13800138000"})
        refused(r, 409, "sign_in_unavailable")


@pytest.mark.parametrize("phone", ["12", "abc", "1" * 40, "138001380001", 13800138000, None])
async def test_what_is_not_a_phone_number_is_refused(client: httpx.AsyncClient, phone: object) -> None:
    _, room = await new_room(client)
    code = "invalid_phone"  # too short or long for the schema, not text, or not a number: all the same
    for path in (f"/api/rooms/{room}/sign-in/code", "/api/host-sign-in/code"):
        refused(await client.post(path, json={"phone": phone}), 422, code)
    for path in (f"/api/rooms/{room}/sign-in", "/api/host-sign-in"):
        refused(await client.post(path, json={"phone": phone, "code": "123456"}), 422, code)


async def test_an_unknown_room_has_no_shop_to_sign_in_to(client: httpx.AsyncClient) -> None:
    refused(
        await client.post("/api/rooms/nope/sign-in/code", json={"phone": "13800138000"}), 404, "not_found"
    )
    r = await client.post("/api/rooms/nope/sign-in", json={"phone": "13800138000", "code": "123456"})
    refused(r, 404, "not_found")


async def test_the_cookie_is_http_only_and_lax(client: httpx.AsyncClient) -> None:
    sale = await new_sale(client)
    phone = new_phone()
    r = await sign_in(client, sale.room_id, phone, await ask_code(client, sale.room_id, phone))
    body = await ok(r)
    cookie = next(iter(set_cookie(r).values()))
    assert cookie.value == body["token"] and cookie["httponly"] is True and cookie["path"] == "/"
    assert cookie["samesite"].lower() == "lax" and not cookie["secure"]  # dev serves plain HTTP
    assert int(cookie["max-age"]) == 365 * 24 * 3600
    # the cookie alone signs the page in: the join of a verified room takes it
    client.cookies.clear()
    joined = await client.post(
        f"/api/rooms/{sale.room_id}/join",
        json={"invite": sale.invite},
        headers={"Cookie": f"{cookie.key}={cookie.value}"},
    )
    assert (await ok(joined))["customer_id"] == body["customer_id"]


async def test_the_cookie_is_secure_in_prod(redis_url: str, tmp_path: Path) -> None:
    fake = FakeAliyunSms()
    prod = {
        "env": "prod",
        "secret_key": "prod-secret-key-for-this-test-0123456789",
        "migrate_on_start": True,
        "open_signup": True,
        "sms_provider": "aliyun",
        "aliyun_access_key_id": fake.access_key_id,
        "aliyun_access_key_secret": fake.access_key_secret,
        "aliyun_sms_sign_name": "LiveCart",
        "aliyun_sms_template_code": "SMS_000001",
    }
    async with fake.server() as sms:
        database_url = await fresh_database("sqlite", tmp_path)
        async with serving(database_url, redis_url, tmp_path, aliyun_sms_endpoint=sms.url, **prod) as client:
            _, room = await new_room(client)
            sent = await ok(
                await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "13800138000"}), 202
            )
            assert sent == {"sent": True}  # no dev_code outside dev
            (code,) = fake.codes_sent_to("13800138000")
            r = await sign_in(client, room, "13800138000", code)
            await ok(r)
            cookie = next(iter(set_cookie(r).values()))
            assert cookie["secure"] is True and cookie["httponly"] is True
            assert cookie["samesite"].lower() == "lax"


# -- hosts --------------------------------------------------------------------------------------------


async def test_a_host_signs_in_by_code_to_a_new_session(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    signed_up = await ok(await client.post("/api/hosts", json={"name": "Mei", "phone": phone}), 201)
    sent = await ok(await client.post("/api/host-sign-in/code", json={"phone": phone}), 202)
    assert set(sent) == {"sent", "dev_code"}
    typed = f"0086 {phone[3:6]} {phone[6:10]} {phone[10:]}"  # the same phone, typed another way
    session = await ok(
        await client.post("/api/host-sign-in", json={"phone": typed, "code": sent["dev_code"]})
    )
    assert set(session) == {"id", "name", "token", "session_id", "expires_at"}
    assert (session["id"], session["name"]) == (signed_up["id"], "Mei")
    assert session["session_id"] != signed_up["session_id"] and session["token"] != signed_up["token"]
    listed = await ok(await client.get("/api/sessions", headers=auth(session["token"])))
    assert {s["id"] for s in listed} == {signed_up["session_id"], session["session_id"]}
    assert [s["current"] for s in listed if s["id"] == session["session_id"]] == [True]
    # a code is used once
    again = await client.post("/api/host-sign-in", json={"phone": phone, "code": sent["dev_code"]})
    refused(again, 401, "invalid_code")


async def test_a_customers_code_does_not_sign_a_host_in(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    _, room = await new_room(client, phone)
    code = await ask_code(client, room, phone)  # the host's own phone, as a buyer of their own shop
    refused(await client.post("/api/host-sign-in", json={"phone": phone, "code": code}), 401, "invalid_code")


async def test_an_unknown_phone_is_answered_alike_and_never_signs_in(client: httpx.AsyncClient) -> None:
    known, unknown = new_phone(), new_phone()
    await ok(await client.post("/api/hosts", json={"name": "Mei", "phone": known}), 201)
    answers = {}
    for phone in (known, unknown):
        answers[phone] = await client.post("/api/host-sign-in/code", json={"phone": phone})
    shape = {p: (r.status_code, set(r.json()), r.headers["content-type"]) for p, r in answers.items()}
    assert shape[known] == shape[unknown] == (202, {"sent", "dev_code"}, "application/json")
    shown = answers[unknown].json()["dev_code"]  # (the dev provider shows a code; it signs no one in)
    r = await client.post("/api/host-sign-in", json={"phone": unknown, "code": shown})
    refused(r, 401, "invalid_code")
    # wrong codes count alike: the unknown phone locks after five, as a host's does
    for phone in (known, unknown):
        await ok(await client.post("/api/host-sign-in/code", json={"phone": phone}), 202)
    for _ in range(5):
        for phone in (known, unknown):
            r = await client.post("/api/host-sign-in", json={"phone": phone, "code": "000000"})
            refused(r, 401, "invalid_code")
    for phone in (known, unknown):
        r = await client.post("/api/host-sign-in", json={"phone": phone, "code": "000000"})
        refused(r, 429, "locked")


async def test_host_codes_are_limited_per_phone(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with serving(database_url, redis_url, tmp_path, limits_scale=1) as client:
        phone = new_phone()
        await ok(await client.post("/api/hosts", json={"name": "Mei", "phone": phone}), 201)
        await ok(await client.post("/api/host-sign-in/code", json={"phone": phone}), 202)
        r = await client.post("/api/host-sign-in/code", json={"phone": phone})
        refused(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) <= 60
        await ok(await client.post("/api/host-sign-in/code", json={"phone": new_phone()}), 202)
