"""What the tests and the benchmarks share: a port held until the server takes it, the app served in this
process or as ``livecart serve``, a fresh PostgreSQL schema, and a sale set up over HTTP the way a host and
its viewers set one up.

Imported by ``tests/`` (``from loadtests.harness import ...``) and by the scripts in ``loadtests/`` (which
put the repository root on ``sys.path``). It needs only the app's own dependencies: no locust, no pytest,
and no aiortc (the synthetic camera is ``loadtests/harness/video.py``).

Ports. Binding port 0, closing the socket and handing its number to a server is a race: between the close
and the server's bind, anything else on the machine may take the port (another test's server, the
ephemeral port of an outgoing connection). A :class:`Port` keeps its socket bound until the server is done
with it:

- in this process (:class:`LiveServer`), the held socket itself is the server's listening socket;
- a ``livecart serve`` child (:class:`ServeProcess`) binds the address itself (each worker its own
  ``SO_REUSEPORT`` socket, ``livecart/workers.py``), so the held socket stays bound beside it, never
  listening. It is bound with ``SO_REUSEADDR``: Linux then lets another ``SO_REUSEADDR`` socket (every
  server here sets it: asyncio's and uvloop's ``create_server``, the workers) bind and listen on the
  address as long as nothing listens there yet, while the port is neither handed out by a bind to port 0
  nor taken as an ephemeral port, and a socket without ``SO_REUSEADDR`` cannot bind it. A socket that is
  bound but not listening gets no connections: they all go to the server.

Passing the child the socket itself would be the other honest fix, but ``livecart serve --workers N`` binds
one socket per worker (the kernel spreads connections over them), which one inherited socket cannot give.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    import uvicorn

    from base.clock import Clock
    from base.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


# -- ports ----------------------------------------------------------------------------------------------


class Port:
    """A free loopback TCP port, held (bound) from the moment the system picks it until :meth:`close`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP named, as uvicorn's own sockets do: asyncio sets TCP_NODELAY on accepted connections
        # only for such sockets, and without it every answer on a kept-alive connection waits ~40 ms for
        # the client's delayed ACK.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.host = host
        self.number: int = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.number}"

    def listen(self, backlog: int = 2048) -> socket.socket:
        """The held socket, listening: for a server in this process (it owns the socket from then on)."""
        self.socket.listen(backlog)
        return self.socket

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- servers --------------------------------------------------------------------------------------------


