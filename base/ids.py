"""Identifiers: a short type prefix and 26 Crockford base32 characters (48-bit ms time + 80 random bits).

Time-ordered, so rows insert in index order and ids sort by creation.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def random_code(length: int = 10) -> str:
    """An unguessable code for share links (about 5 bits per character)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
