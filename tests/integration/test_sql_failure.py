"""When SQL cannot take an order: 503, no acknowledgement, the stock goes back, a retry succeeds later."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.conftest import LiveServer
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
