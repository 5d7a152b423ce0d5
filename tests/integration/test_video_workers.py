"""Video under ``livecart serve --workers 2``: a real supervisor with two worker processes on one port
(``SO_REUSEPORT``), the real Redis, aiortc clients (the helpers of ``test_video.py``).

The kernel hashes each new TCP connection to one of the workers, so every request here that must reach "any
worker" goes on a connection of its own, and a test loops until both workers took some. Which one took a
request shows in the answer: one relayed from the sibling that holds the room's video carries ``Via``. Where
a request must reach one side, a keep-alive connection is first probed with the room's thumbnail.

One server for the whole module (starting two workers costs seconds of this machine's two cores); each
test has rooms of its own, and the last one kills a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from base.ids import random_code
from live.video import Video
from live.video_rules import FORWARDED_HEADER, Owner
from live.video_siblings import Siblings
from tests.conftest import IN_CI, REDIS_URL
from tests.integration.test_video import (
    EXTERNAL,
    SDP,
    WAIT,
    Pattern,
    Peer,
    Room,
    another_viewer,
    ends,
    frames,
    new_room,
    offer_to_watch,
    peer,
    publish,
    sessions,
    watch,
)
from tests.shop_api import auth, ok

pytestmark = pytest.mark.integration

LIVECART = Path(sys.executable).parent / "livecart"
PORTS = range(18100, 18200)
MAX_VIEWERS = 2
TRIES = 12  # connections tried before concluding the kernel never picks one of the workers (2**-11)


def port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as s:  # no SO_REUSEPORT: a port that anyone holds is skipped
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable, and CI=true forbids skipping")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    client.flushdb()
    tmp = tmp_path_factory.mktemp("workers")
    port = port_in_range()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}
    env.update(
        {
            "LIVECART_ENV": "dev",
            "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'livecart.db'}",
            "LIVECART_REDIS_URL": REDIS_URL,
            "LIVECART_DATA_DIR": str(tmp / "data"),
            "LIVECART_SECRET_KEY": "test-secret-key",
            "LIVECART_LOG_JSON": "false",
            "LIVECART_LOG_LEVEL": "WARNING",
            "LIVECART_WHEP_MAX_VIEWERS": str(MAX_VIEWERS),
            "LIVECART_VIDEO_EXTERNAL_URL": EXTERNAL,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        }
    )
    (tmp / "metrics").mkdir()
    log = tmp / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(LIVECART), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    serve = Serve(proc, port, log)
    try:
        wait_until_both_ready(serve)
        yield serve
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        client.flushdb()
        client.close()


def wait_until_both_ready(serve: Serve, timeout: float = 60.0) -> None:
    """Both workers answer ``/readyz`` on their private addresses (the supervisor's children)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.proc.poll() is not None:
            pytest.fail(f"livecart serve exited with {serve.proc.returncode}:\n{serve.log_tail()}")
        ready = 0
        with contextlib.suppress(psutil.Error):
            for worker in serve.workers():
                for conn in worker.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port != serve.port:
                        with contextlib.suppress(httpx.TransportError):
                            url = f"http://127.0.0.1:{conn.laddr.port}/readyz"
                            ready += httpx.get(url, timeout=2).status_code == 200
        if ready == 2:
            return
        time.sleep(0.1)
    pytest.fail(f"two workers not ready after {timeout} s:\n{serve.log_tail()}")


@pytest.fixture
async def client(app: Serve) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as c:
        yield c


@pytest.fixture
async def peers() -> AsyncIterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    await asyncio.gather(*(pc.close() for pc in opened))


@contextlib.asynccontextmanager
async def fresh(app: Serve) -> AsyncIterator[httpx.AsyncClient]:
    """A client for one request, on a new TCP connection: any worker may take it."""
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as c:
        yield c


def relayed(response: httpx.Response) -> bool:
    """Whether the worker that took the request passed it on to the sibling holding the room's video."""
    return response.headers.get("via") == "1.1 livecart"


@contextlib.asynccontextmanager
async def connection(app: Serve, room: Room, *, to_owner: bool) -> AsyncIterator[httpx.AsyncClient]:
    """A client on one keep-alive connection to the worker that holds the room's video (``to_owner``) or
    to the other one. Use it at once: uvicorn closes a connection idle for 5 s."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    for _ in range(TRIES * 2):
        async with httpx.AsyncClient(base_url=app.url, timeout=30, limits=limits) as c:
            probe = await c.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(room.host_token))
            assert probe.status_code in (200, 404), probe.text
            if relayed(probe) != to_owner:
                yield c
                return
    pytest.fail("the kernel never gave a connection to that worker")


async def owner_of(room: Room) -> Owner | None:
    r = AsyncRedis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"livecart:video:*{{room:{room.id}}}")]
        raw = await r.get(keys[0]) if keys else None
    finally:
        await r.aclose()
    return None if raw is None else Owner.decode(raw)


async def forwards(c: httpx.AsyncClient) -> float:
    text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith('livecart_video_forwards_total{result="answered"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def watch_anywhere(app: Serve, peers: list[Any], room: Room, token: str | None = None) -> Peer:
    async with fresh(app) as c:
        return await watch(c, peers, room, token)


async def test_whep_and_every_delete_work_whichever_worker_takes_them(
    app: Serve, client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room, other = await new_room(client), await new_room(client, "Other")
    host = await publish(client, peers, room)
    owner = await owner_of(room)
    assert owner is not None and host.location == f"/api/rooms/{room.id}/whip/{owner.ingest_id}"

    # Viewers, one after another, each on a connection of its own, until both workers have taken a WHEP
    # offer and a DELETE: every offer is answered by the owner, and each viewer gets the host's frames.
    offers, deletes = set(), set()
    for _ in range(TRIES):
        async with fresh(app) as c:
            viewer = await watch(c, peers, room)
        assert viewer.response.status_code == 201, viewer.response.text
        assert viewer.location.startswith(f"/api/rooms/{room.id}/whep/")
        assert "a=candidate:" in viewer.response.text
        got = await frames(viewer.tracks["video"], 2)
        assert (got[0].width, got[0].height) == (320, 240)
        offers.add(relayed(viewer.response))
        async with fresh(app) as c:
            stopped = await c.delete(viewer.location, headers=auth(room.viewer_token))
        assert stopped.status_code == 204, stopped.text
        deletes.add(relayed(stopped))
        await ends(viewer.tracks["video"])
        if offers == deletes == {True, False}:
            break
    assert offers == deletes == {True, False}, (offers, deletes)
    assert await sessions(client) == {"whip": 1, "whep": 0}  # summed over both workers

    # The thumbnail, from either worker.
    seen = set()
    for _ in range(TRIES * 4):
        async with fresh(app) as c:
            r = await c.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(room.viewer_token))
        if r.status_code == 200:
            assert r.headers["content-type"] == "image/jpeg" and r.content.startswith(b"\xff\xd8")
            assert r.headers["cache-control"] == "private, max-age=3"
            seen.add(relayed(r))
            if seen == {True, False}:
                break
        else:
            assert r.status_code == 404, r.text  # no frame grabbed yet
            await asyncio.sleep(0.2)
    assert seen == {True, False}

    # The relayed answers are the owner's, errors included.
    async with connection(app, room, to_owner=False) as c:
        r = await c.delete(f"/api/rooms/{room.id}/whep/whep_nope", headers=auth(room.viewer_token))
        assert (r.status_code, r.json()["error"], relayed(r)) == (404, "unknown_session", True)
        r = await c.delete(host.location, headers=auth(other.host_token))  # checked there: 403
        assert (r.status_code, relayed(r)) == (403, True)
        r = await c.delete(host.location, headers=auth(room.viewer_token))  # checked here: 403
        assert (r.status_code, relayed(r)) == (403, False)
        # The host stops publishing through the worker that does not hold the ingest.
        r = await c.delete(host.location, headers=auth(room.host_token))
        assert (r.status_code, relayed(r)) == (204, True)
    assert await owner_of(room) is None
    assert await sessions(client) == {"whip": 0, "whep": 0}
    for _ in range(4):
        r = (await watch_anywhere(app, peers, room)).response
        assert (r.status_code, r.json()["error"]) == (409, "not_live")


async def test_a_forged_forward_is_refused(app: Serve, client: httpx.AsyncClient, peers: list[Any]) -> None:
    room = await new_room(client)
    host = await publish(client, peers, room)
    owner = await owner_of(room)
    assert owner is not None
    pc, _ = await offer_to_watch(peers)
    headers = {**auth(room.viewer_token), **SDP, FORWARDED_HEADER: "0" * 64}
    body = pc.localDescription.sdp
    for url in [app.url, owner.url]:  # the public port (either worker) and the owner's private address
        for _ in range(3):
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                r = await c.post(f"/api/rooms/{room.id}/whep", content=body, headers=headers)
                assert (r.status_code, r.json()["error"]) == (403, "forged_forward"), r.text
                r = await c.post(f"/internal/video/rooms/{room.id}/end", headers={FORWARDED_HEADER: "x"})
                assert (r.status_code, r.json()["error"]) == (403, "forged_forward")
                r = await c.post(f"/internal/video/rooms/{room.id}/end")
                assert r.status_code == 404  # without the token the internal route does not exist
    assert await sessions(client) == {"whip": 1, "whep": 0}
    assert await owner_of(room) == owner
    assert (await client.delete(host.location, headers=auth(room.host_token))).status_code == 204


async def test_the_viewer_cap_holds_across_workers_and_ending_reaches_the_owner(
    app: Serve, client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    await publish(client, peers, room)
    # As many viewers as the cap, each another customer (a viewer's second offer would replace their first).
    tokens = [await another_viewer(client, room, f"W{i}") for i in range(MAX_VIEWERS)]
    viewers = [await watch_anywhere(app, peers, room, token) for token in tokens]
    for viewer in viewers:
        assert viewer.response.status_code == 201, viewer.response.text
        await frames(viewer.tracks["video"], 1)
    # Past the cap, whichever worker takes the offer: the owner counts every viewer of the room.
    capped = set()
    for _ in range(TRIES):
        r = (await watch_anywhere(app, peers, room)).response
        assert (r.status_code, r.headers["location"]) == (307, f"https://sfu.example.com/{room.id}/whep")
        capped.add(relayed(r))
        if capped == {True, False}:
            break
    assert capped == {True, False}
    assert await sessions(client) == {"whip": 1, "whep": MAX_VIEWERS}

    # Everyone else plays HLS, from whichever worker: the owner encodes once, the files are on the one disk.
    hls = (await ok(await client.get(f"/api/rooms/{room.id}/video", headers=auth(tokens[0]))))["hls"]
    async with asyncio.timeout(20):
        while "seg-" not in (await client.get(hls)).text:
            await asyncio.sleep(0.25)
    for _ in range(4):
        async with fresh(app) as c:
            assert (await c.get(hls)).status_code == 200
    async with connection(app, room, to_owner=False) as c:
        state = await c.get(f"/api/rooms/{room.id}/hls", headers=auth(room.host_token))
        assert relayed(state) and state.json()["state"] == "encoding", state.text

    # The host ends the show through the worker that does not hold its video: the owner closes it all,
    # and finishes the recording.
    async with connection(app, room, to_owner=False) as c:
        before = await forwards(c)
        await ok(await c.post(f"/api/rooms/{room.id}/end", headers=auth(room.host_token)))
        assert await forwards(c) == before + 1
    async with asyncio.timeout(10):
        while "#EXT-X-ENDLIST" not in (await client.get(hls)).text:
            await asyncio.sleep(0.25)
    for viewer in viewers:
        await ends(viewer.tracks["video"])
    assert await sessions(client) == {"whip": 0, "whep": 0}
    assert await owner_of(room) is None
    for _ in range(4):
        async with fresh(app) as c:
            r = await c.get(f"/api/rooms/{room.id}/thumbnail.jpg", headers=auth(room.host_token))
            assert r.status_code == 404


async def test_when_the_owner_dies_a_new_publish_takes_the_room_over(
    app: Serve, client: httpx.AsyncClient, peers: list[Any]
) -> None:
    room = await new_room(client)
    await publish(client, peers, room)
    viewer = await watch_anywhere(app, peers, room)
    assert viewer.response.status_code == 201, viewer.response.text
    await frames(viewer.tracks["video"], 1)
    owner = await owner_of(room)
    assert owner is not None
    port = int(owner.url.rsplit(":", 1)[1])
    (dead,) = [
        w
        for w in app.workers()
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in w.net_connections("tcp"))
    ]
    dead.send_signal(signal.SIGKILL)
    dead.wait(10)

    # Its record outlives it for a few seconds; the room is not live meanwhile, wherever one asks.
    assert await owner_of(room) is not None
    r = (await watch_anywhere(app, peers, room)).response
    assert (r.status_code, r.json()["error"]) == (409, "not_live")

    # The host publishes again (OBS reconnecting): the room's video starts in a live worker.
    async with fresh(app) as c:
        again = await publish(c, peers, room)
    new_owner = await owner_of(room)
    assert new_owner is not None and new_owner.url != owner.url
    assert again.location == f"/api/rooms/{room.id}/whip/{new_owner.ingest_id}"
    await asyncio.to_thread(wait_until_both_ready, app)  # the supervisor restarted the killed worker
    assert dead.pid not in [w.pid for w in app.workers()]
    seen = set()
    for _ in range(TRIES):
        viewer = await watch_anywhere(app, peers, room)
        assert viewer.response.status_code == 201, viewer.response.text
        await frames(viewer.tracks["video"], 2)
        seen.add(relayed(viewer.response))
        async with fresh(app) as c:
            assert (await c.delete(viewer.location, headers=auth(room.viewer_token))).status_code == 204
        if seen == {True, False}:
            break
    assert seen == {True, False}
    async with fresh(app) as c:
        assert await sessions(c) == {"whip": 1, "whep": 0}  # the dead worker's sessions are not counted
    async with connection(app, room, to_owner=True) as c:
        r = await c.delete(again.location, headers=auth(room.host_token))
        assert (r.status_code, relayed(r)) == (204, False)
    assert await owner_of(room) is None


async def test_an_ingest_keeps_its_record_and_stops_when_another_worker_takes_the_room(
    redis_url: str, peers: list[Any]
) -> None:
    """The adapters alone, in this process: two ``Siblings`` of one group on the real Redis, and a ``Video``
    whose ingest is answered and never connects (it lives until its connect timeout)."""
    r = AsyncRedis.from_url(redis_url)
    group = f"test{random_code(8)}"
    here = Siblings(r, me="http://127.0.0.1:1", group=group, token="t", ttl=0.3)
    there = Siblings(r, me="http://127.0.0.1:2", group=group, token="t", ttl=0.3)
    video = Video(siblings=here)
    try:
        pc = peer()
        peers.append(pc)
        pc.addTransceiver(Pattern(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        ingest = await video.publish("rm_1", host_id="hst_1", offer=pc.localDescription.sdp)
        assert await there.owner("rm_1") == Owner("http://127.0.0.1:1", ingest.session_id)
        assert await here.elsewhere("rm_1") is None and await there.elsewhere("rm_1") is not None

        # A record lost (Redis flushed, or a stall outlived the TTL) is written again while the ingest lives.
        await r.delete(f"livecart:video:{group}:{{room:rm_1}}")
        await asyncio.sleep(0.5)
        assert await there.owner("rm_1") == Owner("http://127.0.0.1:1", ingest.session_id)

        # Another worker's publish took the room: this ingest stops, and leaves the new record alone.
        await there.claim("rm_1", "whip_other")
        async with asyncio.timeout(WAIT):
            while video.is_live("rm_1"):
                await asyncio.sleep(0.05)
        assert await here.owner("rm_1") == Owner("http://127.0.0.1:2", "whip_other")
        await here.release("rm_1", ingest.session_id)  # not its record any more: nothing happens
        assert await here.owner("rm_1") == Owner("http://127.0.0.1:2", "whip_other")
        await there.release("rm_1", "whip_other")
        assert await here.owner("rm_1") is None
    finally:
        await video.close()
        await here.close()
        await there.close()
        await r.aclose()
