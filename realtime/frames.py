"""Server-to-client websocket frames, built once and written as they are to every socket (pure).

Frames a server sends are not masked (RFC 6455 §5.1), so one text frame's bytes are valid on every
connection that did not negotiate an extension: the hub encodes each event once, not once per viewer,
as ``websockets.broadcast()`` does.
"""

from __future__ import annotations

import json
import struct
from typing import Any

FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One final text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        return bytes((FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", FIN_TEXT, 127, n) + payload


def dumps(body: dict[str, Any]) -> str:
    """A frame's JSON text, compact (every frame a broker publishes is encoded this way)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
