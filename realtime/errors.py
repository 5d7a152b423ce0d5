"""Close codes of the realtime hub, one policy for every socket (Centrifugo's split: 4000-4499 the client
may reconnect, 4500-4999 it should not without changing something).

    4400  the client sent a frame the hub cannot take (not JSON, unknown type, a field out of bounds)
    4401  no token, or a token that does not verify
    4403  a valid token, but not a viewer or the host of this room (or a frame naming another room)
    4404  no such room
    4408  too slow: the viewer's backlog passed its bound (reconnect with ``since`` to catch up)
    4429  chat faster than its rate limit, again and again
    1009  a frame larger than the cap (the websocket library's own code)
    1011  the server failed, or the peer stopped answering pings
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    BAD_FRAME = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NO_ROOM = 4404
    TOO_SLOW = 4408
    RATE_LIMITED = 4429


class RealtimeError(Exception):
    """A frame or a connection the hub refuses; carries the close code to answer with."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
