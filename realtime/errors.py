"""Errors of ``realtime``: a frame or a connection the hub refuses. Each carries the close code it is
answered with (``realtime.close_codes`` says what each code means and whether it is final).

    RealtimeError          the root; ``code`` and ``reason`` become the close frame
"""

from __future__ import annotations

from realtime.close_codes import CloseCode

__all__ = ["CloseCode", "RealtimeError"]


class RealtimeError(Exception):
    """A frame or a connection the hub refuses; carries the close code to answer with."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
