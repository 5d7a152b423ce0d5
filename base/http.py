"""Request parsing at the edge: size-capped JSON bodies and query strings validated by pydantic models,
the settings."""

from __future__ import annotations

import json
from typing import TypeVar, cast

from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import HTTPConnection, Request
from starlette.routing import Match, Route

from base.errors import BodyTooLarge, InvalidRequest, MalformedRequest
from base.fields import RequestBody
from base.settings import Settings

M = TypeVar("M", bound=RequestBody)
Q = TypeVar("Q", bound=BaseModel)


class IdConvertor(Convertor[str]):
    """Path parameters that name a resource (``/api/cards/{card:id}``): a path whose id could not be one of
    ours (NUL, slashes, kilobytes of text) matches no route and is a plain 404, before any lookup."""

    regex = "[0-9A-Za-z_-]{1,64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())  # before any module builds its routes (they import this one)


def allowed_methods(request: Request, allow: str = "") -> str:
    """The ``Allow`` of a 405: ``allow`` and every method some route of the app takes at this path (the
    router's 405 names only the methods of the first route that matched, and a path often has one route
    per method)."""
    methods = {m.strip() for m in allow.split(",") if m.strip()}
    router = getattr(request.scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def settings(conn: HTTPConnection) -> Settings:
    """The app's one Settings object (the lifespan puts it in the request state as ``settings``)."""
    return cast(Settings, conn.state.settings)


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise MalformedRequest("Content-Length is not a number.", code="invalid_request")
        if int(length) > max_bytes:
            raise BodyTooLarge(f"The request body is larger than {max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"The request body is larger than {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def read_json(
    request: Request, model: type[M], *, codes: dict[str, str] | None = None, empty_ok: bool = False
) -> M:
    """Parse the body as ``model``. ``codes`` maps a field name to the error code used when it is invalid."""
    body = await read_body(request, max_bytes=settings(request).max_body_bytes)
    if not body.strip():
        if not empty_ok:
            raise MalformedRequest("A JSON body is required.", code="invalid_json")
        data: object = {}
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise MalformedRequest(
                "The body nests too deeply to be a request.", code="invalid_json"
            ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        code = "invalid_request"
        for err in exc.errors(include_url=False):
            if err["loc"] and str(err["loc"][0]) in (codes or {}):
                code = (codes or {})[str(err["loc"][0])]
                break
        raise InvalidRequest(describe(exc), code=code) from None


def read_query(request: Request, model: type[Q]) -> Q:
    """Parse the query string as ``model`` (validated laxly: every query value is text, ``limit=20`` is 20).
    Names the model does not know are ignored; one it knows given twice is refused, as is any bad value:
    a 422 in the house error shape."""
    params = request.query_params
    for field_name, info in model.model_fields.items():
        name = info.alias or field_name
        if len(params.getlist(name)) > 1:
            raise InvalidRequest(f"{name}: give this query parameter once.")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def client_ip(conn: HTTPConnection) -> str:
    """The client's address as the server sees it (behind a proxy, uvicorn's ``--forwarded-allow-ips``
    makes it the ``X-Forwarded-For`` the proxy set); per-IP rate limits count it."""
    return conn.client.host if conn.client else "unknown"
