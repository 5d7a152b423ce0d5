"""Alembic environment. Used programmatically (``livecart.schema.migrate``) or by ``alembic`` with
``-x url=...`` / ``LIVECART_DATABASE_URL``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import identity.models
import live.models
import realtime.models
import shop.models
from base.db import Base, create_engine
from base.settings import Settings

assert (
    identity.models and live.models and realtime.models and shop.models
)  # register the tables on Base.metadata
target_metadata = Base.metadata
config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url or Settings().database_url)
    async with engine.begin() as conn:
        await conn.run_sync(run_on)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    asyncio.run(run_online())
