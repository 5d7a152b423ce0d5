"""The migrations on SQLite and PostgreSQL: the schema they build is the one the models declare, and v1 data
moves to v2 as issue 11 says — rooms and viewers of v1 stay what they were (guest rooms, guest viewers), so
a show in progress during the upgrade goes on; new rooms are verified; a v1 viewer token still buys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

import identity.models
import live.models
import realtime.models
import shop.models
from base import db
from base.db import Base
from livecart.schema import alembic_config
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.shop_api import Buyer, auth, buy, ok

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
    url = await fresh_database(kind, tmp_path)
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
    url = await fresh_database(kind, tmp_path)
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
