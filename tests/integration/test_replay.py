"""A show's replay (SPEC §11, issue 14) over HTTP, on SQLite and PostgreSQL, real Redis.

The recording is written the way the encoder leaves it (``HlsStore``: segment files, their records, the
playlists, the ``ended`` marker) with segments whose wall-clock starts the test chooses, and the app runs on
a clock the test sets, so every card moment falls at a known instant and its offset in the replay is exact.
The encoder itself, and a replay played in a browser, are the lead's tests (``test_hls.py``, e2e).

- the timeline: every moment of every card (pinned, opened, price cut and raised, sold out, closed) in
  order, at its offset in the video: before the recording, in it, in a gap (the video was off), after it;
- who may read, publish, hide and delete a replay (its host, its viewer, another host, another room's
  viewer, no token; an unknown room, a room without a recording), and bad bodies;
- hidden: its viewers get 404, its host sees it, the marker the HLS edge reads is on disk; deleted: its
  files are gone and every call after is 404;
- retention: kept until the shop's days are up and deleted at the first pass after (0: at the end, once the
  encoder finished); deleted during the show: its files stay for the live audience, go after the end;
- replay sales (回放带货): an open card stays on sale N hours after the end and is bought and paid then; a
  pinned one closes at the end; a shop without replay sales closes every card;
- the rate limits of reading and of changing a replay;
- concurrent publish, hide and delete: one outcome, never a half-deleted recording;
- the sold-out moment: once per change across two stock publishers, again after a restock; a hook that
  fails never stops the stock counters, and a moment that cannot be written is logged, not raised.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from base.clock import SystemClock, iso
from live.errors import HlsForbidden
from live.hls_rules import FULL_PLAYLIST, Segment, check_grant, hls_path
from live.hls_store import HlsStore
from live.models import Room
from loadtests.harness import join as join_room
from loadtests.harness import new_card, new_host, new_room
from realtime.broker_redis import RedisBroker, room_keys
from realtime.stock import StockPublisher
from shop.card_timeline import CardTimeline
from shop.inventory.store import Inventory, card_keys
from shop.models import CardEvent
from shop.replay_rules import DAY_MS, HOUR_MS
from tests.conftest import LiveServer, fresh_database, make_settings
from tests.shop_api import Buyer, auth, buy, ok, pay, sign_in

pytestmark = pytest.mark.integration

SECRET = "test-secret-key"  # make_settings'
#: What a loaded 2-core machine may take for something asynchronous (a sold-out moment being recorded).
SLACK_S = 10.0


class StillClock:
    """The app's clock: still until the test sets it (``at``) or moves it (``advance``)."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def now_ms(self) -> int:
        return self.ms

    def at(self, ms: int) -> None:
        self.ms = ms

    def advance(self, ms: int) -> None:
        self.ms += ms


@dataclass
class Show:
    host: str
    room: str
    invite: str


