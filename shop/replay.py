"""A show's replay (SPEC §11, issue 14): its recording (``live.hls_store``), a signed URL of its full
playlist, and the moments of its cards placed in the video (``replay_rules.timeline``), for its host and
its viewers; the host publishes, hides or deletes it; the sweeper deletes it once the shop's keeping time
has passed.

Who sees it: the room's host, and the room's viewers (the replay is as private as the room); a viewer sees
no hidden replay (404 ``no_replay``, as for one that does not exist), the host does.

State. ``rooms.replay`` (``ReplayState``) is the truth; the recording's ``hidden`` marker on disk mirrors
it for the HLS edge, which reads no database. A change starts with its guarded write to the room's row
(``UPDATE rooms SET replay = ... WHERE replay IN (...)``) and touches the files while that row is locked,
then commits: of two concurrent changes the second waits, then finds the first's outcome (a deleted replay
cannot be hidden, published or deleted again). A crash after the files were deleted and before the commit
leaves a room whose recording is gone (no replay: 404), which the next sweep marks deleted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NoReturn

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock, iso
from base.settings import Settings
from identity.guards import Caller, require_in_room, require_room_owner
from identity.tokens import HostIdentity
from live.errors import UnknownRoom
from live.hls_rules import FULL_PLAYLIST, Segment, grant_expiry, hls_path, sign_grant
from live.hls_store import HlsStore
from live.models import Host, Room
from shop import card_timeline
from shop.cards import Catalog
from shop.errors import UnknownResource
from shop.replay_rules import (
    DAY_MS,
    CardMoment,
    ReplayState,
    delete_at,
    duration_of,
    keep_days_of,
    may_delete_files,
    replay_phase,
    timeline,
)

log = logging.getLogger("livecart.replay")

#: Rooms whose recording the sweeper deletes in one pass at most (the rest in the next ones).
SWEEP_BATCH = 50


def no_replay() -> UnknownResource:
    return UnknownResource(
        "This show has no replay: it was not recorded, it was deleted, or its host hid it.", code="no_replay"
    )


class Replays:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        catalog: Catalog,
        store: HlsStore,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        #: the cards as ``GET /api/rooms/{room}/cards`` gives them (status, price, stock now)
        self.catalog = catalog
        #: the recordings on disk
        self.store = store

    # -- reading -----------------------------------------------------------------------------------------

    async def view(self, who: Caller, room_id: str) -> dict[str, Any]:
        """The replay as ``who`` (the room's host, or one of its viewers) may see it."""
        async with self.sessions() as session:
            room, keep_days = await self._room(session, room_id)
            require_in_room(who, room.id, room.host_id)
            moments = await card_timeline.moments(session, room_id)
        return await self._json(who, room, keep_days, moments)

    async def _room(self, session: AsyncSession, room_id: str) -> tuple[Room, int]:
        row = (
            await session.execute(
                select(Room, Host.replay_keep_days)
                .join(Host, Host.id == Room.host_id)
                .where(Room.id == room_id)
            )
        ).first()
        if row is None:
            raise UnknownRoom("No such room.")
        room, shop_days = row
        return room, keep_days_of(shop_days, default_days=self.settings.replay_keep_days)

    async def _json(
        self, who: Caller, room: Room, keep_days: int, moments: list[CardMoment]
    ) -> dict[str, Any]:
        state = ReplayState.of(room.replay)
        if state.gone or (state is ReplayState.HIDDEN and not isinstance(who, HostIdentity)):
            raise no_replay()
        segments, finished = await asyncio.to_thread(self._recording, room.id)
        if not segments:
            raise no_replay()
        now = self.clock.now_ms()
        url, expires = self._signed(room.id, now)
        return {
            "room_id": room.id,
            "state": replay_phase(room_ended=room.status == "ended", recording_finished=finished),
            "visible": state is ReplayState.KEPT,
            "hls": url,
            "hls_expires_at": iso(expires * 1000),
            "duration_seconds": round(duration_of(segments), 3),
            "started_at": iso(segments[0].start_ms),
            "ended_at": iso(room.ended_ms),
            "delete_at": iso(delete_at(room.ended_ms, keep_days=keep_days)),
            "timeline": timeline(moments, segments),
            "cards": await self.catalog.room_cards(room.id),
        }

    def _recording(self, room_id: str) -> tuple[list[Segment], bool]:
        """The recording's segments, and whether its encoder finished it (blocking: in a thread)."""
        return self.store.segments(room_id), self.store.is_ended(room_id)

    def _signed(self, room_id: str, now_ms: int) -> tuple[str, int]:
        """The path of the replay's playlist under a grant issued now, and the grant's expiry (epoch s)."""
        expires = grant_expiry(
            now_ms,
            ttl_seconds=self.settings.hls_grant_seconds,
            bucket_seconds=self.settings.hls_grant_bucket_seconds,
        )
        grant = sign_grant(self.settings.signing_keys[0], room_id, expires)
        return hls_path(room_id, grant, FULL_PLAYLIST), expires

    # -- the host's changes ------------------------------------------------------------------------------

    async def set_visible(self, host: HostIdentity, room_id: str, *, visible: bool) -> dict[str, Any]:
        """Publish (``visible``) or hide the replay; the replay as its host sees it then."""
        target = ReplayState.KEPT if visible else ReplayState.HIDDEN
        async with self.sessions() as session, session.begin():
            changed = await session.execute(
                update(Room)
                .where(Room.id == room_id, Room.host_id == host.host_id, _living())
                .values(replay=target.column)
                .returning(Room.id)
            )
            if changed.first() is None:
                await self._refuse(session, host, room_id)
            if not await asyncio.to_thread(self.store.exists, room_id):
                raise no_replay()  # (the transaction rolls back: nothing changed)
            await asyncio.to_thread(self.store.set_hidden, room_id, not visible)
            room, keep_days = await self._room(session, room_id)
            moments = await card_timeline.moments(session, room_id)
            return await self._json(host, room, keep_days, moments)

    async def delete(self, host: HostIdentity, room_id: str) -> None:
        """Delete the replay for good: its files now if the show has ended, else (its live viewers still
        watch) once it has (by the sweeper); hidden from the moment of this call either way."""
        async with self.sessions() as session, session.begin():
            changed = await session.execute(
                update(Room)
                .where(Room.id == room_id, Room.host_id == host.host_id, _living())
                .values(
                    replay=case(
                        (Room.status == "ended", ReplayState.DELETED.value),
                        else_=ReplayState.DELETING.value,
                    )
                )
                .returning(Room.replay)
            )
            row = changed.first()
            if row is None:
                await self._refuse(session, host, room_id)
            if not await asyncio.to_thread(self.store.exists, room_id):
                raise no_replay()  # (rolled back)
            if ReplayState.of(row[0]) is ReplayState.DELETED:
                await asyncio.to_thread(self.store.delete, room_id)
            else:
                await asyncio.to_thread(self.store.set_hidden, room_id, True)

    async def _refuse(self, session: AsyncSession, host: HostIdentity, room_id: str) -> NoReturn:
        """Why a change found no replay to change: no such room (404), another host's (403), or its replay
        was deleted (404 ``no_replay``)."""
        room = await session.get(Room, room_id)
        if room is None:
            raise UnknownRoom("No such room.")
        require_room_owner(host, room.host_id)
        raise no_replay()

    # -- retention (the sweeper) ---------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the recordings that are due: of shows that ended more than the shop's keeping time ago
        (``hosts.replay_keep_days``, else ``LIVECART_REPLAY_KEEP_DAYS``; 0: at the first pass after the
        end), and of shows whose host deleted the replay while they were live. Returns how many rooms'
        replays it marked deleted."""
        now = self.clock.now_ms()
        keep = func.coalesce(Host.replay_keep_days, self.settings.replay_keep_days)
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(Room.id, Room.ended_ms)
                    .join(Host, Host.id == Room.host_id)
                    .where(
                        Room.status == "ended",
                        Room.ended_ms.is_not(None),
                        or_(
                            Room.replay == ReplayState.DELETING.value,
                            and_(_living(), Room.ended_ms + keep * DAY_MS <= now),
                        ),
                    )
                    .order_by(Room.ended_ms, Room.id)
                    .limit(SWEEP_BATCH)
                )
            ).all()
        deleted = 0
        for room_id, ended_ms in due:
            if await self._expire(room_id, ended_ms=ended_ms or now, now_ms=now):
                deleted += 1
        return deleted

    async def _expire(self, room_id: str, *, ended_ms: int, now_ms: int) -> bool:
        finished = await asyncio.to_thread(self._finished_or_absent, room_id)
        if not may_delete_files(ended_ms=ended_ms, now_ms=now_ms, finished=finished):
            return False  # its encoder is still finishing it: the next pass
        async with self.sessions() as session, session.begin():
            changed = await session.execute(
                update(Room)
                .where(
                    Room.id == room_id,
                    Room.status == "ended",
                    Room.replay.is_distinct_from(ReplayState.DELETED.value),
                )
                .values(replay=ReplayState.DELETED.value)
                .returning(Room.id)
            )
            if changed.first() is None:
                return False
            await asyncio.to_thread(self.store.delete, room_id)
        log.info("room %s: its replay was deleted (kept long enough, or deleted by its host)", room_id)
        return True

    def _finished_or_absent(self, room_id: str) -> bool:
        return self.store.is_ended(room_id) or not self.store.room_dir(room_id).exists()


def _living() -> Any:
    """The rooms whose replay may still change: published (or never recorded) or hidden."""
    return or_(Room.replay.is_(None), Room.replay == ReplayState.HIDDEN.value)
