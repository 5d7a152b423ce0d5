"""The pages the app serves itself: the host console (``/host``), the viewer page (``/r/{room}``) and their
static files (``/static``): plain HTML, CSS and JavaScript modules, no build step.

Both pages are the same document for everyone; who may see what is decided by the API behind them. Every
page goes out with a strict Content-Security-Policy: scripts only from this origin and never inline, so a
product title or a chat line that slipped into the DOM as markup still could not run. (The scripts render
all user text with ``textContent`` besides.)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from livecart.http import state  # importing it registers the ``{room:id}`` path convertor

STATIC = Path(__file__).parent / "static"


def content_security_policy(*, video_origin: str | None = None) -> str:
    """Scripts, styles and connections from this origin only (plus the external video engine's origin when
    one is configured: WHIP and WHEP follow its ``307`` there)."""
    connect = "connect-src 'self'" + (f" {video_origin}" if video_origin else "")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
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


def _page(request: Request, name: str) -> Response:
    video_origin = _video_origin(state(request).settings.video_external_url)
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(video_origin=video_origin),
        "Cache-Control": "no-cache",
    }
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=headers)


async def host_console(request: Request) -> Response:
    return _page(request, "host.html")


async def viewer_page(request: Request) -> Response:
    return _page(request, "viewer.html")


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
    Route("/host", host_console, methods=["GET", "HEAD"], include_in_schema=False),
    Route("/r/{room:id}", viewer_page, methods=["GET", "HEAD"], include_in_schema=False),
    Mount("/static", app=_StaticFiles(directory=STATIC), name="static"),
]
