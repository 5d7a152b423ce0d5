"""The error root and its mapping to HTTP responses — the only place errors become responses.

    LiveCartError                      every error a client may see: ``{"error": code, "detail": text}``
    ├── BadRequest (400)               malformed JSON, bad headers
    ├── Unauthorized (401)             no or bad token
    ├── Forbidden (403)                valid token, not yours
    ├── NotFound (404)
    ├── Conflict (409)                 the state does not allow it (sold out, sale not open, ...)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)     a body of the wrong Content-Type (an SDP offer must be application/sdp)
    ├── Unprocessable (422)            well-formed but invalid values
    └── ServiceUnavailable (503)       a dependency failed; nothing was acknowledged

Errors of Redis or SQL themselves (``DEPENDENCY_ERRORS``: down, timed out, out of connections) are also
answered 503; anything else unexpected is a 500 and is logged.

Packages raise these (or their own subclasses) with a specific ``code``.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import sqlalchemy.exc
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("livecart.errors")


class LiveCartError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict[str, object] | None = None):
        super().__init__(detail)
        self.code = code or self.default_code
        self.detail = detail
        self.extra = extra or {}

    def body(self) -> dict[str, object]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(LiveCartError):
    status = 400
    default_code = "bad_request"


class Unauthorized(LiveCartError):
    status = 401
    default_code = "unauthorized"


class Forbidden(LiveCartError):
    status = 403
    default_code = "forbidden"


class NotFound(LiveCartError):
    status = 404
    default_code = "not_found"


class Conflict(LiveCartError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(LiveCartError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(LiveCartError):
    status = 415
    default_code = "unsupported_media_type"


class Unprocessable(LiveCartError):
    status = 422
    default_code = "invalid_request"


class ServiceUnavailable(LiveCartError):
    status = 503
    default_code = "unavailable"


def error_response(status: int, code: str, detail: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status, headers=headers)


async def _on_livecart_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LiveCartError)
    response = error_response(exc.status, exc.code, exc.detail, **exc.extra)
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    return response


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), **({}))


async def _on_dependency_down(request: Request, exc: Exception) -> Response:
    """Redis or SQL unreachable, timed out or out of connections: nothing was acknowledged, retry later."""
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
    response = error_response(
        503, "unavailable", "A backing service is unavailable; nothing was changed. Retry shortly."
    )
    response.headers["Retry-After"] = "1"
    return response


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")


#: Failures of Redis or SQL themselves (not of a statement LiveCart sent): answered 503.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)

exception_handlers = {
    LiveCartError: _on_livecart_error,
    HTTPException: _on_http_exception,
    **dict.fromkeys(DEPENDENCY_ERRORS, _on_dependency_down),
    Exception: _on_unexpected,
}
