"""The OpenAPI document, built from the routes and what each endpoint declares with ``@doc``: the pydantic
models it validates its body and query with, its answers, and the error classes it raises.

The document is OpenAPI 3.0.3, whose ``integer`` is "a JSON number without a fraction or exponent part":
exactly what the strict body models take (``1.0`` is refused where an integer is due; JSON Schema 2020-12,
the dialect of OpenAPI 3.1, counts ``1.0`` as an integer). Pydantic writes 2020-12, so every schema is
converted here (``null`` becomes ``nullable``, ``const`` a one-value ``enum``, numeric exclusive bounds the
3.0 booleans); a schema with no 3.0 spelling fails the build, and ``tests/unit/test_openapi.py`` with it.

Errors are declared as classes (with a code where the raise site gives one); the HTTP status of each is not
this module's to know: ``build`` takes ``status_of`` from the edge (``livecart.edge``). Every operation
documents each status it can answer and, for errors, the exact ``error`` codes (an ``enum``), so a client
and a schema-driven test can rely on them. What every endpoint of a kind answers is added here: a body's
400/413/422, a query's 422, an unknown path id's 404, the bearer token's 401/403 (``auth_errors``), and
503 when Redis or SQL is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from starlette.convertors import Convertor
from starlette.routing import BaseRoute, Route

from base.errors import (
    BodyTooLarge,
    DependencyUnavailable,
    InvalidRequest,
    LiveCartError,
    MalformedRequest,
)
from base.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: An error an endpoint answers: its class (with the class's default code), or the class and the code the
#: raise site gives it.
ErrorSpec = type[LiveCartError] | tuple[type[LiveCartError], str]
#: The HTTP status of an error class (``livecart.edge.status_of``).
StatusOf = Callable[[type[LiveCartError]], int | None]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "description": "Every error: a code to act on, a sentence for a person (and, for some, more fields)",
}


@dataclass(frozen=True)
class Header:
    """A request header parameter, or a header of an answer."""

    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = True


#: A body's shape: a model, a list of one model, or ``None`` for a text or binary body (a string).
Content = type[BaseModel] | list[type[BaseModel]] | None


@dataclass(frozen=True)
class Reply:
    """An answer that a bare model does not describe: another media type, several, or response headers."""

    description: str
    content: Mapping[str, Content] = field(default_factory=dict)
    headers: Mapping[str, Header] = field(default_factory=dict)


#: Headers the edge puts on an error of these statuses (``livecart.edge.error_response``).
ERROR_HEADERS: dict[int, dict[str, Header]] = {
    401: {"WWW-Authenticate": Header("Bearer: the scheme to authenticate with")},
    503: {"Retry-After": Header("Seconds to wait before retrying (nothing was changed)")},
}


def doc(
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    raw_body: str | None = None,
    query: type[BaseModel] | None = None,
    responses: Mapping[int, type[BaseModel] | list[type[BaseModel]] | str | Reply] | None = None,
    auth: bool | Literal["optional"] = True,
    headers: Mapping[str, Header] | None = None,
    errors: Iterable[ErrorSpec] = (),
    maximum: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Attach the endpoint's contract.

    ``body``: the model its JSON body is read with (``body_required=False`` when an empty body is taken as
    ``{}``). ``raw_body``: the media type of a body read as bytes (``application/sdp``), with ``body`` as its
    schema when it is JSON. ``query``: the model of its query string (each field a parameter). ``responses``:
    by status. ``auth``: a bearer token is required, not taken, or ``"optional"``. ``headers``: request
    headers it requires. ``errors``: what it raises beyond what ``build`` adds for every endpoint of its kind.
    ``maximum``: a body field bounded by a setting (field name -> ``Settings`` attribute).
    """

    def attach(fn: F) -> F:
        fn.__openapi__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "body_required": body_required,
            "raw_body": raw_body,
            "query": query,
            "responses": dict(responses or {200: "OK"}),
            "auth": auth,
            "headers": dict(headers or {}),
            "errors": list(errors),
            "maximum": dict(maximum or {}),
        }
        return fn

    return attach


# -- JSON Schema 2020-12 (pydantic) to OpenAPI 3.0 ---------------------------------------------------------

_NULL = {"type": "null"}


