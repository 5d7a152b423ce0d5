"""The migrations on SQLite and PostgreSQL: the schema they build is the one the models declare, and v1 data
moves to v2 as issue 11 says — rooms and viewers of v1 stay what they were (guest rooms, guest viewers), so
a show in progress during the upgrade goes on; new rooms are verified; a v1 viewer token still buys."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

import identity.models
import live.models
import realtime.models
import shop.models
from base import db
from base.db import Base
from livecart.schema import alembic_config
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.shop_api import Buyer, auth, buy, ok, pay

assert identity.models and live.models and realtime.models and shop.models


async def upgrade(url: str, revision: str) -> None:
    engine = db.create_engine(url)

    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_head_is_what_the_models_declare(kind: str, tmp_path: Path) -> None:
    url = await fresh_database(kind, tmp_path, migrated=False)
    await upgrade(url, "head")
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == [], diff


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_v1_rooms_and_viewers_become_guests(kind: str, tmp_path: Path, redis_url: str) -> None:
    url = await fresh_database(kind, tmp_path, migrated=False)
    await upgrade(url, "0003")
    engine = db.create_engine(url)
    try:
        async with engine.begin() as conn:  # a v1 show: a host, a live room, a viewer, a card on sale
            await conn.execute(text("INSERT INTO hosts (id, name, created_ms) VALUES ('hst_1', 'Mei', 1)"))
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, host_id, title, status, invite_token, created_ms, started_ms) "
                    "VALUES ('rm_1', 'hst_1', 'v1 show', 'live', 'inv1', 1, 2)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO viewers (id, room_id, name, share_code, created_ms) "
                    "VALUES ('vw_1', 'rm_1', 'Ann', 'share1', 3)"
                )
            )
    finally:
        await engine.dispose()
    await upgrade(url, "head")

    async with LiveServer(make_settings(url, redis_url, tmp_path)) as server:
        async with server.state.sessions() as session:
            room = await session.get(live.models.Room, "rm_1")
            viewer = await session.get(live.models.Viewer, "vw_1")
        assert room.sign_in == "guest" and viewer.customer_id is None
        signer = server.state.signer
        v1_token = "v." + str(signer._viewer.dumps(["vw_1", "rm_1", None]))  # as v1 signed it
        async with httpx.AsyncClient(base_url=server.url) as client:
            # The v1 host signs in again (README: `livecart create-session hst_1` does this).
            async with server.state.sessions() as session, session.begin():
                new = await server.state.auth.host_sessions.start(session, "hst_1", label="after upgrade")
            h = auth(new.token)
            product = await ok(
                await client.post("/api/products", json={"name": "Tea", "price": 100}, headers=h)
            )
            card = await ok(
                await client.post(
                    "/api/rooms/rm_1/cards",
                    json={"product_id": product["id"], "price": 100, "stock": 3},
                    headers=h,
                )
            )
            await ok(await client.post(f"/api/cards/{card['id']}/open", json={}, headers=h))
            await ok(await buy(client, card["id"], Buyer("vw_1", v1_token, "share1")), 201)
            guest_join = await client.post("/api/rooms/rm_1/join", json={"invite": "inv1", "name": "Bo"})
            assert guest_join.status_code == 201  # the v1 room still admits guests
            new_room = await ok(await client.post("/api/rooms", json={"title": "v2 show"}, headers=h), 201)
            assert new_room["sign_in"] == "verified"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_v1_attribution_becomes_host_wide_bindings_and_the_ledger_keeps_its_sums(
    kind: str, tmp_path: Path, redis_url: str
) -> None:
    """Before 0005: customer C joined show 1 through P's share link and, a day later, show 2 through Q's;
    P earned on C's paid order and earned-then-lost on a refunded one; a guest G came through P's link too.
    After: C is bound to P (first touch), G to nobody; every ledger row has its host and P's customer; the
    refunded order has its refund, its clawback names it; the report sums what the v1 ledger held, and C's
    next order accrues to P."""
    url = await fresh_database(kind, tmp_path, migrated=False)
    await upgrade(url, "0004")
    now = int(time.time() * 1000)
    t1, t2 = now - 2 * 86_400_000, now - 86_400_000
    engine = db.create_engine(url)
    customer = (
        "INSERT INTO customers (id, host_id, phone, created_ms, last_sign_in_ms) "
        "VALUES (:id, 'hst_1', :p, 1, 1)"
    )
    room = (
        "INSERT INTO rooms (id, host_id, title, status, invite_token, sign_in, created_ms) "
        "VALUES (:id, 'hst_1', 'show', 'live', :invite, 'verified', 1)"
    )
    viewer = (
        "INSERT INTO viewers (id, room_id, name, share_code, referrer_id, customer_id, created_ms) "
        "VALUES (:id, :room, :name, :share, :ref, :cus, :t)"
    )
    order = (
        "INSERT INTO orders (id, card_id, room_id, buyer_id, referrer_id, idempotency_key, quantity, "
        "unit_price, amount, status, restocked, late, expires_ms, created_ms, paid_ms, closed_ms) "
        "VALUES (:id, 'crd_1', 'rm_1', 'vw_c', 'vw_p', :key, 1, 1000, 1000, :status, false, false, "
        ":t, :t, :t, :closed)"
    )
    commission = (
        "INSERT INTO commissions (id, order_id, promoter_id, room_id, kind, amount, created_ms) "
        "VALUES (:id, :order, 'vw_p', 'rm_1', :kind, :amount, :t)"
    )
    rows: list[tuple[str, dict[str, object]]] = [
        ("INSERT INTO hosts (id, name, created_ms) VALUES ('hst_1', 'Mei', 1)", {}),
        *((customer, {"id": c, "p": f"+86139000000{i}"}) for i, c in enumerate(("cus_p", "cus_q", "cus_c"))),
        *((room, {"id": r, "invite": f"inv_{r}"}) for r in ("rm_1", "rm_2")),
        *(
            (viewer, {"id": v, "room": r, "name": v, "share": f"sh_{v}", "ref": ref, "cus": cus, "t": t})
            for v, r, ref, cus, t in (
                ("vw_p", "rm_1", None, "cus_p", t1 - 10),
                ("vw_c", "rm_1", "vw_p", "cus_c", t1),
                ("vw_g", "rm_1", "vw_p", None, t1),
                ("vw_q", "rm_2", None, "cus_q", t2 - 10),
                ("vw_c2", "rm_2", "vw_q", "cus_c", t2),
            )
        ),
        (
            "INSERT INTO products (id, host_id, name, price, created_ms) "
            "VALUES ('prd_1', 'hst_1', 'Tea', 1000, 1)",
            {},
        ),
        (
            "INSERT INTO cards (id, room_id, product_id, price, stock_total, per_user_limit, "
            "reserve_seconds, status, created_ms) "
            "VALUES ('crd_1', 'rm_1', 'prd_1', 1000, 10, 5, 300, 'closed', 1)",
            {},
        ),
        (order, {"key": "k1", "id": "ord_paid", "status": "paid", "t": t1 + 5, "closed": None}),
        (order, {"key": "k2", "id": "ord_back", "status": "refunded", "t": t1 + 5, "closed": t1 + 9}),
        (commission, {"id": "com_1", "order": "ord_paid", "kind": "accrual", "amount": 100, "t": t1 + 6}),
        (commission, {"id": "com_2", "order": "ord_back", "kind": "accrual", "amount": 100, "t": t1 + 6}),
        (commission, {"id": "com_3", "order": "ord_back", "kind": "clawback", "amount": -100, "t": t1 + 9}),
    ]
    try:
        async with engine.begin() as conn:
            for sql, params in rows:
                await conn.execute(text(sql), params)
    finally:
        await engine.dispose()
    await upgrade(url, "head")

    async with LiveServer(make_settings(url, redis_url, tmp_path)) as server:
        async with server.state.sessions() as session:
            bound = (await session.execute(select(live.models.Binding))).scalars().all()
            ledger = (
                (await session.execute(select(shop.models.Commission).order_by(shop.models.Commission.id)))
                .scalars()
                .all()
            )
            refunds = (await session.execute(select(shop.models.Refund))).scalars().all()
            back = await session.get(shop.models.Order, "ord_back")
        assert [(b.customer_id, b.promoter_id, b.seq, b.bound_ms, b.room_id) for b in bound] == [
            ("cus_c", "cus_p", 1, t1, "rm_1")
        ]
        assert [(c.host_id, c.promoter_customer_id, c.promoter_id) for c in ledger] == [
            ("hst_1", "cus_p", "vw_p")
        ] * 3
        assert [(r.order_id, r.amount) for r in refunds] == [("ord_back", 1000)]
        assert ledger[2].refund_id == refunds[0].id and back is not None and back.refunded_amount == 1000
        async with httpx.AsyncClient(base_url=server.url) as client:
            async with server.state.sessions() as session, session.begin():
                new = await server.state.auth.host_sessions.start(session, "hst_1", label="after upgrade")
            h = auth(new.token)
            (line,) = await ok(await client.get("/api/commissions", headers=h))
            assert (line["promoter_id"], line["kind"], line["accrued"], line["clawed_back"], line["net"]) == (
                "cus_p",
                "customer",
                200,
                100,
                100,
            )
            card = await ok(
                await client.post(
                    "/api/rooms/rm_2/cards", json={"product_id": "prd_1", "price": 500, "stock": 3}, headers=h
                )
            )
            await ok(await client.post(f"/api/cards/{card['id']}/open", json={}, headers=h))
            token = server.state.signer.viewer_token("vw_c2", "rm_2", "vw_q", "cus_c")
            order = await ok(await buy(client, card["id"], Buyer("vw_c2", token, "sh_vw_c2")), 201)
            await pay(client, order["id"], Buyer("vw_c2", token, "sh_vw_c2"))
        async with server.state.sessions() as session:
            accrued = (
                await session.execute(
                    select(shop.models.Commission).where(shop.models.Commission.order_id == order["id"])
                )
            ).scalar_one()
        assert (accrued.promoter_customer_id, accrued.amount) == ("cus_p", 50), (
            "not P's: the binding was lost"
        )
