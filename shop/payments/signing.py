"""Webhook signatures (pure). Header: ``LiveCart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``"<t>.<raw body>"``, as Stripe does. Too old *or* too far in the future is refused, so a captured request
cannot be replayed later nor prepared in advance."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "LiveCart-Signature"


class SignatureError(ValueError):
    pass


def sign(body: bytes, *, secret: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(body: bytes, header: str | None, *, secret: bytes, now: int, tolerance: int) -> None:
    """Raise ``SignatureError`` unless ``header`` signs ``body`` within ``tolerance`` seconds of ``now``."""
    if not header:
        raise SignatureError("missing signature header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("signature header has no valid timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureError("signature timestamp outside the tolerance window")
    expected = sign(body, secret=secret, timestamp=timestamp).rpartition("v1=")[2]
    # Compare bytes: compare_digest refuses non-ASCII str, and a header is attacker-controlled text.
    given = [candidate.encode("utf-8", "surrogateescape") for candidate in fields.get("v1", [])]
    if not any(hmac.compare_digest(expected.encode(), candidate) for candidate in given):
        raise SignatureError("signature does not match")
