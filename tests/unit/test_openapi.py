"""The OpenAPI document: the host's room list (its query parameters), the video configuration, and that the
document says exactly what the code does (issue 10; ``tests/integration/test_schema.py`` runs Schemathesis
against the real app): OpenAPI 3.0 integers, each operation's error codes, each field's schema against
the validator it documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request

import shop.api
from base.clock import iso, parse_iso
from base.fields import (
    Description,
    DisplayName,
    HostName,
    Identifier,
    Instant,
    Title,
    Token,
    TrackingNumber,
    Url,
)
from base.settings import Settings
from livecart.app import create_app
from shop.errors import InvalidIdempotencyKey, MissingIdempotencyKey
from shop.schemas import IDEMPOTENCY_KEY_SCHEMA, CardPatchIn, OrderIn


def test_the_room_list_documents_its_query(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path, secret_key="k")).state.openapi
    op = spec["paths"]["/api/rooms"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"status", "limit", "before"}
    assert all(p["in"] == "query" and p["required"] is False and p["description"] for p in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    # OpenAPI 3.0 has no null type, and a query parameter is absent or text: the enum itself.
    assert params["status"]["schema"] == {"type": "string", "enum": ["scheduled", "live", "ended"]}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].endswith(
        "/RoomOut"
    )
    assert {"401", "403", "422"} <= set(op["responses"])
    assert op["security"] == [{"bearer": []}]
    assert "post" in spec["paths"]["/api/rooms"]  # beside creating one


def test_the_video_configuration_is_documented(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path, secret_key="k")).state.openapi
    op = spec["paths"]["/api/rooms/{room}/video"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/VideoOut")
    components = spec["components"]["schemas"]
    assert set(components["VideoOut"]["properties"]) == {"ice_servers", "hls", "hls_expires_at"}
    assert set(components["IceServerOut"]["properties"]) == {"urls", "username", "credential"}
    assert components["IceServerOut"]["required"] == ["urls"]
    assert {"401", "403", "404"} <= set(op["responses"])


def test_the_hls_files_are_documented_without_a_bearer_token(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path, secret_key="k")).state.openapi
    op = spec["paths"]["/api/rooms/{room}/hls/{grant}/{name}"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"application/vnd.apple.mpegurl", "video/mp2t"}
    assert {"206", "403", "404", "429"} <= set(op["responses"])
    assert "security" not in op or op["security"] == []
    status = spec["paths"]["/api/rooms/{room}/hls"]["get"]
    assert status["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/HlsStatusOut"
    )
    assert status["security"] == [{"bearer": []}]


# -- the document says exactly what the code does (issue 10) ------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("openapi"), secret_key="k", max_order_quantity=7)
    return create_app(settings).state.openapi  # type: ignore[no-any-return]


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}/{i}")


def test_the_document_is_openapi_3_0_whose_integer_has_no_fraction(spec: dict[str, Any]) -> None:
    """3.0's ``integer`` refuses ``1.0``, as the strict body models do (2020-12's would take it)."""
    assert spec["openapi"] == "3.0.3"
    for where, node in _walk(spec["components"]["schemas"]):
        if "/properties/" in where and where.count("/properties/") == where.count("/properties"):
            continue  # (a mapping of property names)
        assert node.get("type") != "null" and not isinstance(node.get("type"), list), where
        assert "const" not in node and "$defs" not in node and "examples" not in node, where
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), where
    order_in = jsonschema_rs.Draft4Validator(spec["components"]["schemas"]["OrderIn"])
    assert order_in.is_valid(json.loads('{"quantity": 3}'))
    assert not order_in.is_valid(json.loads('{"quantity": 3.0}'))
    with pytest.raises(ValidationError):
        OrderIn.model_validate_json('{"quantity": 3.0}')


def test_a_setting_bounds_the_quantity(spec: dict[str, Any]) -> None:
    quantity = spec["components"]["schemas"]["OrderIn"]["properties"]["quantity"]
    assert (quantity["minimum"], quantity["maximum"]) == (1, 7)


def test_every_operation_lists_its_error_codes(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
            assert "503" in errors, f"{method} {path}: Redis or SQL down"
            assert errors["503"]["headers"]["Retry-After"]["required"] is True
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                codes = schema["allOf"][1]["properties"]["error"]["enum"]
                assert codes and all(f"`{c}`" in response["description"] for c in codes), (path, status)
            if op.get("security") == [{"bearer": []}]:
                assert {"401", "403"} <= set(errors), f"{method} {path}"
                assert errors["401"]["headers"]["WWW-Authenticate"]["required"] is True
            if "{" in path:
                assert "not_found" in _codes(op, 404), f"{method} {path}: an unknown id"


def _codes(op: dict[str, Any], status: int) -> list[str]:
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    return list(schema["allOf"][1]["properties"]["error"]["enum"])


def test_the_codes_are_those_each_endpoint_raises(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    join = paths["/api/rooms/{room}/join"]["post"]
    assert _codes(join, 403) == ["invalid_invite"] and join["security"] == [{}, {"bearer": []}]
    # A token that does not verify is ignored, not refused: the one 401 is a verified room's sign-in.
    assert _codes(join, 401) == ["sign_in_required"] and _codes(join, 429) == ["rate_limited"]
    assert _codes(paths["/api/rooms/{room}/live"]["post"], 409) == ["room_ended"]
    assert _codes(paths["/api/rooms/{room}/invites"]["post"], 409) == ["invalid_room_state"]
    buy = paths["/api/cards/{card}/orders"]["post"]
    assert _codes(buy, 400) == ["missing_idempotency_key", "invalid_idempotency_key", "invalid_json"]
    assert _codes(buy, 409) == ["sale_not_open", "limit_exceeded", "sold_out"]
    assert set(_codes(buy, 422)) == {"invalid_quantity", "idempotency_key_reused", "invalid_request"}
    assert set(_codes(paths["/api/orders/{order}/pay"]["post"], 409)) == {
        "order_not_payable",
        "order_expired",
    }
    card = paths["/api/rooms/{room}/cards"]["post"]
    assert set(_codes(card, 404)) == {"not_found", "unknown_product"} and _codes(card, 409) == ["room_ended"]
    hook = paths["/api/payments/webhook"]["post"]
    assert _codes(hook, 400) == ["invalid_signature", "invalid_event"]
    assert "security" not in hook and "401" not in hook["responses"]
    assert paths["/api/rooms"]["get"]["responses"]["422"]  # before: none of your rooms
    assert _codes(paths["/api/hosts"]["post"], 403) == ["signup_closed"]


def test_optional_bodies_and_other_media_types(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert paths["/api/cards/{card}/open"]["post"]["requestBody"]["required"] is False
    assert paths["/api/orders/{order}/refund"]["post"]["requestBody"]["required"] is False
    assert paths["/api/rooms/{room}/cards"]["post"]["requestBody"]["required"] is True
    orders = paths["/api/rooms/{room}/orders"]["get"]
    assert set(orders["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert [p["name"] for p in orders["parameters"] if p["in"] == "query"] == ["format"]
    whip = paths["/api/rooms/{room}/whip"]["post"]
    assert set(whip["requestBody"]["content"]) == {"application/sdp"}
    assert whip["responses"]["201"]["headers"]["Location"]["required"] is True
    assert set(whip["responses"]["201"]["content"]) == {"application/sdp"}
    assert _codes(whip, 415) == ["unsupported_media_type"]
    thumbnail = paths["/api/rooms/{room}/thumbnail.jpg"]["get"]["responses"]["200"]
    assert set(thumbnail["content"]) == {"image/jpeg"}


def json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema draft 4 (``nullable`` is OpenAPI's own keyword)."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: json_schema(v) if k != "properties" else {n: json_schema(s) for n, s in v.items()}
        for k, v in schema.items()
    }
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def test_the_card_patch_needs_something_to_change(spec: dict[str, Any]) -> None:
    schema = spec["components"]["schemas"]["CardPatchIn"]
    validator = jsonschema_rs.Draft4Validator(json_schema(schema))
    for body, valid in (
        ({}, False),
        ({"price": None}, False),
        ({"price": None, "add_stock": None, "other": 1}, False),
        ({"price": 5}, True),
        ({"price": 5, "add_stock": None}, True),
        ({"add_stock": 2}, True),
    ):
        assert validator.is_valid(body) is valid, body
        try:
            CardPatchIn.model_validate(body)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted is valid, body


# -- each field's schema against its validator ---------------------------------------------------------------


def _accepts(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


#: Text that tries the edges: whitespace of every kind, control characters, long runs.
EDGY = st.text(
    alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1f\x00\x7f\x85\xa0\u1680\u2000\u3000\ufeffaZ9-é中")),
    max_size=12,
)
TEXT = st.one_of(EDGY, st.text(max_size=80), EDGY.map(lambda s: s + "x" * 60 + s))


@pytest.mark.parametrize(
    "field",
    [Title, HostName, DisplayName, Token, TrackingNumber, Description, Url, Identifier],
    ids=["Title", "HostName", "DisplayName", "Token", "TrackingNumber", "Description", "Url", "Identifier"],
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, prefix=st.sampled_from(["", "http://", "https://"]))
def test_a_text_field_accepts_what_its_schema_does(field: Any, text: str, prefix: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(field)
    validator = jsonschema_rs.Draft4Validator(adapter.json_schema())
    value = prefix + text
    assert _accepts(adapter, value) is validator.is_valid(value), repr(value)


def test_one_line_text_counts_what_is_left_after_the_trim() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(DisplayName)
    validator = jsonschema_rs.Draft4Validator(adapter.json_schema())
    for value, valid in (
        ("  " + "n" * 64 + "\t\n", True),
        ("n" * 65, False),
        (" \u3000 ", False),
        ("a\tb", False),
    ):
        assert _accepts(adapter, value) is valid is validator.is_valid(value), repr(value)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.builds(
            "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
            st.integers(0, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
            st.sampled_from("Tt "),
            st.integers(0, 24),
            st.integers(0, 60),
            st.integers(0, 60),
            st.sampled_from(["", ".5", ".123456789"]),
            st.sampled_from(["Z", "z", "+08:00", "-23:59", "+24:00", "", "+0800"]),
        ),
    )
)
def test_an_instant_is_accepted_as_its_schema_says(value: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Instant)
    validator = jsonschema_rs.Draft4Validator(adapter.json_schema(), validate_formats=True)
    assert _accepts(adapter, value) is validator.is_valid(value), repr(value)


def test_an_instant_is_text_and_reads_back() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Instant)
    assert not _accepts(adapter, 1_700_000_000) and not _accepts(adapter, "1700000000")
    for edge in ("1000-01-01T00:00:00+23:59", "9998-12-31T23:59:59-23:59"):
        iso(parse_iso(adapter.validate_python(edge)))  # no year 0 or 10000 on the way back out


@settings(max_examples=400, deadline=None)
@given(
    key=st.one_of(
        st.text(alphabet=st.characters(max_codepoint=255), max_size=8),
        st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    )
)
def test_the_idempotency_key_schema_is_what_the_buy_takes(key: str) -> None:
    # The server trims a header's surrounding spaces and tabs before the app reads it (RFC 9110), and the
    # app reads its bytes as Latin-1.
    key = key.strip(" \t")
    if "\r" in key or "\n" in key or "\x00" in key:
        return  # cannot be sent as a header at all
    request = Request({"type": "http", "headers": [(b"idempotency-key", key.encode("latin-1"))]})
    try:
        shop.api._idempotency_key(request)
        taken = True
    except (MissingIdempotencyKey, InvalidIdempotencyKey):
        taken = False
    assert taken is jsonschema_rs.Draft4Validator(IDEMPOTENCY_KEY_SCHEMA).is_valid(key), repr(key)


async def test_a_405_allows_every_method_of_its_path(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, secret_key="k"))  # (the router answers; no lifespan)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for method, path, allow in (
            ("DELETE", "/api/rooms", "GET, HEAD, POST"),
            ("DELETE", "/api/cards/crd_1", "GET, HEAD, PATCH"),
            ("OPTIONS", "/api/rooms/rm_1/invites", "GET, HEAD, POST"),
        ):
            response = await client.request(method, path)
            assert (response.status_code, response.headers["allow"]) == (405, allow), path
