"""The room websocket against the real app, Redis and SQL: snapshot first, live cards and stock, replay.

One test body runs over every broker (``broker``: Redis and memory, as litestar's channels tests run over
every backend). The few tests that are about Redis itself (several processes sharing a room, Redis losing a
room) run on the Redis broker alone and say so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from redis.asyncio import Redis
from sqlalchemy import select

from realtime.broker import Broker, Later
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import RedisBroker
from realtime.models import RoomViewer
from realtime.sockets import AsgiPeer
from tests.conftest import LiveServer, make_settings
from tests.shop_api import auth, buy, join, new_sale, ok

ORIGIN = "http://127.0.0.1:8000"  # the origin of the test settings' base_url


@pytest.fixture(params=["redis", "memory"])
def broker(request: pytest.FixtureRequest) -> str:
    """The ``LIVECART_REALTIME_BROKER`` of the server under test: every test here runs with each."""
    return str(request.param)


@pytest.fixture
async def server(database_url: str, redis_url: str, tmp_path: Path, broker: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(database_url, redis_url, tmp_path, realtime_broker=broker)
    async with LiveServer(settings) as live:
        yield live


def bare_broker(broker: str, redis: Redis, *, history: int) -> Broker:
    """A broker of that kind on its own (no app around it)."""
    if broker == "memory":
        return MemoryBroker(history=history)
    return RedisBroker(redis, history=history, block_ms=50)


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
        stock: dict[str, Any] = {}
        order: dict[str, Any] = {}
        while stock.get("stock_left") != 3 or not order:  # an earlier stock value (the set-up) may come first
            frame = await next_frame(ws)
            if frame["type"] == "stock":
                stock = frame
            elif frame["type"] == "order":
                order = frame
        assert stock == {
            "type": "stock", "seq": stock["seq"], "card_id": sale.card_id, "stock_left": 3, "ts": stock["ts"]
        }  # fmt: skip
        assert abs(stock["ts"] - time.time() * 1000) < 5000  # the server's clock when it read the value
        assert stock["seq"] > snapshot["seq"]
        # The order goes to the buyer alone, outside the room's sequence.
        assert order["order"]["buyer_id"] == viewer.viewer_id and "seq" not in order
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


async def test_only_the_buyer_gets_their_order_and_viewers_are_counted(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5)
    ann, bob = await join(client, sale, "Ann"), await join(client, sale, "Bob")
    async with (
        websockets.connect(ws_url(server, sale.room_id, ann.token), origin=ORIGIN) as ws_ann,  # type: ignore[arg-type]
        websockets.connect(ws_url(server, sale.room_id, bob.token), origin=ORIGIN) as ws_bob,  # type: ignore[arg-type]
        websockets.connect(ws_url(server, sale.room_id, bob.token), origin=ORIGIN) as ws_bob2,  # type: ignore[arg-type]
    ):
        for ws in (ws_ann, ws_bob, ws_bob2):
            assert (await next_frame(ws))["type"] == "snapshot"
        viewers = await next_frame(ws_ann, "viewers", timeout=5)
        while viewers["count"] != 2:  # Bob twice is one viewer
            viewers = await next_frame(ws_ann, "viewers", timeout=5)
        stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
        assert (stats["viewers_now"], stats["viewers_unique"], stats["connections_now"]) == (2, 2, 3)
        order = await ok(await buy(client, sale.card_id, bob), 201)
        for ws in (ws_bob, ws_bob2):
            assert (await next_frame(ws, "order"))["order"]["id"] == order["id"]
        await next_frame(ws_ann, "stock")
        with pytest.raises(TimeoutError):
            await next_frame(ws_ann, "order", timeout=0.5)


async def test_the_buyer_is_told_when_the_sweeper_expires_their_order(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=3, reserve_seconds=1)
    ann = await join(client, sale, "Ann")
    async with websockets.connect(ws_url(server, sale.room_id, ann.token), origin=ORIGIN) as ws:  # type: ignore[arg-type]
        assert (await next_frame(ws))["type"] == "snapshot"
        order = await ok(await buy(client, sale.card_id, ann), 201)
        assert (await next_frame(ws, "order"))["order"]["status"] == "reserved"
        expired = await next_frame(ws, "order", timeout=5)
        assert (expired["order"]["id"], expired["order"]["status"]) == (order["id"], "expired")
        stock = await next_frame(ws, "stock", timeout=3)
        while stock["stock_left"] != 3:  # the unit is back on sale, and viewers see it
            stock = await next_frame(ws, "stock", timeout=3)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 4400),
        ('{"type": "shout", "text": "hi"}', 4400),
        ('{"type": "chat", "text": ""}', 4400),
        ('{"type": "chat", "text": "' + "x" * 501 + '"}', 4400),
        ('{"type": "chat", "text": "hi", "room": "rm_other"}', 4403),
        ('{"type": "chat", "text": "' + "y" * 5000 + '"}', 1009),
    ],
    ids=["garbage", "unknown-type", "empty-chat", "chat-too-long", "wrong-room", "oversize-frame"],
)
async def test_hostile_frames_close_only_their_sender(
    client: httpx.AsyncClient, server: LiveServer, frame: str, code: int
) -> None:
    sale = await new_sale(client, stock=3)
    eve, ann = await join(client, sale, "Eve"), await join(client, sale, "Ann")
    async with (
        websockets.connect(ws_url(server, sale.room_id, eve.token), origin=ORIGIN) as bad,  # type: ignore[arg-type]
        websockets.connect(ws_url(server, sale.room_id, ann.token), origin=ORIGIN) as control,  # type: ignore[arg-type]
    ):
        await next_frame(bad)
        await next_frame(control)
        await bad.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(bad, "never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        await control.send('{"type": "chat", "text": "still here"}')
        chat = await next_frame(control, "chat")
        assert (chat["from"], chat["text"]) == ("Ann", "still here")


async def test_a_foreign_origin_is_refused_before_the_upgrade(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """SPEC §13: a foreign page is refused (403, before the upgrade); a page of this server at whatever
    address it was opened, and a client that sends no Origin (not a browser), are accepted."""
    sale = await new_sale(client, stock=1)
    viewer = await join(client, sale, "Ann")
    url = ws_url(server, sale.room_id, viewer.token)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    for origin in (None, f"http://127.0.0.1:{server.port}"):
        async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            assert (await next_frame(ws))["type"] == "snapshot"


async def test_a_viewer_who_stops_reading_is_closed_4408_and_nobody_else_misses_a_frame(
    database_url: str, redis_url: str, tmp_path: Any, broker: str
) -> None:
    settings = make_settings(
        database_url, redis_url, tmp_path, ws_max_backlog_bytes=256 * 1024, realtime_broker=broker
    )
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sale = await new_sale(client, stock=3)
        slow_v, fast_v = await join(client, sale, "Slow"), await join(client, sale, "Fast")
        async with (
            websockets.connect(ws_url(server, sale.room_id, slow_v.token), origin=ORIGIN) as slow,  # type: ignore[arg-type]
            websockets.connect(  # type: ignore[arg-type]
                ws_url(server, sale.room_id, fast_v.token), origin=ORIGIN, max_queue=None
            ) as fast,
        ):
            await next_frame(slow)
            first = await next_frame(fast)
            slow.transport.pause_reading()  # stops reading: the kernel buffers fill, then the server's
            sent = 0
            text = "z" * 4000
            for _ in range(3000):  # about 12 MB of chat, published the way the app publishes it
                await server.state.realtime.broker.publish(
                    sale.room_id, "chat", {"from": "Host", "text": text}, now_ms=0
                )
                sent += 1
            seen = 0
            last = first["seq"]
            while seen < sent:
                frame = await next_frame(fast, "chat", timeout=10)
                assert frame["seq"] > last  # in order, nothing twice
                last = frame["seq"]
                seen += 1
            slow.transport.resume_reading()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await slow.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
            assert server.state.realtime.hub.count() == 1  # the slow one is gone from the hub


async def test_two_processes_share_a_room(database_url: str, redis_url: str, tmp_path: Any) -> None:
    """A sale made through app A moves the counter of a viewer connected to app B (same Redis and SQL).

    Redis broker only: sharing a room across processes is what it is for (the memory broker is refused
    with several workers)."""
    settings = make_settings(database_url, redis_url, tmp_path)
    async with (
        LiveServer(settings) as a,
        LiveServer(settings) as b,
        httpx.AsyncClient(base_url=a.url, timeout=30) as client_a,
    ):
        sale = await new_sale(client_a, stock=4)
        buyer, watcher = await join(client_a, sale, "Buyer"), await join(client_a, sale, "Watcher")
        async with websockets.connect(ws_url(b, sale.room_id, watcher.token), origin=ORIGIN) as ws:  # type: ignore[arg-type]
            assert (await next_frame(ws))["type"] == "snapshot"
            await ok(await buy(client_a, sale.card_id, buyer), 201)
            stock = await next_frame(ws, "stock")
            while stock["stock_left"] != 3:
                stock = await next_frame(ws, "stock")


async def test_viewer_count_is_exact_after_clients_die(
    database_url: str, redis_url: str, tmp_path: Any, broker: str
) -> None:
    """Six viewers; three sockets are cut without a close (kill -9 of a phone): within the presence
    freshness (2.5 reports) the count is exactly three, and it never counted a socket twice."""
    settings = make_settings(database_url, redis_url, tmp_path, realtime_broker=broker)
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sale = await new_sale(client, stock=1)
        viewers = [await join(client, sale, f"V{i}") for i in range(6)]
        sockets = [
            await websockets.connect(ws_url(server, sale.room_id, v.token), origin=ORIGIN)  # type: ignore[arg-type]
            for v in viewers
        ]
        try:
            h = auth(sale.host_token)

            async def now() -> int:
                stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=h))
                return int(stats["viewers_now"])

            async with asyncio.timeout(5):
                while await now() != 6:
                    await asyncio.sleep(0.1)
            for ws in sockets[:3]:
                ws.transport.abort()  # no close frame, no FIN handshake: the connection just dies
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(6):
                while await now() != 3:
                    await asyncio.sleep(0.1)
            # freshness (2.5 presence reports) + one report + the poll: well inside ping interval + timeout
            assert asyncio.get_running_loop().time() - started <= 4.5
            stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=h))
            assert (stats["viewers_now"], stats["viewers_peak"], stats["viewers_unique"]) == (3, 6, 6)
            assert stats["connections_now"] == 3
        finally:
            for ws in sockets[3:]:
                await ws.close()
        async with asyncio.timeout(5):
            while server.state.realtime.hub.count():
                await asyncio.sleep(0.05)
        assert not server.state.realtime.broker._watched  # no room left watched: nothing leaked
        # Invariant 9: the peak and the unique viewers are in SQL, so they survive Redis losing its data.
        await server.state.redis.flushdb()
        stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=h))
        assert (stats["viewers_now"], stats["viewers_peak"], stats["viewers_unique"]) == (0, 6, 6)
        async with server.state.sessions() as session:
            watched = await session.scalars(
                select(RoomViewer.viewer_id).where(RoomViewer.room_id == sale.room_id)
            )
            assert sorted(watched) == sorted(v.viewer_id for v in viewers)


async def test_stock_frames_coalesce_and_the_last_one_is_the_truth(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """Two hundred buys in a burst: a viewer gets at most 10 stock frames per second for the card, and
    within a second of the last buy its last frame equals the stock in Redis."""
    sale = await new_sale(client, stock=1000, per_user_limit=1000)
    buyer, watcher = await join(client, sale, "Buyer"), await join(client, sale, "Watcher")
    async with websockets.connect(ws_url(server, sale.room_id, watcher.token), origin=ORIGIN) as ws:  # type: ignore[arg-type]
        await next_frame(ws)
        seen: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def watch() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                try:
                    frame = await next_frame(ws, "stock", timeout=0.2)
                except TimeoutError:
                    continue
                seen.append((loop.time(), frame["stock_left"]))

        watching = asyncio.create_task(watch())
        gate = asyncio.Semaphore(32)

        async def one() -> None:
            async with gate:
                await ok(await buy(client, sale.card_id, buyer), 201)

        await asyncio.gather(*(one() for _ in range(200)))
        done = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)
        stop.set()
        await watching
        state = await server.state.inventory.sale(sale.card_id)
        assert state is not None and state.stock_left == 800
        assert seen and seen[-1][1] == 800, seen[-5:]
        assert seen[-1][0] - done <= 1.0
        for t, _ in seen:  # no one-second window holds more than 10 frames (plus one at its edge)
            assert sum(1 for u, _ in seen if t <= u < t + 1.0) <= 11, seen


async def test_connect_and_disconnect_churn_leaks_nothing(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=1)
    viewer = await join(client, sale, "Churn")
    await asyncio.sleep(0.3)
    tasks_before = len(asyncio.all_tasks())
    for i in range(40):
        ws = await websockets.connect(ws_url(server, sale.room_id, viewer.token), origin=ORIGIN)  # type: ignore[arg-type]
        await next_frame(ws)
        if i % 2:
            await ws.close()
        else:
            ws.transport.abort()
    async with asyncio.timeout(5):
        while server.state.realtime.hub.count() or len(asyncio.all_tasks()) > tasks_before:
            await asyncio.sleep(0.05)
    assert not server.state.realtime.broker._watched


async def test_a_viewer_gone_during_its_admission_leaves_nothing_behind(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """Clients that send the upgrade and vanish at once (a phone losing signal) are never counted and leave
    no connection in the hub: their admission ends quietly, whatever point it had reached."""
    sale = await new_sale(client, stock=1)
    viewers = [await join(client, sale, f"Gone {i}") for i in range(5)]
    path = f"/ws/rooms/{sale.room_id}"
    for i in range(60):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"GET {path}?token={viewers[i % 5].token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
        )
        await writer.drain()
        if i % 3 == 1:
            await asyncio.sleep(0.002 * (i % 7))  # vanish at different points of the admission
        writer.transport.abort()
    async with asyncio.timeout(5):
        while server.state.realtime.hub.count():
            await asyncio.sleep(0.05)
    await asyncio.sleep(2.5)  # a presence report or two
    stats = await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))
    assert (stats["viewers_now"], stats["connections_now"]) == (0, 0)
    assert not server.state.realtime.broker._watched


@pytest.mark.parametrize("broker", ["redis"])  # Redis broker only: about Redis restarting empty
async def test_a_room_redis_lost_gets_a_snapshot_not_a_gap(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=2)
    viewer = await join(client, sale, "Ann")
    async with websockets.connect(ws_url(server, sale.room_id, viewer.token), origin=ORIGIN) as ws:  # type: ignore[arg-type]
        snapshot = await next_frame(ws)
    redis = server.state.redis
    for key in await redis.keys("{room:" + sale.room_id + "}:*"):
        await redis.delete(key)  # the room's stream, seq and epoch are gone (Redis restarted empty)
    await server.state.realtime.publisher.room_changed(
        sale.room_id, {"id": sale.room_id}
    )  # a new epoch begins
    url = ws_url(server, sale.room_id, viewer.token, since=snapshot["seq"], epoch=snapshot["epoch"])
    async with websockets.connect(url, origin=ORIGIN) as ws:  # type: ignore[arg-type]
        again = await next_frame(ws)
    assert again["type"] == "snapshot" and again["epoch"] != snapshot["epoch"]


async def test_a_peer_that_never_answers_pings_is_dropped(
    database_url: str, redis_url: str, tmp_path: Any, broker: str
) -> None:
    """A raw client that completes the handshake and reads, but never answers a ping: the server closes
    it within ping interval + ping timeout, and it leaves the hub."""
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        ws_ping_interval_seconds=0.5,
        ws_ping_timeout_seconds=0.5,
        realtime_broker=broker,
    )
    async with LiveServer(settings) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sale = await new_sale(client, stock=1)
        viewer = await join(client, sale, "Mute")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        path = f"/ws/rooms/{sale.room_id}?token={viewer.token}"
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {ORIGIN}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            while await reader.read(65536):  # read everything (snapshot, pings), answer nothing
                pass
        elapsed = asyncio.get_running_loop().time() - started
        writer.close()
        assert elapsed <= 0.5 + 0.5 + 1.0, f"dropped after {elapsed:.1f} s"
        async with asyncio.timeout(3):
            while server.state.realtime.hub.count():
                await asyncio.sleep(0.05)


async def test_a_reader_that_fell_behind_the_history_is_told_of_the_gap(redis_url: str, broker: str) -> None:
    """The history keeps about ``history`` events; a process that did not read them in time must not skip
    silently past the trimmed ones: it is told, and then reads on from what is left."""
    redis = Redis.from_url(redis_url)
    reader = bare_broker(broker, redis, history=10)
    seen: list[int] = []
    gaps: list[str] = []
    try:
        await reader.watch("rm_gap", 0)
        for i in range(250):  # nobody reads yet: the history is trimmed (Redis: by whole nodes of 100)
            await reader.publish("rm_gap", "chat", {"text": str(i)}, now_ms=0)
        reader.start(lambda room, seq, frame, to: seen.append(seq), lambda room: gaps.append(room))
        async with asyncio.timeout(5):
            while not seen or seen[-1] != 250:
                await asyncio.sleep(0.02)
        assert gaps == ["rm_gap"] and seen[0] > 1 and seen == list(range(seen[0], 251))
        await reader.publish("rm_gap", "chat", {"text": "on time"}, now_ms=0)
        async with asyncio.timeout(5):
            while seen[-1] != 251:
                await asyncio.sleep(0.02)
        assert gaps == ["rm_gap"]  # read in time: no gap
    finally:
        await reader.stop()
        await redis.aclose()


async def test_a_room_unwatched_while_its_events_are_handed_out_stays_unwatched(
    redis_url: str, broker: str
) -> None:
    """The handler may unwatch the room it is handed (its last viewer was closed as too slow): the reader
    must not put the room back and read it for good with nobody to tell."""
    redis = Redis.from_url(redis_url)
    reader = bare_broker(broker, redis, history=100)
    seen: list[int] = []

    def handle(room: str, seq: int, frame: bytes, to: str | None) -> None:
        seen.append(seq)
        reader.unwatch(room)

    try:
        await reader.watch("rm_left", 0)
        reader.start(handle)
        for i in range(3):
            await reader.publish("rm_left", "chat", {"text": str(i)}, now_ms=0)
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # a reader that put the room back would read the later events too
        await reader.publish("rm_left", "chat", {"text": "later"}, now_ms=0)
        await asyncio.sleep(0.5)
        assert seen and max(seen) <= 3
        assert 4 not in seen
    finally:
        await reader.stop()
        await redis.aclose()


async def test_both_brokers_frame_gate_and_replay_events_alike(redis_url: str) -> None:
    """The memory broker keeps the Redis broker's contract to the byte: the same publishes give the same
    outcomes, the same frames and the same gate values."""
    redis = Redis.from_url(redis_url)
    brokers = [bare_broker("redis", redis, history=100), bare_broker("memory", redis, history=100)]
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("room", {}, {}),
        ("chat", {"from": "Ann", "text": 'hé "quoted"'}, {}),
        ("stock", {"card_id": "cd_1", "stock_left": 5}, {"gate": "stock:cd_1", "min_interval_ms": 100}),
        ("stock", {"card_id": "cd_1", "stock_left": 4}, {"gate": "stock:cd_1", "min_interval_ms": 100}),
        ("stock", {"card_id": "cd_1", "stock_left": 5}, {"gate": "stock:cd_1", "min_interval_ms": 100}),
        ("viewers", {"count": 2}, {"gate": "viewers", "min_interval_ms": 1000, "value": "2"}),
        ("viewers", {"count": 2}, {"gate": "viewers", "min_interval_ms": 1000, "value": "2"}),
    ]
    try:
        seen = []
        for reader in brokers:
            outcomes = []
            for n, (kind, body, gate) in enumerate(steps):
                value = str(body["stock_left"]) if kind == "stock" else gate.get("value", "")
                options = {"now_ms": 1000 + 30 * n, **gate, "value": value}
                outcomes.append(await reader.publish("rm_same", kind, body, **options))
            seq, epoch = await reader.position("rm_same")
            replayed = await reader.replay("rm_same", 0, epoch)
            seen.append((outcomes, seq, replayed, await reader.gate_values("rm_same")))
        assert seen[0] == seen[1]
        assert seen[0][0] == [1, 2, 3, Later(70), "same", 4, "same"]
    finally:
        for reader in brokers:
            await reader.stop()
        await redis.aclose()


async def test_the_hub_serves_plain_uvicorn_websockets_through_asgi(
    database_url: str, redis_url: str, tmp_path: Any, broker: str
) -> None:
    """Under another server than ``livecart serve`` (uvicorn's own websockets protocol, no raw sockets) the
    hub falls back to one ASGI send per frame: the same snapshot, events, chat and close codes."""
    settings = make_settings(
        database_url,
        redis_url,
        tmp_path,
        realtime_broker=broker,
        limits_scale=1,  # the chat limit as in production: 5 messages per customer a minute
        limit_chat_per_customer="5/minute",
    )
    server = LiveServer(settings)
    server.server = uvicorn.Server(  # the harness's server, with uvicorn's protocol instead of the hub's
        uvicorn.Config(server.app, log_config=None, access_log=False, lifespan="on", ws="websockets-sansio")
    )
    async with server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sale = await new_sale(client, stock=5, per_user_limit=2)
        ann, bob = await join(client, sale, "Ann"), await join(client, sale, "Bob")
        async with (
            websockets.connect(ws_url(server, sale.room_id, ann.token), origin=ORIGIN) as ws_ann,  # type: ignore[arg-type]
            websockets.connect(ws_url(server, sale.room_id, bob.token), origin=ORIGIN) as ws_bob,  # type: ignore[arg-type]
        ):
            snapshot = await next_frame(ws_ann)
            assert snapshot["type"] == "snapshot" and [c["stock_left"] for c in snapshot["cards"]] == [5]
            assert (await next_frame(ws_bob))["type"] == "snapshot"
            peers = server.state.realtime._peers.values()
            assert len(peers) == 2 and all(isinstance(p, AsgiPeer) for p in peers)
            order = await ok(await buy(client, sale.card_id, ann, quantity=2), 201)
            assert (await next_frame(ws_ann, "order"))["order"]["id"] == order["id"]
            stock = await next_frame(ws_bob, "stock")
            while stock["stock_left"] != 3:
                stock = await next_frame(ws_bob, "stock")
            assert stock["seq"] > snapshot["seq"]
            for n in range(3):  # in the order sent
                await ws_ann.send(json.dumps({"type": "chat", "text": f"hello {n}"}))
            for n in range(3):
                chat = await next_frame(ws_bob, "chat")
                assert (chat["from"], chat["text"]) == ("Ann", f"hello {n}")
            for _ in range(6):  # 5 a minute: the sixth is refused with an error frame
                await ws_bob.send('{"type": "chat", "text": "spam"}')
            refused = await next_frame(ws_bob, "error")
            assert refused["error"] == "rate_limited" and 1 <= refused["retry_after"] <= 60
            await ws_bob.send("not json")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await next_frame(ws_bob, "never")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
            await ws_ann.send('{"type": "chat", "text": "still here"}')
            while (await next_frame(ws_ann, "chat"))["text"] != "still here":  # after her own and Bob's
                pass
        async with websockets.connect(ws_url(server, sale.room_id, "v.nope"), origin=ORIGIN) as ws:  # type: ignore[arg-type]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        async with asyncio.timeout(5):
            while server.state.realtime.hub.count():
                await asyncio.sleep(0.05)
        assert not server.state.realtime.broker._watched
