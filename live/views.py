"""Rooms as JSON: what anyone in the room may see, and what only its host sees."""

from __future__ import annotations

from typing import Any

from base.clock import iso
from live.models import Room


def public_room(room: Room) -> dict[str, Any]:
    """The room as its viewers see it (snapshots, room events): never its invite token."""
    return {
        "id": room.id,
        # The shop: the viewer page reads the buyer's own orders across its shows (``/api/me?shop=``).
        "host_id": room.host_id,
        "title": room.title,
        "status": room.status,
        "scheduled_at": iso(room.scheduled_ms),
        "started_at": iso(room.started_ms),
        "ended_at": iso(room.ended_ms),
        "sign_in": room.sign_in,
    }


def room_json(room: Room, *, base_url: str, for_host: bool) -> dict[str, Any]:
    """The room over HTTP: the invite token and link for its host, ``null`` for anyone else."""
    base = base_url.rstrip("/")
    return {
        **public_room(room),
        "invite_token": room.invite_token if for_host else None,
        "invite_url": f"{base}/r/{room.id}?invite={room.invite_token}" if for_host else None,
    }
