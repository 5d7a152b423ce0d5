"""What a client may send (pure): today one kind of frame, chat, one at a time, length-capped and
rate-limited.

``chat_text`` checks one client frame and returns the text to publish, or raises the ``RealtimeError``
whose close code the sender gets. A message over a rate limit is refused with an ``error`` frame
(``rate_limited_frame``, with ``retry_after`` in seconds), and the third refusal in a row closes the socket
with 4429 (``Chat.refused``). Two limits apply, in this order:

- ``ChatLimiter``, per socket, in this process: a token bucket as large as the per-customer limit and
  refilled at its average rate. It is never stricter than that limit, and it spares Redis the messages of
  a socket that is already over it (a client flooding one socket costs no Redis call per message).
- the per-customer and per-IP limits in Redis (``base.limits``: ``chat_per_customer`` across all of a
  customer's sockets, on every process; ``chat_per_ip``), checked by ``realtime.service`` before publishing.
  The host's messages are held to the bucket alone.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from typing import Literal

from realtime.errors import CloseCode, RealtimeError
from realtime.frames import dumps, text_frame

MAX_CHAT_CHARS = 500
STRIKES_TO_CLOSE = 3


def rate_limited_frame(retry_after: int) -> bytes:
    """The answer to a chat message over a rate limit: try again in ``retry_after`` seconds."""
    body = {"type": "error", "error": "rate_limited", "retry_after": retry_after}
    return text_frame(dumps(body).encode())


def chat_text(message: str | bytes, room_id: str) -> str:
    """The chat text in this client frame (stripped), or ``RealtimeError`` with the sender's close code."""
    if not isinstance(message, str):
        raise RealtimeError(CloseCode.BAD_FRAME, "text frames only")
    try:
        frame = json.loads(message)
    except (ValueError, RecursionError):
        raise RealtimeError(CloseCode.BAD_FRAME, "not JSON") from None
    if not isinstance(frame, dict) or frame.get("type") != "chat":
        raise RealtimeError(CloseCode.BAD_FRAME, "unknown frame type")
    if "room" in frame and frame["room"] != room_id:
        raise RealtimeError(CloseCode.FORBIDDEN, "frame for another room")
    body = frame.get("text")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_CHAT_CHARS:
        raise RealtimeError(CloseCode.BAD_FRAME, f"chat text must be 1-{MAX_CHAT_CHARS} characters")
    return body.strip()


@dataclass(slots=True)
class ChatLimiter:
    """A token bucket: ``burst`` messages at once, refilled at ``per_second``."""

    now: float
    burst: float
    per_second: float
    allowance: float = field(init=False)

    def __post_init__(self) -> None:
        self.allowance = self.burst

    def take(self, now: float) -> int:
        """0 when a message sent at ``now`` may go out (it is counted); else the seconds until one may."""
        self.allowance = min(self.burst, self.allowance + (now - self.now) * self.per_second)
        self.now = now
        if self.allowance < 1:
            return max(1, math.ceil((1 - self.allowance) / self.per_second))
        self.allowance -= 1
        return 0


@dataclass(slots=True)
class Chat:
    """One connection's chat."""

    limiter: ChatLimiter
    #: ``host``: the room's host; a viewer's lines say ``viewer``, whatever their name
    role: Literal["host", "viewer"]
    #: the name its messages go out under (``None`` until their first message reads it)
    name: str | None
    #: whom the per-customer limit counts (``ViewerIdentity.buyer_key``), and the client's address;
    #: ``None`` for the host
    buyer: str | None = None
    ip: str = ""
    #: refusals in a row
    strikes: int = 0
    #: its last message on its way: the next one waits for it, so one sender's messages keep their order
    sent: asyncio.Future[None] | None = None

    def refused(self) -> None:
        """A message of this connection was refused; ``RealtimeError`` (4429) after repeated refusals."""
        self.strikes += 1
        if self.strikes >= STRIKES_TO_CLOSE:
            raise RealtimeError(CloseCode.RATE_LIMITED, "chat too fast")

    def went_out(self) -> None:
        self.strikes = 0