@asynccontextmanager
async def app(
    database_url: str, redis_url: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[LiveServer, httpx.AsyncClient, StillClock]]:
    """The app on a clock the test sets, without a sweeper of its own (the test sweeps)."""
    clock = StillClock()
    config = make_settings(database_url, redis_url, tmp_path, **settings)
    async with (
        LiveServer(config, clock=clock, sweeper=False) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        yield server, client, clock


async def new_show(client: httpx.AsyncClient, host: str | None = None, *, live: bool = True) -> Show:
    host = host or await new_host(client)
    room = await new_room(client, host, live=live)
    return Show(host, room["id"], room["invite_token"])


async def viewer(client: httpx.AsyncClient, show: Show, name: str = "Mei") -> Buyer:
    return await join_room(client, show.room, show.invite, name)


def store_of(server: LiveServer) -> HlsStore:
    """The recordings as the app keeps them (``LIVECART_DATA_DIR``/hls)."""
    settings = server.settings
    return HlsStore(
        settings.data_dir / "hls",
        target_seconds=settings.hls_segment_seconds,
        window=settings.hls_live_window,
    )


def record(store: HlsStore, room_id: str, spans: list[tuple[int, float]], *, finish: bool = False) -> None:
    """A recording as the encoder leaves it: segments ``(wall-clock start ms, duration s)``, each file in
    place before its record; one that follows a wall-clock gap is a discontinuity (a restarted encoder)."""
    segments: list[Segment] = []
    for start_ms, duration in spans:
        segment = Segment(
            seq=len(segments) + 1,
            duration=duration,
            start_ms=start_ms,
            discontinuity=bool(segments) and start_ms > segments[-1].end_ms + 500,
            width=640,
            height=360,
            bytes=188 * 4,
        )
        (store.prepare(room_id) / segment.name).write_bytes((b"\x47" + bytes(187)) * 4)
        segments.append(segment)
        store.add(room_id, segment, segments)
    if finish:
        store.finish(room_id)


def short_recording(store: HlsStore, room_id: str, start_ms: int, *, finish: bool = False) -> None:
    record(store, room_id, [(start_ms, 2.0), (start_ms + 2000, 2.0)], finish=finish)


async def end(client: httpx.AsyncClient, show: Show) -> None:
    await ok(await client.post(f"/api/rooms/{show.room}/end", headers=auth(show.host)))


async def replay_column(server: LiveServer, room_id: str) -> str | None:
    async with server.state.sessions() as session:
        column: str | None = await session.scalar(select(Room.replay).where(Room.id == room_id))
        return column


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return str(response.json()["error"])


def at(ms: int) -> str:
    value = iso(ms)
    assert value is not None
    return value


async def until(check: Callable[[], Awaitable[bool]], timeout: float = SLACK_S) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


# -- the timeline --------------------------------------------------------------------------------------------


async def test_the_timeline_places_every_card_moment_in_the_video(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path) as (server, client, clock):
        t0 = clock.ms
        show = await new_show(client)
        h = auth(show.host)
        _, card = await new_card(client, show.host, show.room, stock=1, price=1000, open_sale=False)
        mei = await viewer(client, show)
        clock.at(t0 + 5000)
        await ok(await client.post(f"/api/cards/{card}/open", headers=h))
        clock.at(t0 + 9000)
        await ok(await client.patch(f"/api/cards/{card}", json={"price": 800}, headers=h))
        clock.at(t0 + 10_000)
        await ok(await client.patch(f"/api/cards/{card}", json={"price": 900}, headers=h))
        await ok(await client.patch(f"/api/cards/{card}", json={"price": 900}, headers=h))  # the same price
        await ok(await client.patch(f"/api/cards/{card}", json={"commission_bps": 500}, headers=h))
        clock.at(t0 + 12_500)
        assert (await ok(await buy(client, card, mei), 201))["unit_price"] == 900  # the last unit

        async def sold_out_recorded() -> bool:
            async with server.state.sessions() as session:
                return bool(await session.scalar(select(func.count()).where(CardEvent.event == "sold_out")))

        await until(sold_out_recorded)
        clock.at(t0 + 13_000)
        _, second = await new_card(client, show.host, show.room, stock=3, price=500, open_sale=False)
        clock.at(t0 + 15_000)
        await ok(await client.post(f"/api/cards/{card}/close", headers=h))
        await ok(await client.post(f"/api/cards/{card}/close", headers=h))  # closed already: no moment

        # The video: from 2 s to 8 s, off until 12 s (the host's phone dropped), on again until 16 s.
        store = store_of(server)
        spans = [(t0 + 2000, 2.0), (t0 + 4000, 2.0), (t0 + 6000, 2.0), (t0 + 12_000, 2.0), (t0 + 14_000, 2.0)]
        record(store, show.room, spans)
        during = await ok(await client.get(f"/api/rooms/{show.room}/replay", headers=auth(mei.token)))
        assert (during["state"], during["ended_at"], during["delete_at"]) == ("recording", None, None)
        assert during["duration_seconds"] == 10.0

        clock.at(t0 + 16_000)
        await end(client, show)  # closes the second card, pinned and never opened
        store.finish(show.room)
        replay = await ok(await client.get(f"/api/rooms/{show.room}/replay", headers=auth(mei.token)))
        assert await ok(await client.get(f"/api/rooms/{show.room}/replay", headers=h)) == replay

        # A moment that cannot be written (no such card) is logged, not raised.
        await CardTimeline(sessions=server.state.sessions).sold_out("crd_none", show.room, t0)
        async with server.state.sessions() as session:
            assert await session.scalar(select(func.count()).where(CardEvent.card_id == "crd_none")) == 0

    assert [(e["t"], e["card_id"], e["event"], e["price"]) for e in replay["timeline"]] == [
        (0.0, card, "pinned", 1000),  # before the video began
        (3.0, card, "opened", None),  # 1 s into the second segment
        (6.0, card, "price_cut", 800),  # while the video was off: where it came back
        (6.0, card, "price_raised", 900),
        (6.5, card, "sold_out", None),  # half a second after it came back
        (7.0, second, "pinned", 500),
        (9.0, card, "closed", None),
        (10.0, second, "closed", None),  # the end of the show, the end of the video
    ]
    assert [e["at"] for e in replay["timeline"][:3]] == [at(t0), at(t0 + 5000), at(t0 + 9000)]
    assert (replay["room_id"], replay["state"], replay["visible"]) == (show.room, "ready", True)
    assert (replay["duration_seconds"], replay["started_at"]) == (10.0, at(t0 + 2000))
    assert replay["ended_at"] == at(t0 + 16_000)
    assert replay["delete_at"] == at(t0 + 16_000 + 30 * DAY_MS)  # LIVECART_REPLAY_KEEP_DAYS' default
    assert {c["id"]: (c["status"], c["price"], c["stock_left"]) for c in replay["cards"]} == {
        card: ("closed", 900, 0),
        second: ("closed", 500, 3),
    }
    # The playlist's path carries a grant the HLS edge takes for this room, and for no other room.
    grant = replay["hls"].split("/")[-2]
    assert replay["hls"] == hls_path(show.room, grant, FULL_PLAYLIST)
    expires = check_grant([SECRET], show.room, grant, now_ms=int(time.time() * 1000))
    assert replay["hls_expires_at"] == at(expires * 1000)
    with pytest.raises(HlsForbidden):
        check_grant([SECRET], "rm_another", grant, now_ms=int(time.time() * 1000))


# -- who may do what -----------------------------------------------------------------------------------------


async def test_who_may_read_publish_hide_and_delete_a_replay(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path) as (server, client, clock):
        store = store_of(server)
        mine, theirs = await new_show(client), await new_show(client)
        unrecorded = await new_show(client, mine.host)
        mei, bo = await viewer(client, mine, "Mei"), await viewer(client, theirs, "Bo")
        for show in (mine, theirs):
            short_recording(store, show.room, clock.ms)
        callers = {
            "host": auth(mine.host),
            "its viewer": auth(mei.token),
            "another host": auth(theirs.host),
            "another room's viewer": auth(bo.token),
            "no token": {},
        }
        path = f"/api/rooms/{mine.room}/replay"
        read = {"host": 200, "its viewer": 200, "another host": 403, "another room's viewer": 403}
        change = {"host": 200, "its viewer": 403, "another host": 403, "another room's viewer": 403}
        for who, headers in callers.items():
            got = await client.get(path, headers=headers)
            assert got.status_code == read.get(who, 401), (who, got.text)
            got = await client.patch(path, json={"visible": True}, headers=headers)
            assert got.status_code == change.get(who, 401), (who, got.text)
        for who, headers in callers.items():
            if who != "host":
                got = await client.delete(path, headers=headers)
                assert got.status_code == change[who] if who in change else 401, (who, got.text)
        assert await replay_column(server, mine.room) is None and store.exists(mine.room)

        # An unknown room; a room of the host's with no recording (nothing is made for it).
        for method in ("GET", "PATCH", "DELETE"):
            got = await client.request(
                method, "/api/rooms/rm_none/replay", json={"visible": False}, headers=callers["host"]
            )
            assert error_of(got, 404) == "not_found"
            got = await client.request(
                method,
                f"/api/rooms/{unrecorded.room}/replay",
                json={"visible": False},
                headers=callers["host"],
            )
            assert error_of(got, 404) == "no_replay"
        assert await replay_column(server, unrecorded.room) is None
        assert not store.room_dir(unrecorded.room).exists()

        # Bodies the PATCH refuses, changing nothing.
        for body in ({}, {"visible": "no"}, {"visible": None}, {"visible": 0}, ["visible"]):
            assert error_of(await client.patch(path, json=body, headers=callers["host"]), 422)
        assert error_of(await client.patch(path, content=b"{nope", headers=callers["host"]), 400)
        assert await replay_column(server, mine.room) is None and not store.is_hidden(mine.room)

        # Hidden: its viewers see nothing, its host sees it, the HLS edge's marker is there.
        hidden = await ok(await client.patch(path, json={"visible": False}, headers=callers["host"]))
        assert hidden["visible"] is False and store.is_hidden(mine.room)
        assert await replay_column(server, mine.room) == "hidden"
        assert error_of(await client.get(path, headers=callers["its viewer"]), 404) == "no_replay"
        assert (await ok(await client.get(path, headers=callers["host"])))["visible"] is False
        await ok(
            await client.patch(path, json={"visible": False}, headers=callers["host"])
        )  # again: the same
        shown = await ok(await client.patch(path, json={"visible": True}, headers=callers["host"]))
        assert shown["visible"] is True and not store.is_hidden(mine.room)
        assert await replay_column(server, mine.room) is None
        assert (await ok(await client.get(path, headers=callers["its viewer"])))["visible"] is True

        # Deleted after the show: the files go at once, and it is gone for everyone.
        await end(client, mine)
        store.finish(mine.room)
        assert (await client.delete(path, headers=callers["host"])).status_code == 204
        assert not store.room_dir(mine.room).exists()
        assert await replay_column(server, mine.room) == "deleted"
        for headers in (callers["host"], callers["its viewer"]):
            assert error_of(await client.get(path, headers=headers), 404) == "no_replay"
        assert error_of(await client.patch(path, json={"visible": True}, headers=callers["host"]), 404)
        assert error_of(await client.delete(path, headers=callers["host"]), 404) == "no_replay"
        assert not store.room_dir(mine.room).exists()
        assert store.exists(theirs.room)  # another room's recording is untouched


# -- retention -----------------------------------------------------------------------------------------------


async def test_replays_are_kept_for_the_shops_days_then_deleted(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path, replay_keep_days=5) as (server, client, clock):
        store = store_of(server)
        two_days, default, none = await new_host(client), await new_host(client), await new_host(client)
        for host, days in ((two_days, 2), (none, 0)):
            shop = await ok(
                await client.patch("/api/shop", json={"replay_keep_days": days}, headers=auth(host))
            )
            assert (shop["replay_keep_days"], shop["default_replay_keep_days"]) == (days, 5)
        kept_2 = await new_show(client, two_days)
        kept_5 = await new_show(client, default)
        kept_0 = await new_show(client, none)
        unfinished = await new_show(client, none)  # its encoder still writes after the end
        deleted_live = await new_show(client, default)
        watcher = await viewer(client, deleted_live)
        for show in (kept_2, kept_5, kept_0, deleted_live):
            short_recording(store, show.room, clock.ms)

        # Deleted during the show: nobody gets the replay any more, the live audience keeps the video.
        path = f"/api/rooms/{deleted_live.room}/replay"
        assert (await client.delete(path, headers=auth(deleted_live.host))).status_code == 204
        assert error_of(await client.get(path, headers=auth(watcher.token)), 404) == "no_replay"
        assert error_of(await client.get(path, headers=auth(deleted_live.host)), 404) == "no_replay"
        assert error_of(
            await client.patch(path, json={"visible": True}, headers=auth(deleted_live.host)), 404
        )
        assert store.exists(deleted_live.room) and store.is_hidden(deleted_live.room)
        assert await replay_column(server, deleted_live.room) == "deleting"
        await server.state.sweeper.sweep()  # the show is on: nothing goes
        assert store.exists(deleted_live.room)

        ended = clock.ms
        for show in (kept_2, kept_5, kept_0, unfinished, deleted_live):
            await end(client, show)
            if show is not unfinished:
                store.finish(show.room)  # (the app's video did already: finishing is idempotent)
        short_recording(store, unfinished.room, clock.ms)  # its last segments, after the end
        first = await ok(await client.get(f"/api/rooms/{kept_2.room}/replay", headers=auth(two_days)))
        assert first["delete_at"] == at(ended + 2 * DAY_MS)
        second = await ok(await client.get(f"/api/rooms/{kept_5.room}/replay", headers=auth(default)))
        assert second["delete_at"] == at(ended + 5 * DAY_MS)

        async def gone() -> set[str]:
            shows = {"2": kept_2, "5": kept_5, "0": kept_0, "unfinished": unfinished, "live": deleted_live}
            found = set()
            for name, show in shows.items():
                column = await replay_column(server, show.room)
                assert (column == "deleted") == (not store.room_dir(show.room).exists()), name
                if column == "deleted":
                    found.add(name)
            return found

        clock.advance(1000)
        assert (await server.state.sweeper.sweep())["replays_deleted"] == 2
        assert await gone() == {"0", "live"}  # the unfinished one waits for its encoder a while
        clock.advance(60_000)
        assert (await server.state.sweeper.sweep())["replays_deleted"] == 1
        assert await gone() == {"0", "live", "unfinished"}
        clock.at(ended + 2 * DAY_MS - 1)
        await server.state.sweeper.sweep()
        assert await gone() == {"0", "live", "unfinished"}
        await ok(await client.get(f"/api/rooms/{kept_2.room}/replay", headers=auth(two_days)))
        clock.at(ended + 2 * DAY_MS)
        await server.state.sweeper.sweep()
        assert await gone() == {"0", "live", "unfinished", "2"}
        got = await client.get(f"/api/rooms/{kept_2.room}/replay", headers=auth(two_days))
        assert error_of(got, 404) == "no_replay"
        clock.at(ended + 5 * DAY_MS)
        await server.state.sweeper.sweep()
        assert await gone() == {"0", "live", "unfinished", "2", "5"}
        assert (await server.state.sweeper.sweep())["replays_deleted"] == 0


# -- replay sales --------------------------------------------------------------------------------------------


async def test_open_cards_stay_on_sale_for_the_replay_and_pinned_ones_close(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path) as (server, client, clock):
        host, plain = await new_host(client), await new_host(client)
        before = await ok(await client.get("/api/shop", headers=auth(host)))
        assert (before["replay_sales_hours"], before["replay_keep_days"]) == (0, None)
        for body in (
            {"replay_sales_hours": -1},
            {"replay_sales_hours": 721},
            {"replay_sales_hours": None},
            {"replay_sales_hours": "2"},
            {"replay_sales_hours": 1.5},
            {"replay_keep_days": -1},
            {"replay_keep_days": 3651},
            {"replay_keep_days": True},
        ):
            assert error_of(await client.patch("/api/shop", json=body, headers=auth(host)), 422), body
        assert await ok(await client.get("/api/shop", headers=auth(host))) == before
        shop = await ok(await client.patch("/api/shop", json={"replay_sales_hours": 2}, headers=auth(host)))
        assert shop["replay_sales_hours"] == 2
        assert (await ok(await client.get("/api/shop", headers=auth(host))))["replay_sales_hours"] == 2

        show = await new_show(client, host)
        _, open_card = await new_card(client, host, show.room, stock=5)
        _, pinned = await new_card(client, host, show.room, stock=5, open_sale=False)
        _, short = await new_card(client, host, show.room, stock=5, duration_seconds=600)
        opened = clock.ms
        mei = await viewer(client, show)
        clock.advance(60_000)
        ended = clock.ms
        await end(client, show)

        def card_path(card: str) -> str:
            return f"/api/cards/{card}"

        kept = await ok(await client.get(card_path(open_card), headers=auth(mei.token)))
        assert (kept["status"], kept["closes_at"]) == ("open", at(ended + 2 * HOUR_MS))
        assert (await ok(await client.get(card_path(pinned), headers=auth(mei.token))))["status"] == "closed"
        shorter = await ok(await client.get(card_path(short), headers=auth(mei.token)))
        assert (shorter["status"], shorter["closes_at"]) == ("open", at(opened + 600_000))  # its own end

        # A viewer who watches the replay an hour later buys and pays.
        clock.advance(HOUR_MS)
        order = await ok(await buy(client, open_card, mei), 201)
        assert (await pay(client, order["id"], mei))["order"]["status"] == "paid"
        assert error_of(await buy(client, pinned, mei), 409) == "sale_not_open"
        assert error_of(await buy(client, short, mei), 409) == "sale_not_open"  # its 10 minutes are over
        # Redis loses everything (a failover) while the replay still sells: the reconcile that follows
        # rebuilds the sale kept open after the show (a card of an ended room), with what it sold.
        st = server.state
        await st.redis.flushdb()
        rebuilt = {r.card_id: r for r in await st.reconciler.reconcile_all(trigger="test")}
        assert rebuilt[open_card].stock_left_after == 4
        sale = await st.inventory.sale(open_card)
        assert sale is not None and sale.stock_left == 4
        clock.at(ended + 2 * HOUR_MS)
        assert error_of(await buy(client, open_card, mei), 409) == "sale_not_open"
        assert (await ok(await client.get(card_path(open_card), headers=auth(mei.token))))[
            "status"
        ] == "closed"

        async with server.state.sessions() as session:
            closed = (
                await session.execute(
                    select(CardEvent.card_id, CardEvent.at_ms).where(
                        CardEvent.room_id == show.room, CardEvent.event == "closed"
                    )
                )
            ).all()
        assert closed == [(pinned, ended)]  # the kept sales were not closed by the end

        # A shop without replay sales: ending the show closes its open cards, as before.
        other = await new_show(client, plain)
        _, card = await new_card(client, plain, other.room, stock=5)
        bo = await viewer(client, other, "Bo")
        await end(client, other)
        assert error_of(await buy(client, card, bo), 409) == "sale_not_open"
        assert (await ok(await client.get(card_path(card), headers=auth(bo.token))))["status"] == "closed"

        back = await ok(await client.patch("/api/shop", json={"replay_keep_days": None}, headers=auth(host)))
        assert (back["replay_keep_days"], back["replay_sales_hours"]) == (None, 2)


# -- rate limits ---------------------------------------------------------------------------------------------


async def test_reading_and_changing_a_replay_are_rate_limited(tmp_path: Path, redis_url: str) -> None:
    url = await fresh_database("sqlite", tmp_path)
    limits = {
        "limits_scale": 1,
        "limit_replay_per_customer": "3/hour",
        "limit_replay_per_host": "2/hour",
        "limit_sign_in_per_ip": "100/hour",
        "limit_sign_in_code_per_ip": "100/hour",
        "limit_join_per_ip": "100/hour",
        "limit_signup_per_ip": "100/hour",
    }
    async with app(url, redis_url, tmp_path, **limits) as (server, client, clock):
        store = store_of(server)
        show, other = await new_show(client), await new_show(client)
        mei, bo = await viewer(client, show, "Mei"), await viewer(client, show, "Bo")
        for room in (show.room, other.room):
            short_recording(store, room, clock.ms)
        path = f"/api/rooms/{show.room}/replay"
        for _ in range(3):
            await ok(await client.get(path, headers=auth(mei.token)))
        assert_limited(await client.get(path, headers=auth(mei.token)))
        await ok(await client.get(path, headers=auth(bo.token)))  # another viewer
        for _ in range(3):
            await ok(await client.get(path, headers=auth(show.host)))  # the host, on their own count
        assert_limited(await client.get(path, headers=auth(show.host)))

        for visible in (False, True):
            await ok(await client.patch(path, json={"visible": visible}, headers=auth(show.host)))
        assert_limited(await client.patch(path, json={"visible": False}, headers=auth(show.host)))
        assert_limited(await client.delete(path, headers=auth(show.host)))
        assert store.exists(show.room) and not store.is_hidden(show.room)
        assert await replay_column(server, show.room) is None
        other_path = f"/api/rooms/{other.room}/replay"
        await ok(await client.patch(other_path, json={"visible": False}, headers=auth(other.host)))


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "rate_limited" and body["retry_after"] >= 1
    assert int(response.headers["retry-after"]) == body["retry_after"]


# -- concurrency ---------------------------------------------------------------------------------------------


async def test_concurrent_changes_leave_one_whole_outcome(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path) as (server, client, clock):
        store = store_of(server)
        host = await new_host(client)
        for _ in range(4):  # publish, hide and delete twice, all at once, after the show
            show = await new_show(client, host)
            short_recording(store, show.room, clock.ms, finish=True)
            await end(client, show)
            path, h = f"/api/rooms/{show.room}/replay", auth(host)
            answers = await asyncio.gather(
                client.patch(path, json={"visible": False}, headers=h),
                client.delete(path, headers=h),
                client.patch(path, json={"visible": True}, headers=h),
                client.delete(path, headers=h),
            )
            deletes = sorted(a.status_code for a in answers[1::2])
            assert deletes == [204, 404], [a.text for a in answers]
            for answer in answers[0::2]:
                assert answer.status_code == 200 or error_of(answer, 404) == "no_replay"
            assert await replay_column(server, show.room) == "deleted"
            assert not store.room_dir(show.room).exists()  # no marker left behind by a late hide

        show = await new_show(client, host)  # publish and hide at once: the files say what SQL says
        short_recording(store, show.room, clock.ms)
        path = f"/api/rooms/{show.room}/replay"
        patched = await asyncio.gather(
            *(client.patch(path, json={"visible": n % 2 == 0}, headers=auth(host)) for n in range(8))
        )
        assert all(a.status_code == 200 for a in patched)
        assert store.is_hidden(show.room) == (await replay_column(server, show.room) == "hidden")

        # Price changes at once: each moment says cut or raised against the one committed before it.
        _, card = await new_card(client, host, show.room, stock=5, price=1000, open_sale=False)
        prices = [700, 1200, 900, 1100, 800, 1300, 600, 1000, 1000]
        await asyncio.gather(
            *(client.patch(f"/api/cards/{card}", json={"price": p}, headers=auth(host)) for p in prices)
        )
        async with server.state.sessions() as session:
            moments = (
                await session.execute(
                    select(CardEvent.event, CardEvent.price)
                    .where(CardEvent.card_id == card)
                    .order_by(CardEvent.at_ms, CardEvent.id)
                )
            ).all()
        assert moments[0] == ("pinned", 1000)
        for (_, before), (event, price) in itertools.pairwise(moments):
            assert price != before and event == ("price_cut" if price < before else "price_raised"), moments
        final = await ok(await client.get(f"/api/cards/{card}", headers=auth(host)))
        assert moments[-1][1] == final["price"]


# -- the sold-out moment -------------------------------------------------------------------------------------


ROOM, CARD = "rm_replay_stock", "crd_replay_stock"


async def test_the_sold_out_hook_is_told_once_per_change_and_never_stops_the_counters(
    redis_url: str,
) -> None:
    redis = Redis.from_url(redis_url)
    sale = card_keys(CARD)[0]
    told: list[tuple[str, str]] = []

    async def hook(card_id: str, room_id: str, at_ms: int) -> None:
        told.append((card_id, room_id))

    async def failing(card_id: str, room_id: str, at_ms: int) -> None:
        raise RuntimeError("SQL is down")

    async def stock_events() -> list[int]:
        entries: Any = await redis.xrange(room_keys(ROOM)[1])
        frames = [json.loads(fields[b"f"]) for _, fields in entries]
        return [f["stock_left"] for f in frames if f["type"] == "stock"]

    def publisher(on_sold_out: Any) -> StockPublisher:
        return StockPublisher(
            Inventory(redis), RedisBroker(redis), SystemClock(), interval=0.05, on_sold_out=on_sold_out
        )

    async def sell(left: int, *by: StockPublisher) -> None:
        await redis.hset(sale, mapping={"stock_left": left, "room_id": ROOM})
        for p in by:
            p.changed(CARD)

    two = [publisher(hook), publisher(hook)]  # two processes
    broken = publisher(failing)
    try:
        for p in two:
            p.start()
        await sell(3, two[0])
        await until(lambda: _last_is(stock_events, 3))
        await sell(0, *two)  # both see it sell out; the gate lets one of them publish it
        await until(lambda: _last_is(stock_events, 0))
        await until(lambda: _truthy(bool(told)))
        await asyncio.sleep(0.3)  # the other publisher has long been told "same" by the gate
        assert told == [(CARD, ROOM)] and (await stock_events()).count(0) == 1
        await sell(2, two[1])  # restocked, then sold out again: a second moment
        await until(lambda: _last_is(stock_events, 2))
        await sell(0, two[0])
        await until(lambda: _truthy(len(told) == 2))
        for p in two:
            await p.stop()

        broken.start()
        await sell(4, broken)
        await until(lambda: _last_is(stock_events, 4))
        await sell(0, broken)
        await until(lambda: _last_is(stock_events, 0))
        await sell(1, broken)  # the counters go on after the hook failed
        await until(lambda: _last_is(stock_events, 1))
        assert told == [(CARD, ROOM)] * 2
    finally:
        for p in [*two, broken]:
            await p.stop()
        await redis.aclose()


async def _last_is(events: Callable[[], Awaitable[list[int]]], value: int) -> bool:
    found = await events()
    return bool(found) and found[-1] == value


async def _truthy(value: bool) -> bool:
    return value


# -- who may still join once the show ended ----------------------------------------------------------------


async def join_answer(client: httpx.AsyncClient, show: Show, invite: str | None = None) -> httpx.Response:
    """A new customer signs in and asks to join the show's room (with its invite, unless given another)."""
    customer = await sign_in(client, show.room)
    body = {"invite": invite or show.invite, "name": "迟到的人"}
    return await client.post(f"/api/rooms/{show.room}/join", json=body, headers=auth(customer))


async def test_after_the_show_only_its_published_replay_admits_new_viewers(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with app(database_url, redis_url, tmp_path) as (server, client, _):
        recorded, unrecorded = await new_show(client), await new_show(client)
        short_recording(store_of(server), recorded.room, int(time.time() * 1000))
        await end(client, recorded)
        await end(client, unrecorded)

        # Someone who missed the show arrives with its invite: the replay takes them in (as privately as
        # the room did: the invite is still needed); a show without a recording does not.
        async def preview(show: Show) -> dict[str, Any]:
            r = await client.get(f"/api/rooms/{show.room}/preview", params={"invite": show.invite})
            return dict(await ok(r))

        assert (await preview(recorded))["replay"] is True and (await preview(recorded))["status"] == "ended"
        assert (await preview(unrecorded))["replay"] is False
        late = await viewer(client, recorded, "迟到的人")
        got = await ok(await client.get(f"/api/rooms/{recorded.room}/replay", headers=auth(late.token)))
        assert got["state"] == "ready"
        assert error_of(await join_answer(client, unrecorded), 403) == "invalid_invite"
        assert error_of(await join_answer(client, recorded, "not-the-invite"), 403) == "invalid_invite"
        # Hidden: no new viewers; published again: welcome; deleted: never again.
        replay = f"/api/rooms/{recorded.room}/replay"
        await ok(await client.patch(replay, json={"visible": False}, headers=auth(recorded.host)))
        assert error_of(await join_answer(client, recorded), 403) == "invalid_invite"
        assert (await preview(recorded))["replay"] is False
        await ok(await client.patch(replay, json={"visible": True}, headers=auth(recorded.host)))
        assert (await join_answer(client, recorded)).status_code in (200, 201)
        assert (await client.delete(replay, headers=auth(recorded.host))).status_code == 204
        assert error_of(await join_answer(client, recorded), 403) == "invalid_invite"
