"""The pages' Content-Security-Policy: nothing inline, connections to this origin (and the video engine's)."""

from __future__ import annotations

from live.pages import _video_origin, content_security_policy


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
