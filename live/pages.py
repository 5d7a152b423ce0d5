"""The pages the app serves itself: the host console (``/host``), the viewer page (``/r/{room}``), the leader
page (``/l/{host}``) and their static files (``/static``): plain HTML, CSS and JavaScript modules, no build
step.

Both pages are rendered from their HTML file with three things filled in: the language (``<html lang>``),
the page's title and a ``<head>`` of ``<meta>`` tags, one of which carries the page's configuration as
JSON. The language is Simplified Chinese unless ``Accept-Language`` prefers English (the page may switch
and remember the choice); every string a person reads is in one catalogue per language,
``static/i18n/{zh-CN,en}.json``, which the pages' scripts load and which the server reads for the few
words it renders itself. The viewer page's head also unfolds the show in messengers (Open Graph: title,
host and status, cover, link) when the link's invite or share code admits to the room, as its preview
does (``live.preview``); otherwise only generic words.

Who may see what is decided by the API behind the pages. Every page goes out with a strict
Content-Security-Policy: scripts only from this origin and never inline, so a product title or a chat
line that slipped into the DOM as markup still could not run. (The scripts render all user text with
``textContent`` besides, and the server escapes every value it writes into the HTML.)
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from base.http import settings  # importing it also registers the ``{room:id}`` path convertor
from base.settings import Settings
from identity.errors import InvalidInvite
from identity.tokens import customer_cookie
from live import preview as previews
from live.models import Host, Room
from live.preview import Preview
from live.services import services
from realtime.close_codes import POLICY

STATIC = Path(__file__).parent / "static"
I18N = STATIC / "i18n"
#: The pages' languages, the default first.
LANGUAGES = ("zh-CN", "en")
#: Accept-Language primary subtags and the page language each gets (any Chinese reads Simplified).
_PRIMARY = {"zh": "zh-CN", "en": "en"}
#: WeChat's JS-SDK (share set-up inside WeChat): loaded, and allowed by the policy, only when it is used.
WECHAT_SDK = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
DEFAULT_COVER = "/static/og-default.png"


def content_security_policy(*, video_origin: str | None = None, script_origins: Iterable[str] = ()) -> str:
    """Scripts, styles and connections from this origin only (plus the external video engine's origin when
    one is configured: WHIP and WHEP follow its ``307`` there; plus ``script_origins``: WeChat's JS-SDK
    where the page loads it)."""
    connect = "connect-src 'self'" + (f" {video_origin}" if video_origin else "")
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *script_origins]),
            "style-src 'self'",
            # Product images are links the host chose; the live thumbnail is fetched with the token (blob:).
            "img-src 'self' data: blob: https:",
            "media-src 'self' blob: mediastream:",
            connect,
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


SECURITY_HEADERS = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    # Invite tokens and share codes travel in the page's query string: never hand them to another site.
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
}


def _video_origin(template: str | None) -> str | None:
    if template is None:
        return None
    url = urlsplit(template.format(room="room", kind="whep"))
    return f"{url.scheme}://{url.netloc}"


# -- languages ---------------------------------------------------------------------------------------------


def choose_language(accept_language: str | None) -> str:
    """The page language for an ``Accept-Language`` header (RFC 9110 §12.5.4): of Chinese and English, the
    one with the higher weight (the earlier at equal weights); the default, Chinese, when neither is named
    (``*`` included) or the header is missing or malformed."""
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if not 0 < weight <= 1:  # q=0 is "not this one"; NaN and nonsense count as nothing
            continue
        language = _PRIMARY.get(tag.split("-")[0].lower())
        if language is not None and (best is None or weight > best[0]):
            best = (weight, language)
    return best[1] if best else LANGUAGES[0]


@functools.cache
def catalogue(language: str) -> Mapping[str, str]:
    """Every string of the pages in ``language`` (key -> text with ``{name}`` placeholders)."""
    with (I18N / f"{language}.json").open(encoding="utf-8") as file:
        words: dict[str, str] = json.load(file)
    return words


def translate(language: str, key: str, **values: str) -> str:
    """The catalogue's text for ``key`` with its ``{name}`` placeholders filled, as the pages' ``t()``."""
    text = catalogue(language)[key]
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], m[0]), text)


# -- rendering ---------------------------------------------------------------------------------------------


@functools.cache
def _template(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _meta(attribute: str, name: str, content: str) -> str:
    return f'<meta {attribute}="{html.escape(name)}" content="{html.escape(content)}">'


def render(name: str, *, language: str, title: str, head: Iterable[str]) -> str:
    """A page from its HTML file: ``{{lang}}``, ``{{title}}`` and ``{{head}}`` filled in (values escaped;
    ``head`` is markup this module built)."""
    return (
        _template(name)
        .replace("{{lang}}", html.escape(language))
        .replace("{{title}}", html.escape(title))
        .replace("{{head}}", "\n  ".join(head))
    )


def page_config(config: Mapping[str, object]) -> str:
    """The page's configuration as a ``<meta>`` its scripts read (never an inline script: the policy)."""
    return _meta("name", "livecart-config", json.dumps(config, ensure_ascii=False, separators=(",", ":")))


