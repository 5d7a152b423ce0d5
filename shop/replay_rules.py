"""Pure decisions of a show's replay (SPEC §11, issue 14): where a moment of the show falls in the video,
the timeline of its cards, what becomes of its cards when it ends, and when its recording is deleted. No
I/O; ``shop/replay.py`` reads and writes, ``shop/card_timeline.py`` records the moments.

The replay's clock. A recording is the sequence of its segments (``live.hls_rules.Segment``), each with the
wall-clock time of its first frame and its duration. A player's position in the replay is the sum of the
durations before the segment it plays, plus how far into that one it is: wall-clock gaps (the video was
off, the encoder restarted) take no replay time. So a moment of the show at wall-clock ``at`` is, in the
replay: inside a segment, that segment's start in the replay plus ``at`` minus its start; in a gap before a
segment, that segment's start (the moment is shown as the video comes back); before the recording, 0; after
it, its end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from base.clock import iso
from live.hls_rules import Segment

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: A recording whose show ended is deleted only once its encoder finished it (the ``ended`` marker), or
#: this long after the end (an encoder that never finished): deleting it under an encoder still writing
#: its last segment would leave that segment behind.
FINISH_GRACE_MS = 60_000


class CardEventKind(StrEnum):
    PINNED = "pinned"  # the card was created
    OPENED = "opened"
    PRICE_CUT = "price_cut"
    PRICE_RAISED = "price_raised"
    SOLD_OUT = "sold_out"
    CLOSED = "closed"


class ReplayState(StrEnum):
    """``rooms.replay``: what became of the room's recording (``None`` in SQL is ``KEPT``)."""

    KEPT = "kept"  # published (or no recording was ever made)
    HIDDEN = "hidden"
    DELETING = "deleting"  # deleted while the show was live: its files go once it has ended
    DELETED = "deleted"

    @classmethod
    def of(cls, column: str | None) -> ReplayState:
        return cls.KEPT if column is None else cls(column)

    @property
    def column(self) -> str | None:
        return None if self is ReplayState.KEPT else self.value

    @property
    def gone(self) -> bool:
        return self in (ReplayState.DELETING, ReplayState.DELETED)


@dataclass(frozen=True, slots=True)
class CardMoment:
    """One recorded event of a card (a ``card_events`` row)."""

    card_id: str
    event: CardEventKind
    at_ms: int
    price: int | None = None


# -- the replay's clock ------------------------------------------------------------------------------------


def offset_of(at_ms: int, segments: Sequence[Segment]) -> float:
    """Seconds into the replay of the wall-clock instant ``at_ms`` (epoch ms), given the recording's
    ``segments`` in order (see the module's docstring). Never decreases as ``at_ms`` grows, even where
    segments overlap on the wall clock (the earlier one wins)."""
    elapsed = 0.0
    for segment in segments:
        if at_ms < segment.start_ms:
            return elapsed
        if at_ms < segment.end_ms:
            return elapsed + min(segment.duration, (at_ms - segment.start_ms) / 1000)
        elapsed += segment.duration
    return elapsed


def duration_of(segments: Sequence[Segment]) -> float:
    return sum(s.duration for s in segments)


def timeline(moments: Iterable[CardMoment], segments: Sequence[Segment]) -> list[dict[str, Any]]:
    """The replay's timeline: each moment with its offset ``t`` (seconds, 3 decimals) and wall time ``at``,
    in the order of the show (moments of the same millisecond keep the order given)."""
    ordered = sorted(moments, key=lambda m: m.at_ms)
    return [
        {
            "t": round(offset_of(m.at_ms, segments), 3),
            "at": iso(m.at_ms),
            "card_id": m.card_id,
            "event": m.event.value,
            "price": m.price,
        }
        for m in ordered
    ]


def price_event(old: int, new: int) -> CardEventKind | None:
    """The event of a price change (``None``: the price did not change)."""
    if new < old:
        return CardEventKind.PRICE_CUT
    if new > old:
        return CardEventKind.PRICE_RAISED
    return None


# -- the end of a show ----------------------------------------------------------------------------------


def closes_after_end(closes_ms: int | None, *, ended_ms: int, sales_hours: int) -> int:
    """When an open card of a show that ended at ``ended_ms`` stops selling, for a shop whose replay sales
    last ``sales_hours`` (> 0): its own end if that comes first (a sale is never made longer)."""
    last = ended_ms + sales_hours * HOUR_MS
    return last if closes_ms is None else min(closes_ms, last)


def stays_open(status: str, *, sales_hours: int) -> bool:
    """Whether a card of a show that just ended stays on sale for the replay's viewers: an *open* card of a
    shop with replay sales. A pinned card (never opened) closes, as every card of a shop without them."""
    return sales_hours > 0 and status == "open"


# -- retention ------------------------------------------------------------------------------------------


def keep_days_of(shop_days: int | None, *, default_days: int) -> int:
    return default_days if shop_days is None else shop_days


def delete_at(ended_ms: int | None, *, keep_days: int) -> int | None:
    """When a show's recording is deleted (epoch ms); ``None`` while the show has not ended."""
    return None if ended_ms is None else ended_ms + keep_days * DAY_MS


def may_delete_files(*, ended_ms: int, now_ms: int, finished: bool) -> bool:
    """Whether the recording of a show that ended (and is due for deletion) may be deleted now: once its
    encoder finished it, or ``FINISH_GRACE_MS`` after the end whatever the encoder did."""
    return finished or now_ms >= ended_ms + FINISH_GRACE_MS


def replay_phase(*, room_ended: bool, recording_finished: bool) -> str:
    """``ready`` once the show ended (its playlist is, or is about to be, finished); ``recording`` before."""
    return "ready" if room_ended or recording_finished else "recording"
