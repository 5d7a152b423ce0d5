"""Operator surface: health, readiness, metrics, OpenAPI, request ids, reconcile and the embedded Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, buy, join, new_sale, ok, pay


async def test_health_ready_and_request_id(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "sql": "ok"}
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert (await client.get("/healthz")).headers["x-request-id"].startswith("req_")


async def test_metrics_count_buys_by_result(client: httpx.AsyncClient, server: LiveServer) -> None:
    sale = await new_sale(client, stock=1)
    a, b = await join(client, sale, "A"), await join(client, sale, "B")
    assert (await buy(client, sale.card_id, a)).status_code == 201
    assert (await buy(client, sale.card_id, b)).status_code == 409
    await server.state.sweeper.sweep()
    text = (await client.get("/metrics")).text
    assert 'livecart_buy_total{result="ok"} 1.0' in text
    assert 'livecart_buy_total{result="sold_out"} 1.0' in text
    assert "livecart_buy_seconds_bucket" in text
    assert "livecart_active_reservations 1.0" in text
    assert "livecart_sweeper_runs_total" in text and "livecart_reconcile_runs_total" in text


async def test_openapi_documents_every_api_route(client: httpx.AsyncClient, server: LiveServer) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for route in server.app.routes:
        path = getattr(route, "path_format", "")
        if not path.startswith("/api/"):
            continue
        for method in route.methods - {"HEAD"}:  # type: ignore[attr-defined]
            assert (path, method.lower()) in documented, f"{method} {path} missing from /openapi.json"
    buy_op = spec["paths"]["/api/cards/{card}/orders"]["post"]
    assert {p["name"] for p in buy_op["parameters"]} == {"card", "Idempotency-Key"}
    assert {"201", "200", "409", "422"} <= set(buy_op["responses"])


async def test_redis_data_loss_is_rebuilt_from_sql(client: httpx.AsyncClient, server: LiveServer) -> None:
    sale = await new_sale(client, stock=10, per_user_limit=5)
    a, b = await join(client, sale, "A"), await join(client, sale, "B")
    paid = await ok(await buy(client, sale.card_id, a, quantity=2), 201)
    await pay(client, paid["id"], a)
    held = await ok(await buy(client, sale.card_id, b, quantity=3, key="b-1"), 201)

    r = redis.Redis.from_url(server.settings.redis_url or "")
    r.flushdb()  # Redis restarted without persistence: every sale is gone
    r.close()
    for _ in range(100):  # the sweeper notices the missing sentinel and rebuilds from SQL
        card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
        if card["stock_left"] == 5:
            break
        await asyncio.sleep(0.05)
    assert card["stock_left"] == 10 - 2 - 3
    replay = await buy(client, sale.card_id, b, quantity=3, key="b-1")  # idempotency survives the rebuild
    assert replay.status_code == 200 and replay.json()["id"] == held["id"]
    assert (await buy(client, sale.card_id, b, quantity=3)).json()["error"] == "limit_exceeded"

    first = await server.state.reconciler.reconcile_all()
    second = await server.state.reconciler.reconcile_all()
    assert [r.drift for r in second] == [0] * len(second) and not any(r.oversold for r in first + second)


def test_reconcile_cli_is_idempotent(redis_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "LIVECART_REDIS_URL": redis_url,
        "LIVECART_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "livecart.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    runs = [
        subprocess.run([*cli, "reconcile"], env=env, check=True, capture_output=True, text=True) for _ in "ab"
    ]
    for run in runs:
        assert json.loads(run.stdout) == {"cards": [], "oversold": False}
    made = subprocess.run([*cli, "create-host", "Mia"], env=env, check=True, capture_output=True, text=True)
    host = json.loads(made.stdout)
    assert host["name"] == "Mia" and host["token"].startswith("s.")  # a host session's token


async def test_embedded_redis_persists_across_restarts(tmp_path: Path) -> None:
    """With no LIVECART_REDIS_URL the app runs its own redis-server with AOF; a reservation survives."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", None, tmp_path)  # type: ignore[arg-type]
    assert settings.redis_url is None
    async with LiveServer(settings) as live, httpx.AsyncClient(base_url=live.url) as c:
        sale = await new_sale(c, stock=5)
        a = await join(c, sale, "A")
        order = await ok(await buy(c, sale.card_id, a, key="k"), 201)
    assert (tmp_path / "data" / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "data" / "redis").glob("appendonly*")
    )
    async with LiveServer(settings) as live, httpx.AsyncClient(base_url=live.url) as c:
        card = await ok(await c.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
        assert card["stock_left"] == 4
        again = await buy(c, sale.card_id, a, key="k")
        assert again.status_code == 200 and again.json()["id"] == order["id"]


@pytest.mark.parametrize("env", ["prod"])
def test_prod_refuses_the_default_secret(env: str) -> None:
    from pydantic import ValidationError

    from base.settings import Settings

    with pytest.raises(ValidationError, match="LIVECART_SECRET_KEY"):
        Settings(env=env)
    assert not Settings(env="prod", secret_key="s3cret-value-" + "x" * 32).signup_open
