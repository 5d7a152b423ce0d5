"""The pages' Content-Security-Policy: nothing inline, connections to this origin (and the video engine's,
and WeChat's SDK only where it is loaded); the close-code table the pages receive from the server; the
language chosen from Accept-Language; both catalogues complete (every key the markup and scripts use, the
same keys in each) and no words written into the markup; the Open Graph tags escaped."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from live.pages import (
    LANGUAGES,
    STATIC,
    WECHAT_SDK,
    _video_origin,
    catalogue,
    choose_language,
    content_security_policy,
    link_preview,
    page_config,
    render,
    routes,
    translate,
)
from live.preview import Preview
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


# -- languages and catalogues ------------------------------------------------------------------------------

CATALOGUES = {language: catalogue(language) for language in LANGUAGES}
PAGES = sorted(STATIC.glob("*.html"))
SCRIPTS = sorted(STATIC.glob("*.js"))
#: A key as the markup names it: data-i18n="key" (text) or data-i18n-ATTR="key" (attribute ATTR).
MARKUP_KEY = re.compile(r'\sdata-i18n(?:-[a-z-]+)?="([^"]+)"')
#: A string literal in a script shaped like a key of one of the catalogues' namespaces.
KEY_SHAPE = re.compile(r'["`]([a-z][a-z0-9_]*(?:\.[a-zA-Z0-9_-]+)+)["`]')
#: Keys the scripts build from a value (`room.status.${status}`): each value the server can send.
DYNAMIC = {
    "room.status": ["scheduled", "live", "ended"],
    "host.status": ["scheduled", "live", "ended"],
    "card.status": ["pinned", "open", "closed", "sold_out"],
    "host.card.status": ["pinned", "open", "closed", "sold_out"],
    "order.status": [
        "reserved",
        "paid",
        "shipped",
        "delivered",
        "completed",
        "expired",
        "cancelled",
        "refunded",
    ],
    "host.socket": ["connecting", "live", "reconnecting", "closed"],
    "lang": list(LANGUAGES),
    "leader.earnings": ["accrued", "clawed_back", "net", "paid_out", "owed", "payable"],
    "leader.commissions.kind": ["accrual", "clawback"],
}
#: Every refusal the viewer page must explain in the page's language (issue 11), by its error code.
REFUSALS = [
    "invalid_invite",
    "sign_in_required",
    "rate_limited",
    "locked",
    "invalid_phone",
    "invalid_code",
    "provider_failed",
    "sign_in_unavailable",
    "token_expired",
    "sold_out",
    "sale_not_open",
    "limit_exceeded",
    "network_error",
]


def keys_in_markup() -> set[str]:
    return {key for page in PAGES for key in MARKUP_KEY.findall(page.read_text(encoding="utf-8"))}


def keys_in_scripts() -> set[str]:
    namespaces = {key.split(".")[0] for key in CATALOGUES[LANGUAGES[0]]}
    found = set()
    for script in SCRIPTS:
        for key in KEY_SHAPE.findall(script.read_text(encoding="utf-8")):
            if key.split(".")[0] in namespaces and not key.endswith((".js", ".json")):
                found.add(key)
    return found


def test_chinese_first_english_second() -> None:
    assert LANGUAGES == ("zh-CN", "en")


def test_both_catalogues_have_the_same_keys_and_every_text() -> None:
    chinese, english = (CATALOGUES[language] for language in LANGUAGES)
    assert set(chinese) == set(english)
    for language, words in CATALOGUES.items():
        assert all(isinstance(text, str) and text.strip() for text in words.values()), language
        for key, text in words.items():  # the same placeholders in every language
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", english[key])), key
    assert chinese["room.status.live"] != english["room.status.live"]  # translated, not copied


def test_every_key_the_pages_use_is_in_both_catalogues() -> None:
    used = keys_in_markup() | keys_in_scripts()
    assert len(used) > 200  # the extraction finds the pages' keys (a broken pattern would find none)
    used |= {f"{prefix}.{value}" for prefix, values in DYNAMIC.items() for value in values}
    used |= {f"error.{code}" for code in REFUSALS} | {"error.invalid_code.none", "error.invalid_code.locked"}
    for script in SCRIPTS:  # showState("name") shows state.name.title and state.name.text
        for name in re.findall(r'showState\(\s*"(\w+)"', script.read_text(encoding="utf-8")):
            used |= {f"state.{name}.title", f"state.{name}.text"}
    for language, words in CATALOGUES.items():
        assert sorted(used - set(words)) == [], language


class _Text(HTMLParser):
    """The words of a page that no data-i18n key fills: text nodes and readable attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: whether its text comes from the catalogue
        self.loose: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        keyed = "data-i18n" in names or (bool(self.stack) and self.stack[-1])
        if tag not in VOID:
            self.stack.append(keyed)
        for attribute in ("placeholder", "title", "aria-label", "alt"):
            value = names.get(attribute)
            if value and re.search(r"[^\W\d_]", value):
                self.loose.append(f"{tag}[{attribute}]: {value}")

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if text and re.search(r"[^\W\d_]", text) and not (self.stack and self.stack[-1]):
            self.loose.append(text)


