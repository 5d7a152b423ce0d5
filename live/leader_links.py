"""A leader's one link for every show (SPEC §9): ``/j/{code}`` leads to the host's live show, else the next
scheduled one, as the room's page with the leader's code as its invite (which admits and binds, as a join
through it does). With no show to go to, a small page says so. ``/j/{code}/qr.svg`` is the link as a QR
code, for posters and chat groups. Both count against ``LIVECART_LIMIT_LEADER_LINK_PER_IP``; an unknown
code is a 404 page, never a hint about which codes exist.
"""

from __future__ import annotations

import html
import io
from urllib.parse import urlencode

import segno
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from base.http import client_ip, settings
from base.limits import Limit
from live.host_rooms import next_show
from live.models import Leader
from live.pages import SECURITY_HEADERS, choose_language, translate
from live.services import services

#: Codes are ``random_code`` text; anything else is no code, answered without a query.
_MAX_CODE = 32


async def _leader(request: Request) -> Leader | None:
    st = services(request)
    await st.rate_limits.hit(Limit.LEADER_LINK_PER_IP, client_ip(request), what="links opened")
    code = request.path_params["code"]
    if len(code) > _MAX_CODE:
        return None
    async with st.sessions() as session:
        return (await session.execute(select(Leader).where(Leader.code == code))).scalar_one_or_none()


def _page(request: Request, key: str, status: int) -> HTMLResponse:
    language = choose_language(request.headers.get("accept-language"))
    title = html.escape(translate(language, "link.title"))
    text = html.escape(translate(language, key))
    body = (
        f'<!doctype html><html lang="{html.escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="/static/style.css"><title>{title}</title></head>'
        f'<body><main class="notice-page"><h1>{title}</h1><p id="link-message">{text}</p></main>'
        "</body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


async def leader_link(request: Request) -> Response:
    leader = await _leader(request)
    if leader is None:
        return _page(request, "link.unknown", 404)
    async with services(request).sessions() as session:
        room = await next_show(session, leader.host_id)
    if room is None:
        return _page(request, "link.no_show", 200)
    query = urlencode({"invite": leader.code})
    return RedirectResponse(f"/r/{room.id}?{query}", status_code=302, headers={"Cache-Control": "no-store"})


async def leader_qr(request: Request) -> Response:
    leader = await _leader(request)
    if leader is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    url = f"{settings(request).base_url.rstrip('/')}/j/{leader.code}"
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=8, border=2, xmldecl=False)
    return Response(
        out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"}
    )


routes = [
    Route("/j/{code:id}", leader_link, methods=["GET", "HEAD"], include_in_schema=False),
    Route("/j/{code:id}/qr.svg", leader_qr, methods=["GET", "HEAD"], include_in_schema=False),
]