def oas30(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One schema in OpenAPI 3.0's dialect; ``ValueError`` for what it cannot say."""
    out: dict[str, Any] = dict(schema)
    if "properties" in out:
        out["properties"] = {name: oas30(sub) for name, sub in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), Mapping):
            out[key] = oas30(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [oas30(sub) if sub != _NULL else sub for sub in out[key]]
    if _NULL in out.get("anyOf", []):
        rest = [sub for sub in out.pop("anyOf") if sub != _NULL]
        if len(rest) == 1 and set(rest[0]) == {"$ref"}:
            # A nullable object of its own schema: 3.0 ignores siblings of a $ref, so it is wrapped.
            rest = [{"allOf": rest}]
        if len(rest) != 1 or not ({"type", "allOf"} & set(rest[0])):
            raise ValueError(f"OpenAPI 3.0 has no spelling for this nullable schema: {schema}")
        out = {**rest[0], **out, "nullable": True}
    if not isinstance(out.get("type", ""), str) or out.get("type") == "null":
        raise ValueError(f"OpenAPI 3.0 has no spelling for this type: {schema}")
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in out and not isinstance(out[bound], bool):
            out[inclusive] = out[bound]
            out[bound] = True
    if "examples" in out:
        out["example"] = out.pop("examples")[0]
    return out


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = oas30(sub)
    components[model.__name__] = oas30(schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(content: Content, components: dict[str, Any]) -> dict[str, Any]:
    if content is None:
        return {"type": "string"}
    if isinstance(content, list):
        return {"type": "array", "items": _ref(content[0], components)}
    return _ref(content, components)


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        value = oas30(prop)
        value.pop("nullable", None)  # a query parameter is absent or text, never null
        if value.get("default", 0) is None:
            del value["default"]
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in value.items() if k not in ("title", "description")},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _path_schema(convertor: Convertor[Any]) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{convertor.regex}$"}


def _headers(headers: Mapping[str, Header]) -> dict[str, Any]:
    return {
        name: {"description": h.description, "required": h.required, "schema": dict(h.schema)}
        for name, h in headers.items()
    }


def _reply(answer: type[BaseModel] | list[type[BaseModel]] | str | Reply) -> Reply:
    if isinstance(answer, Reply):
        return answer
    if isinstance(answer, str):
        return Reply(answer)
    description = "OK"
    if not isinstance(answer, list) and answer.__doc__:
        description = answer.__doc__.strip().splitlines()[0]
    return Reply(description, {"application/json": answer})


def _response(reply: Reply, components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.headers:
        out["headers"] = _headers(reply.headers)
    if reply.content:
        out["content"] = {
            media: {"schema": _content(content, components)} for media, content in reply.content.items()
        }
    return out


def _error_codes(specs: Iterable[ErrorSpec | tuple[int, str]], status_of: StatusOf) -> dict[int, list[str]]:
    """Status -> the error codes answered with it, each once, in the order first given."""
    codes: dict[int, list[str]] = {}
    for spec in specs:
        if isinstance(spec, tuple) and isinstance(spec[0], int):
            status, code = spec
        else:
            cls, code = spec if isinstance(spec, tuple) else (spec, spec.default_code)
            found = status_of(cls)
            if found is None:
                raise ValueError(f"{cls.__name__} has no HTTP status")
            status = found
        if code not in codes.setdefault(status, []):
            codes[status].append(code)
    return codes


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}: " + ", ".join(f"`{c}`" for c in codes),
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"type": "object", "properties": {"error": {"type": "string", "enum": codes}}},
                    ]
                }
            }
        },
    }
    if status in ERROR_HEADERS:
        out["headers"] = _headers(ERROR_HEADERS[status])
    return out


def build(
    routes: Iterable[BaseRoute],
    *,
    title: str,
    version: str,
    status_of: StatusOf,
    auth_errors: Iterable[ErrorSpec],
    settings: Settings,
) -> dict[str, Any]:
    """The document. ``auth_errors``: what a required bearer token answers (an unknown or expired one, a
    caller who may not); ``settings``: the bounds that ``@doc(maximum=...)`` names."""
    auth_errors = list(auth_errors)
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    bounds: dict[str, dict[str, int]] = {}  # model -> field -> its maximum, from the settings
    for route in routes:
        if not isinstance(route, Route):
            continue
        meta = getattr(route.endpoint, "__openapi__", None)
        if meta is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op: dict[str, Any] = {"summary": meta["summary"], "operationId": f"{route.name}_{method.lower()}"}
            if route.endpoint.__doc__:
                op["description"] = " ".join(route.endpoint.__doc__.split())
            params = [
                {"name": name, "in": "path", "required": True, "schema": _path_schema(convertor)}
                for name, convertor in route.param_convertors.items()
            ]
            params += [
                {"name": name, "in": "header", "required": h.required, "schema": dict(h.schema)}
                | {"description": h.description}
                for name, h in meta["headers"].items()
            ]
            errors: list[ErrorSpec | tuple[int, str]] = list(meta["errors"])
            if meta["query"] is not None:
                params += _query_params(meta["query"])
                errors.append(InvalidRequest)
            if params:
                op["parameters"] = params
            body, raw = meta["body"], meta["raw_body"]
            if raw:
                schema = _ref(body, components) if body is not None else {"type": "string"}
                op["requestBody"] = {"required": True, "content": {raw: {"schema": schema}}}
                errors.append(BodyTooLarge)
            elif body is not None:
                schema = _ref(body, components)
                op["requestBody"] = {
                    "required": meta["body_required"],
                    "content": {"application/json": {"schema": schema}},
                }
                errors += [(MalformedRequest, "invalid_json"), BodyTooLarge, InvalidRequest]
            for name, setting in meta["maximum"].items():
                assert body is not None, "maximum bounds a body field"
                bounds.setdefault(body.__name__, {})[name] = getattr(settings, setting)
            if route.param_convertors:
                errors.append((404, "not_found"))  # an id no route matches, or no resource has
            if meta["auth"] is True:
                errors += auth_errors
                op["security"] = [{"bearer": []}]
            elif meta["auth"] == "optional":
                op["security"] = [{}, {"bearer": []}]
            errors.append(DependencyUnavailable)
            responses = {
                str(status): _response(_reply(answer), components)
                for status, answer in sorted(meta["responses"].items())
            }
            for status, codes in sorted(_error_codes(errors, status_of).items()):
                assert str(status) not in responses, f"{route.path} {method}: {status} is both"
                responses[str(status)] = _error_response(status, codes)
            op["responses"] = responses
            paths.setdefault(route.path_format, {})[method.lower()] = op
    for model, maxima in bounds.items():
        for name, value in maxima.items():
            components[model]["properties"][name]["maximum"] = value
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
