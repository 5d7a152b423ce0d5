"""The OpenAPI document, built from the routes and the pydantic models each endpoint declares (``@doc``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.convertors import Convertor
from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def doc(
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | list[type[BaseModel]] | str] | None = None,
    auth: bool = True,
    headers: dict[str, str] | None = None,
    errors: Iterable[int] = (),
    content_type: str | None = None,
    raw_body: str | None = None,
) -> Callable[[F], F]:
    """Attach the endpoint's contract: request model (or ``raw_body``, the media type of a non-JSON body
    such as ``application/sdp``), the model of its query string (``query``; each field is a parameter),
    responses by status, required headers."""

    def attach(fn: F) -> F:
        fn.__openapi__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "query": query,
            "responses": responses or {200: "OK"},
            "auth": auth,
            "headers": headers or {},
            "errors": list(errors),
            "content_type": content_type,
            "raw_body": raw_body,
        }
        return fn

    return attach


def _ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _path_schema(convertor: Convertor[Any]) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{convertor.regex}$"}


def build(routes: Iterable[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        if not isinstance(route, Route):
            continue
        meta = getattr(route.endpoint, "__openapi__", None)
        if meta is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op: dict[str, Any] = {"summary": meta["summary"], "operationId": f"{route.name}_{method.lower()}"}
            params = [
                {"name": name, "in": "path", "required": True, "schema": _path_schema(convertor)}
                for name, convertor in route.param_convertors.items()
            ]
            params += [
                {
                    "name": name,
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 255},
                    "description": text,
                }
                for name, text in meta["headers"].items()
            ]
            if meta.get("query") is not None:
                params += _query_params(meta["query"])
            if params:
                op["parameters"] = params
            if meta["body"] is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(meta["body"], components)}},
                }
            elif meta.get("raw_body"):
                op["requestBody"] = {
                    "required": True,
                    "content": {meta["raw_body"]: {"schema": {"type": "string"}}},
                }
            responses: dict[str, Any] = {}
            for status, model in meta["responses"].items():
                if isinstance(model, str):
                    responses[str(status)] = {"description": model}
                elif isinstance(model, list):
                    responses[str(status)] = {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref(model[0], components)}
                            }
                        },
                    }
                else:
                    responses[str(status)] = {
                        "description": model.__doc__.strip().splitlines()[0] if model.__doc__ else "OK",
                        "content": {
                            meta["content_type"] or "application/json": {"schema": _ref(model, components)}
                        },
                    }
            error_codes = set(meta["errors"]) | ({401, 403} if meta["auth"] else set())
            if meta["body"] is not None:
                error_codes |= {400, 413, 422}
            if meta.get("query") is not None:
                error_codes.add(422)
            if route.param_convertors:
                error_codes.add(404)
            for status in sorted(error_codes):
                responses[str(status)] = {
                    "description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            op["responses"] = responses
            if meta["auth"]:
                op["security"] = [{"bearer": []}]
            paths.setdefault(route.path_format, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
