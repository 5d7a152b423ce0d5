"""The broker: how a room's events reach every process that has viewers of the room.

One interface, two implementations: ``broker_redis.RedisBroker`` (any number of processes; the default) and
``broker_memory.MemoryBroker`` (one process, no Redis round trip; ``LIVECART_REALTIME_BROKER=memory``).

What every broker guarantees:

- **Position.** Each room has a sequence (``seq``, 1, 2, ...) and an ``epoch``; the epoch changes only when
  the broker lost the room's history, so ``(seq, epoch)`` names one event for good.
- **Publish with a gate.** ``publish`` appends an event with the next seq. With a ``gate`` it is coalesced:
  at most one event per ``min_interval_ms`` passes a gate (``Later``: publish it again then), and a
  ``value`` equal to the last one that passed is dropped (``"same"``). ``gate_values`` says what passed last.
- **Bounded history.** About ``history`` events are kept; ``replay`` returns the events after a position,
  or ``None`` when some of them are gone (the client needs a snapshot).
- **Retraction.** ``retract`` marks a chat line still in the history as deleted: ``replay`` leaves it out
  from then on (its seq is simply missing; ``None`` still means exactly what it meant). Readers already
  past it are not told here: the caller publishes its own event for them (``chat_deleted``).
- **Reading.** After ``start``, every event of a ``watch``ed room after the watched position reaches the
  handler once, in order, and a reader that fell behind the history is told (``on_gap``) before it goes on
  with what is left.
- **Personal frames.** ``send_personal`` queues a frame for one viewer's sockets (not part of the room's
  sequence); the caller does not wait. ``stop`` sends what is queued; what is queued after it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

#: (room id, seq, frame JSON bytes, to): seq 0 marks a personal frame, whose viewer is in ``to``
Handler = Callable[[str, int, bytes, str | None], None]
#: (room id): this process fell so far behind that the history was trimmed past it (events are lost here)
GapHandler = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Later:
    """The gate held an event back: publish it again in ``wait_ms``."""

    wait_ms: int


#: What ``publish`` did: the event's seq, or why the gate held it back.
Published = int | Later | Literal["same"]


class Broker(Protocol):
    # -- writing -----------------------------------------------------------------------------------------

    async def publish(
        self,
        room_id: str,
        kind: str,
        body: dict[str, Any],
        *,
        now_ms: int,
        gate: str = "",
        min_interval_ms: int = 0,
        value: str = "",
    ) -> Published:
        """Append an event ``{"type": kind, "seq": ..., **body}``; its seq, or why the gate held it back:
        ``Later`` (too soon after the last one: publish it again when the gate opens) or ``"same"`` (that
        value was the last one)."""
        ...

    async def gate_values(self, room_id: str) -> dict[str, str]:
        """The value each of the room's gates last let through (gate name -> value)."""
        ...

    async def retract(self, room_id: str, seq: int) -> bool:
        """Mark the room's event ``seq`` retracted, so that ``replay`` leaves it out from now on: ``True``
        when it is a chat line (``{"type": "chat", ...}``) still in the history and not retracted yet;
        otherwise ``False`` and nothing changes. Atomic: of concurrent retracts of one line, one is
        ``True``."""
        ...

    def send_personal(self, room_id: str, viewer_id: str, kind: str, body: dict[str, Any]) -> None:
        """Queue a frame ``{"type": kind, **body}`` for one viewer's sockets in the room (no waiting)."""
        ...

    async def flush_personal(self) -> None:
        """Wait until every personal frame queued so far has gone out (or failed)."""
        ...

    # -- reading -----------------------------------------------------------------------------------------

    async def position(self, room_id: str) -> tuple[int, str]:
        """The room's last seq and its epoch (one is made if the room has none yet)."""
        ...

    async def replay(self, room_id: str, since: int, epoch: str) -> list[tuple[int, bytes]] | None:
        """The events after ``since`` if the history still holds all of them for this epoch, else ``None``;
        retracted events are left out of the list (and never make it ``None``)."""
        ...

    async def watch(self, room_id: str, seq: int) -> None:
        """Hand the room's events after ``seq``, and its personal frames from now on, to the handler
        (idempotent: a room already watched keeps its position)."""
        ...

    def unwatch(self, room_id: str) -> None:
        """Stop reading the room (no viewer of it is left here)."""
        ...

    def start(self, handler: Handler, on_gap: GapHandler | None = None) -> None:
        """Start reading the watched rooms (in the running event loop)."""
        ...

    async def stop(self) -> None:
        """Send the personal frames queued so far and stop reading; frames queued from now on are dropped."""
        ...