def link_preview(language: str, found: Preview | None, *, page_url: str, base_url: str) -> list[str]:
    """Open Graph tags: the show when the link admits to it (``found``), generic words otherwise."""
    base = base_url.rstrip("/")
    if found is not None:
        status = translate(language, f"room.status.{found.status}")
        title = found.title
        description = translate(language, "og.description", host=found.host_name, status=status)
        image = found.cover_url or base + DEFAULT_COVER
    else:
        title = translate(language, "og.title")
        description = translate(language, "og.generic")
        image = base + DEFAULT_COVER
    properties = {
        "og:type": "website",
        "og:site_name": "LiveCart",
        "og:locale": language.replace("-", "_"),
        "og:title": title,
        "og:description": description,
        "og:image": image,
        "og:url": page_url,
    }
    return [
        *(_meta("property", key, value) for key, value in properties.items()),
        _meta("name", "description", description),
        _meta("name", "twitter:card", "summary_large_image"),
    ]


def _headers(config: Settings, *, script_origins: Iterable[str] = ()) -> dict[str, str]:
    policy = content_security_policy(
        video_origin=_video_origin(config.video_external_url), script_origins=script_origins
    )
    return {
        **SECURITY_HEADERS,
        "Content-Security-Policy": policy,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Language, User-Agent",
    }


def in_wechat(request: Request) -> bool:
    return "MicroMessenger" in request.headers.get("user-agent", "")


async def host_console(request: Request) -> Response:
    language = choose_language(request.headers.get("accept-language"))
    head = [page_config({"lang": language, "languages": LANGUAGES})]
    page = render("host.html", language=language, title=translate(language, "host.page_title"), head=head)
    return HTMLResponse(page, headers=_headers(settings(request)))


async def viewer_page(request: Request) -> Response:
    config = settings(request)
    language = choose_language(request.headers.get("accept-language"))
    room_id = request.path_params["room"]
    invite = request.query_params.get("invite")
    found = None
    if invite and len(invite) <= 200:
        try:
            found = await previews.preview(services(request), room_id, invite)
        except InvalidInvite:
            found = None
    base = config.base_url.rstrip("/")
    page_url = f"{base}/r/{room_id}" + (f"?{urlencode({'invite': invite})}" if found is not None else "")
    # The JS-SDK only where it can work: inside WeChat, with the official account's AppID configured.
    share = bool(config.wechat_app_id) and in_wechat(request)
    head = [
        page_config(
            {
                "lang": language,
                "languages": LANGUAGES,
                "wechat_sign_in": config.wechat_enabled,
                "wechat_share": share,
                "host_id": await _shop_of_room(request, room_id, admitted=found is not None),
            }
        ),
        *link_preview(language, found, page_url=page_url, base_url=base),
    ]
    if share:
        head.append(f'<script src="{WECHAT_SDK}"></script>')
    title = f"{found.title} · LiveCart" if found is not None else translate(language, "viewer.page_title")
    page = render("viewer.html", language=language, title=title, head=head)
    origins = [_origin(WECHAT_SDK)] if share else []
    return HTMLResponse(page, headers=_headers(config, script_origins=origins))


