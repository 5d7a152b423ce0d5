"""The edge maps every error of every package to its HTTP status, in one table (``livecart.edge``)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

import base.errors
import livecart.edge
from base.errors import LiveCartError
from livecart.edge import STATUS, exception_handlers, status_of

PACKAGES = ("base", "identity", "realtime", "live", "shop", "reporting", "livecart")


def _all_errors() -> list[type[LiveCartError]]:
    for name in PACKAGES:  # import every module, so every error class is defined
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if ".migrations" not in info.name:
                importlib.import_module(info.name)
    found: list[type[LiveCartError]] = []
    todo: list[type[LiveCartError]] = [LiveCartError]
    while todo:
        cls = todo.pop()
        if not cls.__module__.startswith("tests."):  # (a test's own throwaway subclass)
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


ROOTS = {"LiveCartError", "RequestError", "IdentityError", "LiveError", "ShopError"}


def test_every_error_class_has_a_status() -> None:
    missing = [
        f"{c.__module__}.{c.__qualname__}"
        for c in _all_errors()
        if c.__name__ not in ROOTS and status_of(c) is None
    ]
    assert missing == []


def test_each_package_error_lives_under_its_package_root() -> None:
    """An error of package P is defined in P's errors.py and derives from P's root (base's own are in
    base.errors)."""
    roots = {"identity": "IdentityError", "live": "LiveError", "shop": "ShopError"}
    wrong = []
    for cls in _all_errors():
        package = cls.__module__.split(".")[0]
        if cls.__module__ != f"{package}.errors":
            wrong.append(f"{cls.__module__}.{cls.__qualname__} is not in {package}/errors.py")
        root = roots.get(package)
        if root is not None and root not in {c.__name__ for c in cls.__mro__}:
            wrong.append(f"{cls.__qualname__} does not derive from {root}")
    assert wrong == []


def test_roots_have_no_status_of_their_own() -> None:
    """A root is abstract: only a specific error says how it is answered."""
    assert [c.__name__ for c in STATUS if c.__name__ in ROOTS] == []


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})


async def test_a_domain_error_is_answered_with_its_status_and_body() -> None:
    from shop.errors import SoldOut

    response = await exception_handlers[LiveCartError](
        _request(), SoldOut("Sold out.", extra={"stock_left": 0})
    )
    assert response.status_code == 409
    assert response.body == b'{"error":"sold_out","detail":"Sold out.","stock_left":0}'


async def test_unavailable_says_when_to_retry_and_unauthorized_how() -> None:
    from identity.errors import InvalidToken

    down = await exception_handlers[LiveCartError](_request(), base.errors.DependencyUnavailable("down"))
    assert (down.status_code, down.headers["retry-after"]) == (503, "1")
    bad = await exception_handlers[LiveCartError](_request(), InvalidToken("no"))
    assert (bad.status_code, bad.headers["www-authenticate"]) == (401, "Bearer")


async def test_a_405_keeps_its_allow_header() -> None:
    exc = HTTPException(405, headers={"Allow": "GET, POST"})
    response = await exception_handlers[HTTPException](_request(), exc)
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"


async def test_an_error_without_a_status_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    class Unmapped(LiveCartError):
        pass

    response = await livecart.edge._on_livecart_error(_request(), Unmapped("?"))
    assert response.status_code == 500 and "unhandled error" in caplog.text
