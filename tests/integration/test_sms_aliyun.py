"""Phone sign-in through Aliyun SMS (``LIVECART_SMS_PROVIDER=aliyun``): the real app and the real Aliyun
SDK against a local server that answers in Aliyun's documented ``SendSms`` format and verifies each
request's signature with the access key secret this test made up (``tests/fake_providers.py``).

The code goes to the phone (a mainland number without ``+86``, another with its country code), never
into the response or the log, and signs the buyer in; a provider that refuses, cannot be reached or hangs
is a 502 within the provider timeout, with a reason and never the secret, and leaves no code to guess; a
host's unknown phone gets nothing sent; an incomplete set-up refuses to start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from livecart.app import create_app
from loadtests.harness import Port
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.fake_providers import FakeAliyunSms, FakeServer
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

TIMEOUT = 1.0


@pytest.fixture
async def aliyun() -> AsyncIterator[tuple[FakeAliyunSms, FakeServer]]:
    fake = FakeAliyunSms()
    async with fake.server() as server:
        yield fake, server


def aliyun_settings(fake: FakeAliyunSms, endpoint: str, **overrides: Any) -> dict[str, Any]:
    return {
        "sms_provider": "aliyun",
        "aliyun_sms_endpoint": endpoint,
        "aliyun_access_key_id": fake.access_key_id,
        "aliyun_access_key_secret": fake.access_key_secret,
        "aliyun_sms_sign_name": "直播小店",
        "aliyun_sms_template_code": "SMS_276480001",
        "sign_in_provider_timeout_seconds": TIMEOUT,
        **overrides,
    }


@pytest.fixture
async def client(
    aliyun: tuple[FakeAliyunSms, FakeServer], redis_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    fake, sms = aliyun
    database_url = await fresh_database("sqlite", tmp_path)
    settings = make_settings(database_url, redis_url, tmp_path, **aliyun_settings(fake, sms.url))
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


async def new_room(client: httpx.AsyncClient) -> str:
    host = await ok(await client.post("/api/hosts", json={"name": "Host"}), 201)
    room = await ok(await client.post("/api/rooms", json={"title": "Show"}, headers=auth(host["token"])), 201)
    return str(room["id"])


async def test_the_code_goes_by_sms_and_signs_the_buyer_in(
    client: httpx.AsyncClient, aliyun: tuple[FakeAliyunSms, FakeServer], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = aliyun
    room = await new_room(client)
    with caplog.at_level(logging.DEBUG):
        r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "+86 138 0013 8000"})
        assert r.status_code == 202 and r.json() == {"sent": True}, r.text  # no dev_code
        (message,) = fake.sent
        assert message.phone_numbers == "13800138000"  # mainland: no +86, as Aliyun documents
        assert (message.sign_name, message.template_code) == ("直播小店", "SMS_276480001")
        code = message.template_param["code"]
        assert set(message.template_param) == {"code"} and len(code) == 6 and code.isdigit()
        signed = await ok(
            await client.post(f"/api/rooms/{room}/sign-in", json={"phone": "13800138000", "code": code})
        )
    assert signed["token"].startswith("c.") and signed["customer_id"]
    assert fake.bad_signatures == 0
    # (uvicorn's access lines are left out: the stand-in provider's show the request it was sent)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "uvicorn.access")
    assert "+86138****8000" in logged and code not in logged and fake.access_key_secret not in logged


async def test_an_international_number_goes_with_its_country_code(
    client: httpx.AsyncClient, aliyun: tuple[FakeAliyunSms, FakeServer]
) -> None:
    fake, _ = aliyun
    room = await new_room(client)
    await ok(await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "+852 5123 4567"}), 202)
    (code,) = fake.codes_sent_to("85251234567")
    await ok(await client.post(f"/api/rooms/{room}/sign-in", json={"phone": "+85251234567", "code": code}))


async def test_a_refusal_is_a_502_and_leaves_no_code(
    client: httpx.AsyncClient, aliyun: tuple[FakeAliyunSms, FakeServer]
) -> None:
    fake, _ = aliyun
    room = await new_room(client)
    fake.fail_with = "isv.BUSINESS_LIMIT_CONTROL"
    r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "13800138000"})
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["error"] == "provider_failed" and "isv.BUSINESS_LIMIT_CONTROL" in body["detail"]
    (code,) = fake.codes_sent_to("13800138000")  # what the provider was asked to send, and did not
    r = await client.post(f"/api/rooms/{room}/sign-in", json={"phone": "13800138000", "code": code})
    assert r.status_code == 401 and r.json()["error"] == "invalid_code"


async def test_a_wrong_secret_is_refused_by_the_signature_check_and_never_shown(
    aliyun: tuple[FakeAliyunSms, FakeServer], redis_url: str, tmp_path: Path
) -> None:
    fake, sms = aliyun
    wrong = "not-the-secret-" + fake.access_key_secret[:12]
    settings = make_settings(
        await fresh_database("sqlite", tmp_path),
        redis_url,
        tmp_path,
        **aliyun_settings(fake, sms.url, aliyun_access_key_secret=wrong),
    )
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url) as client:
        room = await new_room(client)
        r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "13800138000"})
    assert r.status_code == 502 and "SignatureDoesNotMatch" in r.json()["detail"], r.text
    assert wrong not in r.text and fake.bad_signatures == 1 and fake.sent == []


async def test_a_provider_that_hangs_or_is_gone_is_a_502_within_the_timeout(
    aliyun: tuple[FakeAliyunSms, FakeServer], redis_url: str, tmp_path: Path
) -> None:
    fake, sms = aliyun
    fake.delay = 3 * TIMEOUT
    database_url = await fresh_database("sqlite", tmp_path)
    with Port() as gone:  # bound, never listening: every connection is refused
        for endpoint, reason in ((sms.url, "timed out"), (gone.url, "connect")):
            settings = make_settings(database_url, redis_url, tmp_path, **aliyun_settings(fake, endpoint))
            async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url) as client:
                room = await new_room(client)
                started = time.monotonic()
                r = await client.post(f"/api/rooms/{room}/sign-in/code", json={"phone": "13800138000"})
                took = time.monotonic() - started
            assert r.status_code == 502 and r.json()["error"] == "provider_failed", r.text
            assert reason in r.json()["detail"].lower() and took < TIMEOUT + 1.5


async def test_nothing_is_sent_to_a_phone_that_is_no_hosts(
    client: httpx.AsyncClient, aliyun: tuple[FakeAliyunSms, FakeServer]
) -> None:
    fake, _ = aliyun
    await ok(await client.post("/api/hosts", json={"name": "Mei", "phone": "13800138000"}), 201)
    for phone in ("13800138000", "13900139000"):
        r = await client.post("/api/host-sign-in/code", json={"phone": phone})
        assert (r.status_code, r.json()) == (202, {"sent": True})
    assert [m.phone_numbers for m in fake.sent] == ["13800138000"]
    (code,) = fake.codes_sent_to("13800138000")
    session = await ok(await client.post("/api/host-sign-in", json={"phone": "13800138000", "code": code}))
    assert session["token"].startswith("s.")


@pytest.mark.parametrize(
    "missing",
    ["aliyun_access_key_id", "aliyun_access_key_secret", "aliyun_sms_sign_name", "aliyun_sms_template_code"],
)
def test_an_incomplete_set_up_refuses_to_start(missing: str, tmp_path: Path) -> None:
    fake = FakeAliyunSms()
    values = aliyun_settings(fake, "dysmsapi.aliyuncs.com", **{missing: None})
    settings = make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/1", tmp_path, **values)
    with pytest.raises(ValueError, match=f"LIVECART_SMS_PROVIDER=aliyun needs LIVECART_{missing.upper()}$"):
        create_app(settings)


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://sms.example", "https://sms.example/some/path", "http://", "sms.example:port", "https://user@"],
)
def test_an_endpoint_that_is_no_host_refuses_to_start(endpoint: str, tmp_path: Path) -> None:
    values = aliyun_settings(FakeAliyunSms(), endpoint)
    settings = make_settings("sqlite+aiosqlite://", "redis://127.0.0.1:6379/1", tmp_path, **values)
    with pytest.raises(ValueError, match="LIVECART_ALIYUN_SMS_ENDPOINT"):
        create_app(settings)
