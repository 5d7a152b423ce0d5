"""What a client may send (pure): today one kind of frame, chat, one at a time, length-capped and
rate-limited per connection.

``chat_text`` checks one client frame and returns the text to publish, or raises the ``RealtimeError``
whose close code the sender gets. ``ChatLimiter`` is a token bucket (``burst`` messages, refilled at
``per_second``): a message over the limit is refused with an ``error`` frame, and the third refusal in a
row closes the socket with 4429.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from realtime.errors import CloseCode, RealtimeError
from realtime.frames import dumps, text_frame

MAX_CHAT_CHARS = 500
CHAT_BURST = 5
CHAT_PER_SECOND = 1.0
STRIKES_TO_CLOSE = 3

#: The answer to a chat message over the rate limit.
RATE_LIMITED_FRAME = text_frame(dumps({"type": "error", "error": "rate_limited"}).encode())


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
    now: float
    burst: float = CHAT_BURST
    per_second: float = CHAT_PER_SECOND
    allowance: float = field(init=False)
    strikes: int = 0

    def __post_init__(self) -> None:
        self.allowance = self.burst

    def allow(self, now: float) -> bool:
        """Whether a message sent at ``now`` may go out; ``RealtimeError`` (4429) after repeated abuse."""
        self.allowance = min(self.burst, self.allowance + (now - self.now) * self.per_second)
        self.now = now
        if self.allowance < 1:
            self.strikes += 1
            if self.strikes >= STRIKES_TO_CLOSE:
                raise RealtimeError(CloseCode.RATE_LIMITED, "chat too fast")
            return False
        self.allowance -= 1
        self.strikes = 0
        return True


@dataclass(slots=True)
class Chat:
    """One connection's chat."""

    limiter: ChatLimiter
    #: the name its messages go out under (``None``: a viewer's, read at their first message)
    name: str | None
    #: its last message on its way: the next one waits for it, so one sender's messages keep their order
    sent: asyncio.Future[None] | None = None
