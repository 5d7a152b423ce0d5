"""The OpenAPI document of the host's room list (its query parameters) and of the video configuration."""

from __future__ import annotations

from pathlib import Path

from base.settings import Settings
from livecart.app import create_app


def test_the_room_list_documents_its_query(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path, secret_key="k")).state.openapi
    op = spec["paths"]["/api/rooms"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"status", "limit", "before"}
    assert all(p["in"] == "query" and p["required"] is False and p["description"] for p in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    status_enum = [s.get("enum") for s in params["status"]["schema"]["anyOf"]]
    assert ["scheduled", "live", "ended"] in status_enum
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
    assert set(components["VideoOut"]["properties"]) == {"ice_servers"}
    assert set(components["IceServerOut"]["properties"]) == {"urls", "username", "credential"}
    assert components["IceServerOut"]["required"] == ["urls"]
    assert {"401", "403", "404"} <= set(op["responses"])
