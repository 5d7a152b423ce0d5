"""SQL tables of ``realtime``: who watched a room, and how many watched it over time (SPEC invariant 9).

Live presence is counted in Redis across processes; these tables make the dashboard's viewer figures
derivable from SQL: ``viewers_unique`` is the number of ``room_viewers`` rows of the room, ``viewers_peak``
the largest sample in ``room_viewer_samples``. Rows are written only from authenticated connections the
hub holds; there is no other writer.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from base.db import Base


class RoomViewer(Base):
    """A viewer who had a live connection to the room at least once."""

    __tablename__ = "room_viewers"
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    viewer_id: Mapped[str] = mapped_column(ForeignKey("viewers.id"), primary_key=True)
    first_seen_ms: Mapped[int]


class ViewerSample(Base):
    """The room's distinct live viewers across processes at ``at_ms``, written when the count changes."""

    __tablename__ = "room_viewer_samples"
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    at_ms: Mapped[int] = mapped_column(primary_key=True)
    viewers: Mapped[int]
    connections: Mapped[int]