VOID = {"meta", "link", "input", "img", "br", "hr", "source", "col", "area", "base", "embed", "wbr"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_words_are_written_into_the_markup(page: Path) -> None:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    # "{{title}}" is the server's; the brand is a name, not a word to translate
    assert [text for text in parser.loose if text not in ("{{title}}", "{{head}}")] == []


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("en", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("fr-FR,en;q=0.5", "en"),
        ("fr-FR,de;q=0.5", "zh-CN"),
        ("en;q=0.4,zh;q=0.8", "zh-CN"),
        ("zh;q=0.4, EN-gb;q=0.8", "en"),
        ("en;q=0.5,zh;q=0.5", "en"),  # equal weights: the earlier
        ("en;q=0,zh;q=0.1", "zh-CN"),  # q=0: not English
        ("*", "zh-CN"),
        ("en;q=nonsense", "zh-CN"),
        ("en;q=nan", "zh-CN"),
        (";;,,;q=1", "zh-CN"),
    ],
)
def test_the_language_follows_accept_language(header: str | None, language: str) -> None:
    assert choose_language(header) == language


def test_the_server_translates_with_the_catalogue() -> None:
    assert translate("en", "og.description", host="Mei", status="LIVE") == "Hosted by Mei · LIVE"
    assert translate("zh-CN", "og.description", host="Mei", status="直播中") == "主播 Mei · 直播中"
    assert translate("en", "og.description", host="{status}", status="x") == "Hosted by {status} · x"


# -- link previews ----------------------------------------------------------------------------------------

EVIL = '"><script>alert(1)</script><meta property="og:title" content="forged'


def tags(markup: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    class Meta(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names = dict(attrs)
            key = names.get("property") or names.get("name")
            if tag == "meta" and key:
                found.setdefault(key, []).append(names.get("content") or "")

    Meta().feed(markup)
    return found


def test_open_graph_tags_escape_the_show() -> None:
    show = Preview(title=EVIL, host_name="<b>Mei</b> & co", status="live", sign_in="verified", cover_url=None)
    head = link_preview(
        "en", show, page_url="https://shop.example/r/rm_1?invite=a&b", base_url="https://shop.example/"
    )
    markup = "\n".join(head)
    assert "<script>" not in markup and "<b>" not in markup
    meta = tags(markup)
    assert meta["og:title"] == [EVIL]  # one title, exactly the show's: nothing the title carried became a tag
    assert meta["og:description"] == ["Hosted by <b>Mei</b> & co · LIVE"]
    assert meta["og:image"] == ["https://shop.example/static/og-default.png"]
    assert meta["og:url"] == ["https://shop.example/r/rm_1?invite=a&b"]
    assert meta["description"] == meta["og:description"]


def test_open_graph_tags_carry_the_cover_and_the_language() -> None:
    show = Preview(
        title="周五秒杀",
        host_name="梅",
        status="scheduled",
        sign_in="guest",
        cover_url="https://img.example/a.jpg",
    )
    meta = tags("\n".join(link_preview("zh-CN", show, page_url="u", base_url="http://b")))
    assert meta["og:image"] == ["https://img.example/a.jpg"]
    assert meta["og:description"] == ["主播 梅 · 即将开播"]
    assert meta["og:locale"] == ["zh_CN"]


def test_generic_tags_when_the_link_admits_nobody() -> None:
    meta = tags("\n".join(link_preview("en", None, page_url="http://b/r/rm_1", base_url="http://b")))
    assert meta["og:title"] == [catalogue("en")["og.title"]]
    assert meta["og:description"] == [catalogue("en")["og.generic"]]
    assert meta["og:url"] == ["http://b/r/rm_1"]


def test_a_page_is_rendered_with_its_language_title_and_config() -> None:
    head = [page_config({"lang": "en", "x": '</script><script>alert(1)</script>"&'})]
    page = render("viewer.html", language="en", title='Mei\'s <show> & "more"', head=head)
    assert page.startswith('<!doctype html>\n<html lang="en">')
    assert "<title>Mei&#x27;s &lt;show&gt; &amp; &quot;more&quot;</title>" in page
    assert "{{" not in page
    assert tags(page)["livecart-config"] == [
        json.dumps({"lang": "en", "x": '</script><script>alert(1)</script>"&'}, separators=(",", ":"))
    ]
    assert "<script>alert" not in page


def test_wechat_sdk_is_allowed_only_where_it_is_loaded() -> None:
    plain = directives(content_security_policy())
    assert plain["script-src"] == ["'self'"]
    wechat = directives(content_security_policy(script_origins=["https://res.wx.qq.com"]))
    assert wechat["script-src"] == ["'self'", "https://res.wx.qq.com"]
    assert WECHAT_SDK.startswith("https://res.wx.qq.com/")
