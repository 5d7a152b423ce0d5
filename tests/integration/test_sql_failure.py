"""When SQL cannot take an order: 503, no acknowledgement, the stock goes back, a retry succeeds later."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, buy, join, new_sale, ok


async def test_sql_outage_gives_503_and_releases_the_reservation(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=1)
    a = await join(client, sale, "A")
    engine = server.state.engine
    async with engine.begin() as conn:  # the orders table disappears: every insert fails for real
        await conn.execute(text("ALTER TABLE orders RENAME TO orders_away"))
    try:
        failed = await buy(client, sale.card_id, a, key="k")
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"] == "unavailable" and failed.headers["retry-after"] == "1"
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE orders_away RENAME TO orders"))
    # The SQL read after the failure also failed (no table), so the orphan sweeper returns the unit once
    # the grace period (3 s in tests) has passed; a retry with the same key adopts it even sooner.
    retried = await buy(client, sale.card_id, a, key="k")
    assert retried.status_code in (200, 201), retried.text
    order = retried.json()
    card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
    assert card["stock_left"] == 0
    rows = await ok(await client.get(f"/api/rooms/{sale.room_id}/orders", headers=auth(sale.host_token)))
    assert [r["id"] for r in rows] == [order["id"]]


@contextlib.asynccontextmanager
async def inserts_refused(engine: AsyncEngine) -> AsyncIterator[None]:
    """A trigger that rejects every new order row: the insert fails, while SQL stays readable (so the buy
    path can see that no row was written)."""
    if engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER refuse_orders BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        drop = ["DROP TRIGGER refuse_orders"]
    else:
        create = [
            "CREATE FUNCTION refuse_orders() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
            "CREATE TRIGGER refuse_orders BEFORE INSERT ON orders FOR EACH ROW "
            "EXECUTE FUNCTION refuse_orders()",
        ]
        drop = ["DROP TRIGGER refuse_orders ON orders", "DROP FUNCTION refuse_orders()"]
    async with engine.begin() as conn:
        for statement in create:
            await conn.execute(text(statement))
    try:
        yield
    finally:
        async with engine.begin() as conn:
            for statement in drop:
                await conn.execute(text(statement))


async def test_a_refused_insert_puts_the_unit_back_at_once(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The order row is refused but SQL can be read: the buy path sees there is no row and returns the unit
    before it answers 503 (``OrderService._release_unwritten``), with no retry and no sweeper (this server
    runs none): nothing waits for the orphan grace. The key is forgotten with it, so a retry buys afresh."""
    settings = make_settings(database_url, redis_url, tmp_path)
    async with (
        LiveServer(settings, sweeper=False) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        sale = await new_sale(client, stock=1)
        a = await join(client, sale, "A")
        async with inserts_refused(server.state.engine):
            failed = await buy(client, sale.card_id, a, key="k")
            assert failed.status_code == 503, failed.text
            assert failed.json()["error"] == "unavailable"
            card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
            assert (card["stock_left"], card["status"]) == (1, "open"), "the unit was not put back"
            state = await server.state.inventory.sale(sale.card_id)
            assert state is not None and state.stock_left == 1
            assert await server.state.inventory.reservations(sale.card_id) == {}
        rows = await ok(await client.get(f"/api/rooms/{sale.room_id}/orders", headers=auth(sale.host_token)))
        assert rows == []
        retried = await ok(await buy(client, sale.card_id, a, key="k"), 201)
        card = await ok(await client.get(f"/api/cards/{sale.card_id}", headers=auth(a.token)))
        assert card["stock_left"] == 0
        rows = await ok(await client.get(f"/api/rooms/{sale.room_id}/orders", headers=auth(sale.host_token)))
        assert [r["id"] for r in rows] == [retried["id"]]
