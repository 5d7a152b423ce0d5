"""The room lifecycle as a pure state machine: scheduled → live → ended. Ending is final."""

from __future__ import annotations

import enum

from live.errors import RoomStateConflict


class RoomStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class RoomAction(enum.StrEnum):
    GO_LIVE = "live"
    END = "end"


_TRANSITIONS: dict[tuple[RoomStatus, RoomAction], RoomStatus] = {
    (RoomStatus.SCHEDULED, RoomAction.GO_LIVE): RoomStatus.LIVE,
    (RoomStatus.LIVE, RoomAction.GO_LIVE): RoomStatus.LIVE,  # idempotent: a retried "go live"
    (RoomStatus.SCHEDULED, RoomAction.END): RoomStatus.ENDED,
    (RoomStatus.LIVE, RoomAction.END): RoomStatus.ENDED,
    (RoomStatus.ENDED, RoomAction.END): RoomStatus.ENDED,
}


def transition(current: str, action: RoomAction) -> RoomStatus:
    """The next status, or ``RoomStateConflict`` when the action is not allowed from ``current``."""
    try:
        return _TRANSITIONS[(RoomStatus(current), action)]
    except KeyError:
        raise RoomStateConflict(
            f"A room that is {current} cannot {action.value}.", code="room_ended"
        ) from None


def accepts_sales(status: str) -> bool:
    """Cards may be pinned and sold before the show goes live and during it, never after it ended."""
    return RoomStatus(status) is not RoomStatus.ENDED


def admits_joins(status: str, *, replay_published: bool, recorded: bool) -> bool:
    """Whether a room takes new viewers: before and during the show; after it only for its replay (回放),
    while the host keeps it published and a recording exists. The invite rules apply as during the show:
    a replay is as private as its room."""
    if RoomStatus(status) is not RoomStatus.ENDED:
        return True
    return replay_published and recorded
