"""Every close code a room socket can end with, and what the client should do about it: one table, which
the server closes with and the pages receive (``live.pages`` serves it as ``/static/close-codes.js``), so
the browser and the server cannot disagree.

Policy (Centrifugo's): a code either lets the client reconnect (with backoff, and ``since``/``epoch`` to
recover what it missed) or is final (reconnecting cannot help until something changes: a new token, another
room). Codes added from now on take their number from Centrifugo's ranges, 4000-4499 for reconnect and
4500-4999 for final. The three final codes of contract v1 (SPEC §5: 4401, 4403, 4404) keep the numbers
clients already rely on, so for them this table, not the range, is the rule.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CloseCode(enum.IntEnum):
    #: sent by a client to itself: it saw a gap in ``seq`` and reconnects to have the events replayed
    GAP = 4000
    BAD_FRAME = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NO_ROOM = 4404
    TOO_SLOW = 4408
    RATE_LIMITED = 4429
    #: the viewer opened more sockets than ``LIVECART_WS_MAX_PER_VIEWER``: this one was their oldest
    TOO_MANY_SOCKETS = 4509
    #: the websocket library's own: a frame larger than ``LIVECART_WS_MAX_FRAME_BYTES``
    TOO_LARGE = 1009
    #: the server failed, or the peer stopped answering pings
    SERVER_ERROR = 1011


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    code: CloseCode
    meaning: str
    #: ``True``: do not reconnect without changing something; ``False``: reconnect with backoff
    final: bool


POLICY: tuple[ClosePolicy, ...] = (
    ClosePolicy(CloseCode.GAP, "the client missed events and reconnects to have them replayed", False),
    ClosePolicy(
        CloseCode.BAD_FRAME,
        "the client sent a frame the hub cannot take (not JSON, unknown type, a field out of bounds)",
        False,
    ),
    ClosePolicy(CloseCode.UNAUTHORIZED, "no token, or a token that does not verify", True),
    ClosePolicy(CloseCode.FORBIDDEN, "a valid token, but not a viewer or the host of this room", True),
    ClosePolicy(CloseCode.NO_ROOM, "no such room", True),
    ClosePolicy(
        CloseCode.TOO_SLOW, "too slow: the backlog passed its bound (reconnect with since to catch up)", False
    ),
    ClosePolicy(CloseCode.RATE_LIMITED, "chat faster than its rate limit, again and again", False),
    ClosePolicy(
        CloseCode.TOO_MANY_SOCKETS,
        "the same viewer opened more sockets than the cap (another tab or device): this, their oldest, "
        "stays closed",
        True,
    ),
    ClosePolicy(CloseCode.TOO_LARGE, "a frame larger than the cap", False),
    ClosePolicy(CloseCode.SERVER_ERROR, "the server failed, or the peer stopped answering pings", False),
)

FINAL: frozenset[int] = frozenset(p.code for p in POLICY if p.final)


def is_final(code: int) -> bool:
    """Whether a client closed with ``code`` should stay closed (unknown codes are retried)."""
    return code in FINAL