async def _shop_of_room(request: Request, room_id: str, *, admitted: bool) -> str | None:
    """The room's host id, for the page's 我的订单 (``/api/me?shop=``): only to a page whose link admits to
    the room or whose browser is signed in at that shop (its cookie), so a bare room id tells nobody whose
    show it is."""
    async with services(request).sessions() as session:
        room = await session.get(Room, room_id)
    if room is None:
        return None
    signed_in = services(request).auth.customer(request, cookie=customer_cookie(room.host_id))
    if admitted or (signed_in is not None and signed_in.host_id == room.host_id):
        return room.host_id
    return None


def notice_page(language: str, title_key: str, text_key: str, *, status: int) -> HTMLResponse:
    """A page of one sentence (an unknown shop's leader page): no script, the pages' style and headers."""
    title = html.escape(translate(language, title_key))
    text = html.escape(translate(language, text_key))
    body = (
        f'<!doctype html><html lang="{html.escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/style.css"><title>{title}</title></head>'
        f'<body><main class="notice-page"><h1>{title}</h1><p id="page-message">{text}</p></main>'
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def leader_page(request: Request) -> Response:
    """The leader page of a shop (SPEC §9): who the visitor is, and what they may see, is the API's to say
    (``/api/me?shop=``, the shop's cookie); the page only needs the shop. An unknown shop is a 404 page."""
    language = choose_language(request.headers.get("accept-language"))
    host_id = request.path_params["host"]
    async with services(request).sessions() as session:
        host = await session.get(Host, host_id)
    if host is None:
        return notice_page(language, "leader.unknown_title", "leader.unknown", status=404)
    head = [page_config({"lang": language, "languages": LANGUAGES, "host_id": host.id, "shop": host.name})]
    title = translate(language, "leader.page_title", shop=host.name)
    page = render("leader.html", language=language, title=title, head=head)
    return HTMLResponse(page, headers=_headers(settings(request)))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def close_codes_module() -> str:
    """``realtime.close_codes``'s table as the pages' JavaScript module ``/static/close-codes.js``: every
    code a room socket can end with, its name, what it means and whether it is final. ``hub.js`` decides
    from it whether to reconnect, so the pages and the server read the same table."""
    rows = [
        {"code": int(p.code), "name": p.code.name, "meaning": p.meaning, "final": p.final} for p in POLICY
    ]
    names = {p.code.name: int(p.code) for p in POLICY}
    final = [int(p.code) for p in POLICY if p.final]
    return "\n".join(
        [
            "// Generated by live/pages.py from realtime/close_codes.py, the server's table: do not edit.",
            "/** Every code a room socket can end with: {code, name, meaning, final}. */",
            f"export const CLOSE_CODES = Object.freeze({json.dumps(rows)});",
            "/** The code of each name, e.g. CLOSE.NO_ROOM. */",
            f"export const CLOSE = Object.freeze({json.dumps(names)});",
            "/** The codes after which the client must not reconnect without changing something. */",
            f"export const FINAL = new Set({json.dumps(final)});",
            "",
        ]
    )


CLOSE_CODES_JS = close_codes_module()


async def close_codes(request: Request) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return Response(CLOSE_CODES_JS, media_type="text/javascript; charset=utf-8", headers=headers)


class _StaticFiles(StaticFiles):
    """The page assets, with the pages' security headers (a module fetched alone is still ours)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


routes: list[BaseRoute] = [
    *previews.routes,
    Route("/host", host_console, methods=["GET", "HEAD"], include_in_schema=False),
    Route("/r/{room:id}", viewer_page, methods=["GET", "HEAD"], include_in_schema=False),
    Route("/l/{host:id}", leader_page, methods=["GET", "HEAD"], include_in_schema=False),
    # before the mount, which would answer 404 for a file it does not have
    Route("/static/close-codes.js", close_codes, methods=["GET", "HEAD"], include_in_schema=False),
    Mount("/static", app=_StaticFiles(directory=STATIC), name="static"),
]