class LiveServer:
    """The real app behind a real uvicorn inside the caller's event loop, listening on a held port (give
    ``port`` when ``settings.base_url`` must name this very server; the server closes it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sweeper: bool = True,
        port: Port | None = None,
    ) -> None:
        import uvicorn

        from livecart.app import create_app
        from livecart.http_server import ServerConfig, server_options

        self.settings = settings
        self._port = port or Port()
        self.port = self._port.number
        self.url = self._port.url
        try:
            self.app = create_app(settings, clock=clock, sweeper=sweeper)
        except BaseException:
            self._port.close()
            raise
        # ``livecart serve``'s own options: the same protocols, limits and log redaction.
        config = ServerConfig(self.app, lifespan="on", **server_options(settings))
        self.server: uvicorn.Server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._port.listen()]))
        while not self.server.started:
            if self._task.done():
                self._port.close()
                self._task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        try:
            await self._task
        finally:
            self._port.close()

    @property
    def state(self) -> Any:
        """The AppState, for assertions that read SQL or Redis directly (never to stub anything)."""
        return self.app.state.livecart_state


class ServeProcess:
    """``livecart serve`` as a child process on a held port, in a session of its own so that its workers
    stop with it; its output goes to ``log`` (appended) or, without one, to this process's."""

    def __init__(
        self, env: Mapping[str, str], *, workers: int = 1, log: Path | None = None, port: Port | None = None
    ) -> None:
        self._port = port or Port()
        self.port = self._port.number
        self.url = self._port.url
        self.log_path = log
        command = [sys.executable, "-m", "livecart.cli", "serve", "--port", str(self.port)]
        out = log.open("ab") if log is not None else None
        try:
            self.process = subprocess.Popen(
                [*command, "--workers", str(workers)],
                env=dict(env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        except BaseException:
            self._port.close()
            raise
        finally:
            if out is not None:
                out.close()  # the child has its own copy

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(its output went to this process's)"
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_ready(self, path: str = "/healthz", *, within: float = 30.0, every: float = 0.2) -> float:
        """Wait until ``path`` answers 200; returns the seconds it took."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() - started < within:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"livecart serve exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(path)).status_code == 200:
                        return time.monotonic() - started
                await asyncio.sleep(every)
        raise RuntimeError(f"livecart serve not ready after {within:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful stop: requests finish, the lifespan ends), then SIGKILL to whatever of its
        session is left after ``timeout`` seconds (a worker stuck in shutdown)."""
        try:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        finally:
            self._port.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- PostgreSQL -----------------------------------------------------------------------------------------


async def reset_postgres(url: str, *, create: bool = False) -> None:
    """Drop and recreate the ``public`` schema of ``url``'s database; with ``create``, first create the
    database when it does not exist (from the server's ``postgres`` database)."""
    from sqlalchemy import text

    from base.db import create_engine

    if create:
        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        admin = create_engine(
            parts._replace(path="/postgres").geturl(),
            pool_size=1,
            max_overflow=0,
            isolation_level="AUTOCOMMIT",
        )
        try:
            async with admin.connect() as conn:
                exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not exists:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


# -- a sale, set up over HTTP ---------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ok(response: httpx.Response, status: int | tuple[int, ...] = (200, 201)) -> Any:
    """The response's JSON body; an ``AssertionError`` naming the request when its status is another."""
    expected = (status,) if isinstance(status, int) else status
    if response.status_code not in expected:
        raise AssertionError(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )
    return response.json()


@dataclass
class Sale:
    host_token: str
    room_id: str
    invite: str
    product_id: str
    card_id: str


@dataclass
class Buyer:
    viewer_id: str
    token: str
    share_code: str
    #: The customer token the viewer joined as (``None`` for a guest): what signs them in again, on this
    #: device or another, to the same viewer.
    customer: str | None = None


async def new_host(client: httpx.AsyncClient, name: str = "Host") -> str:
    """A host signs up; its token."""
    return str((await ok(await client.post("/api/hosts", json={"name": name})))["token"])


async def new_room(
    client: httpx.AsyncClient,
    host_token: str,
    title: str = "Show",
    *,
    live: bool = True,
    sign_in: str | None = None,
) -> dict[str, Any]:
    """A room of the host's (live unless ``live=False``), as the API describes it; ``sign_in`` is the
    room's ``"verified"`` (the server's default when not given) or ``"guest"`` (v1: a new viewer per join)."""
    body = {"title": title, **({"sign_in": sign_in} if sign_in else {})}
    room: dict[str, Any] = await ok(await client.post("/api/rooms", json=body, headers=auth(host_token)))
    if live:
        await ok(await client.post(f"/api/rooms/{room['id']}/live", headers=auth(host_token)))
    return room


async def new_card(
    client: httpx.AsyncClient,
    host_token: str,
    room_id: str,
    *,
    stock: int,
    price: int = 990,
    per_user_limit: int = 1,
    reserve_seconds: int = 300,
    product_price: int = 1990,
    open_sale: bool = True,
    duration_seconds: int | None = None,
) -> tuple[str, str]:
    """A product and a card selling it in the room, open unless ``open_sale=False``; their ids."""
    h = auth(host_token)
    product = await ok(
        await client.post("/api/products", json={"name": "Tea", "price": product_price}, headers=h)
    )
    body = {
        "product_id": product["id"],
        "price": price,
        "stock": stock,
        "per_user_limit": per_user_limit,
        "reserve_seconds": reserve_seconds,
    }
    card = await ok(await client.post(f"/api/rooms/{room_id}/cards", json=body, headers=h))
    if open_sale:
        opening = {"duration_seconds": duration_seconds} if duration_seconds else {}
        await ok(await client.post(f"/api/cards/{card['id']}/open", json=opening, headers=h))
    return product["id"], card["id"]


async def new_sale(
    client: httpx.AsyncClient,
    *,
    stock: int = 10,
    host: str = "Host",
    title: str = "Show",
    sign_in: str | None = None,
    **card: Any,
) -> Sale:
    """A host, a live room (``sign_in`` as :func:`new_room`) and a card (open unless ``open_sale=False``);
    ``card`` as :func:`new_card`."""
    token = await new_host(client, host)
    room = await new_room(client, token, title, sign_in=sign_in)
    product_id, card_id = await new_card(client, token, room["id"], stock=stock, **card)
    return Sale(token, room["id"], room["invite_token"], product_id, card_id)


def new_phone() -> str:
    """A valid, random mainland mobile number (a fresh customer each time)."""
    return f"+86139{secrets.randbelow(10**8):08d}"


async def sign_in(client: httpx.AsyncClient, room_id: str, phone: str | None = None) -> str:
    """A buyer signs in to the room's shop through the dev SMS provider (the code is in its answer); their
    customer token.

    The sign-in also sets the shop's customer cookie, which a browser keeps and sends with every later
    request. ``client`` is many buyers at once here, so it does not keep it: otherwise every request after
    this one, a join "without signing in" included, would be this buyer's."""
    phone = phone or new_phone()
    sent = await ok(await client.post(f"/api/rooms/{room_id}/sign-in/code", json={"phone": phone}), 202)
    body = {"phone": phone, "code": sent["dev_code"]}
    response = await client.post(f"/api/rooms/{room_id}/sign-in", json=body)
    for name in response.cookies:
        client.cookies.delete(name)
    return str((await ok(response))["token"])


async def join(
    client: httpx.AsyncClient,
    room_id: str,
    invite: str,
    name: str = "Viewer",
    *,
    ref: str | None = None,
    customer: str | None = None,
    guest: bool = False,
) -> Buyer:
    """A viewer joins the room with an invite (and a share code as ``ref``): as the signed-in customer
    ``customer`` (a customer token), else a new customer signed in first, or with ``guest`` as a guest."""
    body: dict[str, Any] = {"invite": invite, "name": name}
    if ref:
        body["ref"] = ref
    if customer is None and not guest:
        customer = await sign_in(client, room_id)
    headers = auth(customer) if customer else {}
    v = await ok(await client.post(f"/api/rooms/{room_id}/join", json=body, headers=headers))
    return Buyer(v["viewer_id"], v["token"], v["share_code"], customer)


async def join_many(
    client: httpx.AsyncClient,
    room_id: str,
    invite: str,
    n: int,
    *,
    concurrency: int = 16,
    name: Callable[[int], str] = lambda i: f"v{i}",
    guest: bool = False,
) -> list[Buyer]:
    """``n`` viewers join, ``concurrency`` at a time; in order. Each is a customer signed in first (a
    distinct phone: the server's ``LIVECART_LIMITS_SCALE`` must allow ``n`` codes and sign-ins from one
    address), or with ``guest`` a guest of a guest room."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Buyer:
        async with gate:
            return await join(client, room_id, invite, name(i), guest=guest)

    return list(await asyncio.gather(*(one(i) for i in range(n))))
