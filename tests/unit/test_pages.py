"""The pages' Content-Security-Policy: nothing inline, connections to this origin (and the video engine's);
the close-code table the pages receive from the server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from starlette.applications import Starlette

from live.pages import STATIC, _video_origin, content_security_policy, routes
from realtime.close_codes import POLICY, CloseCode, is_final


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split("; "))}


def test_scripts_come_from_this_origin_only() -> None:
    policy = directives(content_security_policy())
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert not any("unsafe" in v for values in policy.values() for v in values)


def test_an_external_video_engine_may_be_reached() -> None:
    origin = _video_origin("https://sfu.example.com:8443/{room}/{kind}")
    assert origin == "https://sfu.example.com:8443"
    policy = directives(content_security_policy(video_origin=origin))
    assert policy["connect-src"] == ["'self'", "https://sfu.example.com:8443"]
    assert policy["script-src"] == ["'self'"]
    assert _video_origin(None) is None


async def served(path: str) -> httpx.Response:
    app = Starlette(routes=routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pages") as client:
        return await client.get(path)


async def test_the_pages_receive_the_close_code_table() -> None:
    response = await served("/static/close-codes.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert directives(response.headers["content-security-policy"])["script-src"] == ["'self'"]
    exports = {
        m["name"]: json.loads(m["value"])
        for m in re.finditer(
            r"^export const (?P<name>\w+) = (?:Object\.freeze|new Set)\((?P<value>.*)\);$",
            response.text,
            re.M,
        )
    }
    assert exports["CLOSE_CODES"] == [
        {"code": int(p.code), "name": p.code.name, "meaning": p.meaning, "final": p.final} for p in POLICY
    ]
    assert exports["CLOSE"] == {code.name: int(code) for code in CloseCode}  # every code the server has
    assert sorted(exports["FINAL"]) == sorted(code for code in CloseCode if is_final(code))


def test_no_page_spells_a_close_code_itself() -> None:
    """The socket client takes its policy from the served table, and the pages name codes by name."""
    hub = (STATIC / "hub.js").read_text(encoding="utf-8")
    assert 'import { CLOSE, FINAL } from "./close-codes.js";' in hub
    assert not re.search(r"\b(1009|1011|4\d\d\d)\b", hub)
    for script in sorted(Path(STATIC).glob("*.js")):
        for line in script.read_text(encoding="utf-8").splitlines():
            assert not re.search(r"(code|close)\b.*\b(1009|1011|4\d\d\d)\b", line, re.I), (
                f"{script.name}: {line}"
            )
