"""The other workers of one ``livecart serve --workers N``, as video needs them: which worker holds each
room's ingest (a record in Redis), and the forwarding of a room's signalling to that worker.

Only signalling moves between workers. The SDP answer carries the owner's own ICE candidates, so the media
(UDP) of every session goes straight to the process that answered it; all workers run on one host.

- The record: ``livecart:video:{group}:{room:ID}`` holds ``{"url", "ingest"}`` (``Owner``), written when a
  worker takes the room's ingest, refreshed every third of its TTL while the ingest lives (``hold``), and
  deleted when it stops, only if it is still that ingest's (compare-and-delete, ``lua/owner_release.lua``).
  A worker that dies stops refreshing it, and it expires.
- Forwarding: each worker also serves the app on a private loopback address of its own (``worker_url``,
  bound by ``livecart/workers.py``). A forwarded request carries the deployment's forward token
  (``live/video_rules.py``) and is served where it lands. A sibling that does not take the connection is
  dead: its record is dropped and the room counts as not live (a new publish takes it over). One that takes
  it and does not answer within ``timeout`` seconds is answered ``503``; nothing is retried, since the
  request may have taken effect there.
"""

from __future__ import annotations

import logging
from importlib import resources

import httpx
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from base.logs import request_id
from base.metrics import Metrics
from live.errors import VideoUnavailable
from live.video_rules import FORWARDED_HEADER, Owner, Sibling, place

log = logging.getLogger("livecart.video")

#: What a forwarded request takes along, and what of the answer comes back to the client.
SENT_HEADERS = ("authorization", "content-type")
RELAYED_HEADERS = ("content-type", "location", "link", "cache-control", "retry-after", "www-authenticate")
#: On relayed answers (RFC 9110 section 7.6.3): this worker passed the request on to a sibling.
VIA = "1.1 livecart"


def _script(name: str) -> str:
    return resources.files("live").joinpath(f"lua/{name}.lua").read_text()


class Siblings:
    """This worker (``me``, its private address) among the workers of ``group``. Built once per app when
    ``livecart serve`` runs several workers; ``close()`` on shutdown."""

    def __init__(
        self,
        redis: Redis,
        *,
        me: str,
        group: str,
        token: str,
        timeout: float = 10.0,
        ttl: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.me = me
        self.token = token
        #: How often the owner of an ingest refreshes its record (a third of the TTL: two refreshes may fail).
        self.hold_every = ttl / 3
        self._redis = redis
        self._prefix = f"livecart:video:{group}:"
        self._ttl_ms = int(ttl * 1000)
        self._metrics = metrics
        self._hold = redis.register_script(_script("owner_hold"))
        self._release = redis.register_script(_script("owner_release"))
        # A fresh connection per request (none kept alive): a refused connection then always means that the
        # sibling is gone, never that a pooled one went stale. Loopback connections cost microseconds.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(1.0, timeout)),
            limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=False,  # never through a proxy named by the environment
        )

    def _key(self, room_id: str) -> str:
        return f"{self._prefix}{{room:{room_id}}}"

    # -- the owner records ------------------------------------------------------------------------------

    async def owner(self, room_id: str) -> Owner | None:
        raw = await self._redis.get(self._key(room_id))
        return None if raw is None else Owner.decode(raw)

    async def elsewhere(self, room_id: str) -> Owner | None:
        """The room's owner when it is a sibling (not this worker), else ``None``."""
        owner = await self.owner(room_id)
        return owner if owner is not None and isinstance(place(owner, me=self.me), Sibling) else None

    async def claim(self, room_id: str, ingest_id: str) -> None:
        """This worker now holds the room's ingest (a publish here decided that no live sibling does)."""
        record = Owner(self.me, ingest_id).encode()
        await self._redis.set(self._key(room_id), record, px=self._ttl_ms)

    async def hold(self, room_id: str, ingest_id: str) -> bool:
        """Refresh this ingest's record; ``False`` when another ingest holds the room now."""
        record = Owner(self.me, ingest_id).encode()
        return bool(await self._hold(keys=[self._key(room_id)], args=[record, self._ttl_ms]))

    async def release(self, room_id: str, ingest_id: str) -> None:
        await self.forget(room_id, Owner(self.me, ingest_id))

    async def forget(self, room_id: str, owner: Owner) -> None:
        """Delete the room's record if it still is ``owner`` (a stopped ingest's, or a dead sibling's)."""
        await self._release(keys=[self._key(room_id)], args=[owner.encode()])

    # -- forwarding -------------------------------------------------------------------------------------

    async def relay(self, request: Request, room_id: str, owner: Owner, body: bytes = b"") -> Response | None:
        """Send ``request`` (method, path, credentials, ``body``) to ``owner`` and return its answer, to be
        sent to the client as it is; ``None`` when the owner is gone (its record is then dropped)."""
        headers = {FORWARDED_HEADER: self.token}
        for name in SENT_HEADERS:
            if (value := request.headers.get(name)) is not None:
                headers[name] = value
        if (rid := request_id.get()) is not None:
            headers["x-request-id"] = rid  # one request id in the logs of both workers
        answer = await self._send(request.method, owner, request.url.path, body, headers, room_id)
        if answer is None:
            return None
        relayed = {name: value for name in RELAYED_HEADERS if (value := answer.headers.get(name)) is not None}
        relayed["via"] = VIA
        return Response(answer.content, status_code=answer.status_code, headers=relayed)

    async def end_room(self, room_id: str) -> None:
        """The room ended: have the sibling that holds its ingest close it (``live/video_api.py``,
        ``end_video``). Nothing to do when no sibling holds it. Never raises: commerce goes on."""
        try:
            owner = await self.elsewhere(room_id)
            if owner is not None:
                path = f"/internal/video/rooms/{room_id}/end"
                await self._send("POST", owner, path, b"", {FORWARDED_HEADER: self.token}, room_id)
        except VideoUnavailable:
            pass  # logged by _send; that worker's video of the room lasts until its host stops it
        except Exception:
            log.exception("room %s: asking the worker that holds its video to close it failed", room_id)

    async def _send(
        self, method: str, owner: Owner, path: str, body: bytes, headers: dict[str, str], room_id: str
    ) -> httpx.Response | None:
        try:
            answer = await self._http.request(method, owner.url + path, content=body or None, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            self._count("owner_gone")
            log.warning("room %s: the worker at %s that held its video is gone", room_id, owner.url)
            await self.forget(room_id, owner)
            return None
        except httpx.HTTPError as exc:
            self._count("failed")
            log.warning("room %s: the worker at %s did not answer: %r", room_id, owner.url, exc)
            raise VideoUnavailable(
                "The worker that serves this room's video did not answer in time; retry shortly.",
                code="video_worker_unavailable",
            ) from None
        self._count("answered")
        return answer

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.video_forwards.labels(result).inc()

    async def close(self) -> None:
        await self._http.aclose()
