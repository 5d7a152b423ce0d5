"""The room websocket against the real app, Redis and SQL: snapshot first, live cards and stock, replay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import LiveServer
from tests.shop_api import auth, buy, join, new_sale, ok

ORIGIN = "http://127.0.0.1:8000"  # the origin of the test settings' base_url


def ws_url(server: LiveServer, room_id: str, token: str, **params: Any) -> str:
    query = "&".join([f"token={token}", *(f"{k}={v}" for k, v in params.items())])
    return f"ws://127.0.0.1:{server.port}/ws/rooms/{room_id}?{query}"


async def next_frame(ws: Any, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if kind is None or frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


async def test_snapshot_first_then_live_stock_and_cards(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5, per_user_limit=2)
    viewer = await join(client, sale, "Ann")
    async with websockets.connect(ws_url(server, sale.room_id, viewer.token), origin=ORIGIN) as ws:  # type: ignore[arg-type]
        snapshot = await next_frame(ws)
        assert snapshot["type"] == "snapshot" and snapshot["room"]["id"] == sale.room_id
        assert [c["stock_left"] for c in snapshot["cards"]] == [5]
        assert "invite_token" not in snapshot["room"]
        await ok(await buy(client, sale.card_id, viewer, quantity=2), 201)
        stock = await next_frame(ws, "stock")
        while stock["stock_left"] != 3:  # an earlier value (the sale being set up) may come first
            stock = await next_frame(ws, "stock")
        assert stock == {"type": "stock", "seq": stock["seq"], "card_id": sale.card_id, "stock_left": 3}
        assert stock["seq"] > snapshot["seq"]
        h = auth(sale.host_token)
        await ok(await client.patch(f"/api/cards/{sale.card_id}", json={"price": 500}, headers=h))
        card = await next_frame(ws, "card")
        assert card["card"]["price"] == 500 and card["seq"] > stock["seq"]
        last = card["seq"]
        epoch = snapshot["epoch"]
    # Missed events are replayed after `since`, in order, with nothing before them.
    await ok(await client.post(f"/api/cards/{sale.card_id}/close", json={}, headers=h))
    async with websockets.connect(  # type: ignore[arg-type]
        ws_url(server, sale.room_id, viewer.token, since=last, epoch=epoch), origin=ORIGIN
    ) as ws:
        replayed = await next_frame(ws)
        assert replayed["type"] == "card" and replayed["seq"] == last + 1
        assert replayed["card"]["status"] == "closed"
    # A position from another epoch gets a fresh snapshot.
    async with websockets.connect(  # type: ignore[arg-type]
        ws_url(server, sale.room_id, viewer.token, since=last, epoch="stale"), origin=ORIGIN
    ) as ws:
        assert (await next_frame(ws))["type"] == "snapshot"


@pytest.mark.parametrize(
    ("token", "code"), [("garbage", 4401), ("other_room", 4403)], ids=["bad-token", "other-room"]
)
async def test_refused_connections_get_their_close_code(
    client: httpx.AsyncClient, server: LiveServer, token: str, code: int
) -> None:
    sale = await new_sale(client, stock=1)
    other = await new_sale(client, stock=1)
    tokens = {"garbage": "v.nope", "other_room": (await join(client, other, "Bob")).token}
    async with websockets.connect(ws_url(server, sale.room_id, tokens[token]), origin=ORIGIN) as ws:  # type: ignore[arg-type]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
