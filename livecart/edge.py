"""The edge: the one place errors become HTTP responses. Every error class of every package gets its status
here (looked up along the class's MRO, most specific first); ``tests/unit/test_edge.py`` checks that no
error class is left without one.

Redis or SQL failures (``base.errors.DEPENDENCY_ERRORS``) are answered 503 with ``Retry-After``: nothing
was acknowledged, so an idempotent retry is safe. Anything else unexpected is a logged 500.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from base import errors as base
from base.http import allowed_methods
from identity import errors as identity
from live import errors as live
from shop import errors as shop

log = logging.getLogger("livecart.errors")

STATUS: dict[type[base.LiveCartError], int] = {
    # base
    base.MalformedRequest: 400,
    base.InvalidRequest: 422,
    base.BodyTooLarge: 413,
    base.WrongMediaType: 415,
    base.DependencyUnavailable: 503,
    base.RateLimited: 429,
    # identity
    identity.InvalidToken: 401,
    identity.NotPermitted: 403,
    identity.InvalidInvite: 403,
    identity.SignInRequired: 401,
    identity.InvalidCode: 401,
    identity.InvalidPhone: 422,
    identity.SignInUnavailable: 409,
    identity.ProviderFailed: 502,
    identity.InvalidState: 400,
    # live
    live.UnknownRoom: 404,
    live.UnknownSession: 404,
    live.PhoneTaken: 409,
    live.UnknownVideoSession: 404,
    live.NoThumbnail: 404,
    live.RoomStateConflict: 409,
    live.NotLive: 409,
    live.ViewerCap: 409,
    live.SignupClosed: 403,
    live.ForgedForward: 403,
    live.NotYourVideo: 403,
    live.HlsForbidden: 403,
    live.NoHls: 404,
    live.InvalidSdp: 400,
    live.InvalidPage: 422,
    live.VideoUnavailable: 503,
    # shop
    shop.UnknownResource: 404,
    shop.SoldOut: 409,
    shop.SaleNotOpen: 409,
    shop.LimitExceeded: 409,
    shop.OrderStateConflict: 409,
    shop.CardStateConflict: 409,
    shop.InvalidQuantity: 422,
    shop.InvalidRefund: 422,
    shop.NothingOwed: 409,
    shop.LeaderExists: 409,
    shop.IdempotencyMismatch: 422,
    shop.NothingToChange: 422,
    shop.MissingIdempotencyKey: 400,
    shop.InvalidIdempotencyKey: 400,
    shop.InvalidSignature: 400,
    shop.InvalidWebhook: 400,
    shop.RejectedNotification: 401,
    shop.UnknownProvider: 422,
    shop.AddressRequired: 422,
    shop.AfterSaleRefused: 409,
    shop.RefundStateConflict: 409,
    shop.ProviderFailed: 502,
    shop.WrongRoom: 403,
    shop.TooManyOrders: 429,
    shop.InventoryUnavailable: 503,
    shop.CommitTimedOut: 503,
}


def status_of(error: type[base.LiveCartError]) -> int | None:
    """The HTTP status an error class is answered with, or ``None`` if it has none (a bug the unit test
    catches)."""
    for cls in error.__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


def error_response(status: int, code: str, detail: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status == 503:
        headers["Retry-After"] = "1"
    if status == 429:
        headers["Retry-After"] = str(extra.get("retry_after", 1))
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status, headers=headers)


async def _on_livecart_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, base.LiveCartError)
    status = status_of(type(exc))
    if status is None:
        return await _on_unexpected(request, exc)
    return error_response(status, exc.code, exc.detail, **exc.extra)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error_response(
        exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail)
    )
    if exc.headers:  # e.g. the Allow of a 405
        response.headers.update(exc.headers)
    if exc.status_code == 405:  # every method of the path, not only those of the route that refused
        response.headers["Allow"] = allowed_methods(request, response.headers.get("Allow", ""))
    return response


async def _on_dependency_down(request: Request, exc: Exception) -> Response:
    """Redis or SQL unreachable, timed out or out of connections: nothing was acknowledged, retry later."""
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(
        503, "unavailable", "A backing service is unavailable; nothing was changed. Retry shortly."
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")


exception_handlers = {
    base.LiveCartError: _on_livecart_error,
    HTTPException: _on_http_exception,
    **dict.fromkeys(base.DEPENDENCY_ERRORS, _on_dependency_down),
    Exception: _on_unexpected,
}
