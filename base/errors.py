"""The error root of the house, and the errors of ``base`` itself. Errors say what went wrong, never how
to answer it: the HTTP status of each is decided in one place at the edge (``livecart.edge``).

    LiveCartError                      every error a client may see: ``{"error": code, "detail": text}``
    ├── RequestError                   the request itself cannot be taken
    │   ├── MalformedRequest           malformed JSON, a bad header, a body that cannot be read
    │   ├── InvalidRequest             well-formed, but a value is invalid
    │   ├── BodyTooLarge               a body over its cap
    │   └── WrongMediaType             a body of the wrong Content-Type
    ├── DependencyUnavailable          Redis or SQL failed or timed out; nothing was acknowledged
    ├── RateLimited                    too many requests from one IP, phone or customer (429)
    ├── identity.errors.IdentityError  who is calling, and what they may touch
    ├── live.errors.LiveError          rooms, invites, video
    └── shop.errors.ShopError          cards, stock, orders, payments

Failures of Redis or SQL themselves (``DEPENDENCY_ERRORS``: down, timed out, out of connections) are
answered like ``DependencyUnavailable``; anything else unexpected is a 500 and is logged.
"""

from __future__ import annotations

from typing import ClassVar

import sqlalchemy.exc
from redis.exceptions import RedisError


class LiveCartError(Exception):
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict[str, object] | None = None):
        super().__init__(detail)
        self.code = code or self.default_code
        self.detail = detail
        self.extra = extra or {}

    def body(self) -> dict[str, object]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class RequestError(LiveCartError):
    """The request itself cannot be taken, whatever it asks for."""


class MalformedRequest(RequestError):
    default_code = "bad_request"


class InvalidRequest(RequestError):
    default_code = "invalid_request"


class BodyTooLarge(RequestError):
    default_code = "payload_too_large"


class WrongMediaType(RequestError):
    default_code = "unsupported_media_type"


class DependencyUnavailable(LiveCartError):
    """A backing service failed; nothing was changed or acknowledged, so a retry is safe."""

    default_code = "unavailable"


#: Failures of Redis or SQL themselves (not of a statement LiveCart sent).
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class RateLimited(LiveCartError):
    """Too many requests of one kind from one IP, phone or customer; ``retry_after`` seconds until the
    next one is taken. Nothing was changed."""

    default_code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None):
        super().__init__(detail, code=code, extra={"retry_after": retry_after})
        self.retry_after = retry_after
