"""``/openapi.json`` tells the truth (issue 10): Schemathesis, every check on (``--checks all``), runs against
the real app on real Redis and SQLite, once as a host and once as a viewer (on what a viewer may call), and
on PostgreSQL over the operations that store text a client sent; it finds nothing.

Its requests reach real resources: path ids and the body fields that name one (``product_id``, ``invite``)
are drawn from a small world built first (a host, a live verified room with an open card, a customer
signed in at the host's shop whose viewer bought, a pending payment, a paid order with an after-sale
request, a refund, an invite), mixed with generated ones. Ending a room and closing a card get a room and a
card of their own, so that the rest of the run still has a live sale to buy from. A few operations get a
caller of their own:

- joining is done as the world's customer (a verified room lets nobody else in: with the run's host or
  viewer token every join would be the same 401), except on PostgreSQL, where it goes to a guest room of
  its own without a token (v1: each join a new viewer, storing the name it was sent; a customer's second
  join stores nothing), where a join without a name is refused (422: the room's setting asks for one, which
  the body's schema cannot know);
- signing out sessions (one, or all of them) is done as a second host: with the run's own session, the
  first "sign out everywhere" would leave the rest of the run nothing but 401s.

And every run checks that Schemathesis met no operation that answered it only 401 or 403, which would
mean its token had stopped working, or never did.

Each check runs with its defaults, but for ``positive_data_acceptance`` on the few operations where a
request can match the schema and still be refused for what no schema can say (a dependent rule, not a
shape): ``before`` naming none of the host's rooms (422), a phone that is no valid number (422), an
``Idempotency-Key`` the generator already used with another quantity (422), a webhook signature (400: no
schema knows the HMAC), an SDP offer that only WebRTC can judge (400), a payment provider this server is not
configured for (422), and a refund's amount more than is left of its order (422). Each is documented with
its code in the schema.

The stateful phase follows the links Schemathesis infers (a room created, then its cards, invites...). A card
always names the world's product there: ``ensure_resource_availability`` reads a 404 after a create as the
created resource having vanished, and the 404 ``unknown_product`` of a made-up product id would read so
(``test_bad_input.py`` pins that answer).

Bounded for CI (about a minute on two cores): 30 examples per operation (fuzzing, and the stateful phase's
scenarios), the coverage phase's deterministic cases.
``LIVECART_SCHEMATHESIS_SEED`` picks another seed, ``LIVECART_SCHEMATHESIS_EXAMPLES`` another count.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from live.hls_rules import sign_grant
from live.models import Viewer
from loadtests.harness import Port, new_card, new_host, new_room
from tests.conftest import REDIS_URL, LiveServer, flushed_redis, fresh_database, make_settings
from tests.shop_api import ADDRESS, auth, buy, join, new_sale, ok, pay

pytestmark = pytest.mark.integration

PYTHON = sys.executable
EXAMPLES = int(os.environ.get("LIVECART_SCHEMATHESIS_EXAMPLES", "30"))
SEED = int(os.environ.get("LIVECART_SCHEMATHESIS_SEED", "20261"))
RUN_TIMEOUT = 240

#: Registered in Schemathesis's process: an SDP offer goes on the wire as text.
HOOKS = """
import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
"""

#: operation -> statuses besides the defaults that a schema-valid request may get (see the docstring).
SEMANTIC_REFUSALS: dict[str, list[int]] = {
    "GET /api/rooms": [422],
    "POST /api/cards/{card}/orders": [422],
    "POST /api/payments/webhook": [400],
    "POST /api/rooms/{room}/whip": [400],
    "POST /api/rooms/{room}/whep": [400],
    # A phone that the schema's text admits and that is no valid number (422 ``invalid_phone``).
    "POST /api/rooms/{room}/sign-in/code": [422],
    "POST /api/rooms/{room}/sign-in": [422],
    "POST /api/host-sign-in/code": [422],
    "POST /api/host-sign-in": [422],
    "POST /api/hosts": [422],  # its phone, which is optional
    "POST /api/shops/{host}/sign-in/code": [422],
    "POST /api/shops/{host}/sign-in": [422],
    "POST /api/leaders": [422],  # by phone
    # ``before`` naming none of the host's customers (as rooms' above).
    "GET /api/customers": [422],
    # A payment provider the schema names and this server is not configured for (422 ``unknown_provider``).
    "PATCH /api/shop": [422],
    "POST /api/orders/{order}/pay": [422],
    "POST /api/payments/wechat/notify": [422],
    "POST /api/payments/alipay/notify": [422],
    "POST /api/payments/stripe/webhook": [422],
    # An amount the schema admits and that is more than is left to refund of the order (422
    # ``invalid_refund``).
    "POST /api/orders/{order}/after-sale": [422],
    "POST /api/after-sales/{after_sale}/approve": [422],
    # A leader keeps a name, and is suspended or not: ``null`` for either is refused (422).
    "PATCH /api/leaders/{leader}": [422],
}
JOIN = "POST /api/rooms/{room}/join"
#: A customer's own (``/api/me``): the host's run calls them with the viewer's customer token.
CUSTOMER_OWN = ("GET /api/me", "GET /api/me/customers", "GET /api/me/commissions")
#: Operations that sign sessions out: the run's caller for them is a host of their own (see the docstring).
SIGN_OUTS = ("DELETE /api/sessions", "DELETE /api/sessions/{session}")
#: What a viewer may call (the viewer's run); the host's run is every other operation and those a host may
#: call too. A caller refused for who they are (403) is ``test_bad_input.py``'s.
VIEWER_ONLY = {
    "POST /api/cards/{card}/orders",
    "POST /api/orders/{order}/pay",
    "POST /api/orders/{order}/cancel",
    "POST /api/orders/{order}/receive",
    "POST /api/orders/{order}/after-sale",
    "POST /api/after-sales/{after_sale}/withdraw",
}
THUMBNAIL = "GET /api/rooms/{room}/thumbnail.jpg"
VIEWER_TOO = {
    "GET /api/rooms/{room}",
    "POST /api/rooms/{room}/join",
    "POST /api/rooms/{room}/whep",
    "DELETE /api/rooms/{room}/whep/{session}",
    "GET /api/rooms/{room}/thumbnail.jpg",
    "GET /api/rooms/{room}/video",
    "GET /api/cards/{card}",
    "GET /api/orders/{order}",
    "GET /api/orders/{order}/after-sales",
}
#: The operations that store text a client sent (the PostgreSQL run's).
TEXT_WRITES = {
    "POST /api/hosts",
    "POST /api/rooms",
    "POST /api/products",
    "POST /api/rooms/{room}/cards",
    "POST /api/rooms/{room}/invites",
    "POST /api/rooms/{room}/join",
    "POST /api/orders/{order}/ship",
    "POST /api/after-sales/{after_sale}/approve",
    "POST /api/after-sales/{after_sale}/reject",
}
DEFAULT_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


class NoDelayPort(Port):
    """A held port whose connections send each write at once. asyncio sets ``TCP_NODELAY`` only on a socket
    made with ``IPPROTO_TCP``; without it every answer on a kept-alive connection (Schemathesis keeps its
    connection) waits about 40 ms for the client's delayed ACK, which would make this run ten times slower."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.host = host
        self.number = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.number}"


@dataclass
class World:
    server: LiveServer
    host: str
    viewer: str
    customer: str  # the viewer's customer token: who joins
    spare_host: str  # a second host's session: who signs sessions out
    ids: dict[str, str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    r = flushed_redis()
    tmp = tmp_path_factory.mktemp(f"schema_{request.param}")
    database_url = await fresh_database(request.param, tmp)
    try:
        async with (
            LiveServer(make_settings(database_url, REDIS_URL, tmp), port=NoDelayPort()) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        ):
            sale = await new_sale(client, stock=10_000, per_user_limit=10_000)
            viewer = await join(client, sale, "Viewer")
            h = auth(sale.host_token)
            order = await ok(await buy(client, sale.card_id, viewer), 201)
            payment = await ok(
                await client.post(
                    f"/api/orders/{order['id']}/pay", json={"address": ADDRESS}, headers=auth(viewer.token)
                )
            )
            # A paid order with an open after-sale request, and a refund of another one (SPEC §10).
            paid = await ok(await buy(client, sale.card_id, viewer), 201)
            await pay(client, paid["id"], viewer)
            after_sale = await ok(
                await client.post(
                    f"/api/orders/{paid['id']}/after-sale",
                    json={"kind": "refund", "reason": "坏了", "amount": 1},
                    headers=auth(viewer.token),
                ),
                201,
            )
            refunded = await ok(await buy(client, sale.card_id, viewer), 201)
            await pay(client, refunded["id"], viewer)
            await ok(await client.post(f"/api/orders/{refunded['id']}/refund", json={}, headers=h))
            (refund,) = await ok(await client.get("/api/refunds", headers=h))
            invite = await ok(await client.post(f"/api/rooms/{sale.room_id}/invites", json={}, headers=h))
            spare_room = await new_room(client, sale.host_token, "To end")
            _, spare_card = await new_card(client, sale.host_token, sale.room_id, stock=5)
            guest_room = await new_room(client, sale.host_token, "Guests", sign_in="guest")
            spare_host = await new_host(client, "Signs out")
            assert viewer.customer is not None
            ids = {
                "room": sale.room_id,
                "card": sale.card_id,
                "order": order["id"],
                "paid_order": paid["id"],
                "after_sale": after_sale["id"],
                "refund": refund["id"],
                "payment": payment["payment_id"],
                "invite": invite["id"],
                "product_id": sale.product_id,
                "invite_token": sale.invite,
                "spare_room": spare_room["id"],
                "spare_card": spare_card,
                "guest_room": guest_room["id"],
                "viewer": viewer.viewer_id,
                "guest_invite": guest_room["invite_token"],
            }
            yield World(server, sale.host_token, viewer.token, viewer.customer, spare_host, ids)
    finally:
        r.flushdb()
        r.close()


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string, number, list or boolean is the same TOML


def config(w: World, token: str, *, guest_joins: bool = False) -> str:
    """The ``schemathesis.toml`` of one run; joins as the world's customer, or with ``guest_joins`` as guests
    of the guest room."""
    i = w.ids
    lines = [
        f"seed = {SEED}",
        # One worker: Schemathesis's workers are threads, and on CPython 3.11.7 Hypothesis parsing source in
        # several threads at once fails now and then ("AST constructor recursion depth mismatch").
        "workers = 1",
        "[generation]",
        f"max-examples = {EXAMPLES}",
        "[auth.openapi.bearer]",
        f"bearer = {_toml(token)}",
    ]
    for name in ("room", "card", "payment", "invite", "product_id", "invite_token", "after_sale", "refund"):
        lines += [f"[dictionaries.{name}]", f"values = [{_toml(i[name])}]"]
    # A reserved order (with a pending payment) and a paid one (with an after-sale request).
    lines += ["[dictionaries.order]", f"values = {_toml([i['order'], i['paid_order']])}"]
    lines.append("[parameters]")
    for location, dictionary in (
        ("path.room", "room"),
        ("path.card", "card"),
        ("path.order", "order"),
        ("path.payment", "payment"),
        ("path.invite", "invite"),
        ("path.after_sale", "after_sale"),
        ("path.refund", "refund"),
        ("body.invite", "invite_token"),
        ("query.invite", "invite_token"),  # a room's preview
    ):
        lines.append(f'"{location}" = {{ dictionary = "{dictionary}", probability = 0.7 }}')
    lines.append('"body.product_id" = { dictionary = "product_id", probability = 1.0 }')  # (see above)
    for path, name, value in (
        ("/api/rooms/{room}/end", "path.room", i["spare_room"]),
        ("/api/cards/{card}/close", "path.card", i["spare_card"]),
    ):
        lines += [
            "[[operations]]",
            f"include-path = {_toml(path)}",
            f"parameters = {{ {_toml(name)} = {_toml(value)} }}",
        ]
    # A room's HLS files take a signed grant in their path, which the schema cannot make: the world's room's.
    grant = sign_grant(w.server.settings.signing_keys[0], i["room"], int(time.time()) + 86_400)
    lines += [
        "[[operations]]",
        'include-name = "GET /api/rooms/{room}/hls/{grant}/{name}"',
        f'parameters = {{ "path.room" = {_toml(i["room"])}, "path.grant" = {_toml(grant)} }}',
    ]
    lines += ["[[operations]]", f"include-name = {_toml(JOIN)}"]
    if guest_joins:
        lines.append(
            f'parameters = {{ "path.room" = {_toml(i["guest_room"])}, '
            f'"body.invite" = {_toml(i["guest_invite"])} }}'
        )
        # A guest must give a name (422): the room's setting says so, not the body's shape.
        expected = [*DEFAULT_POSITIVE, "422"]
        lines.append(f"checks.positive_data_acceptance.expected-statuses = {_toml(expected)}")
    else:
        lines.append(f"headers = {{ Authorization = {_toml('Bearer ' + w.customer)} }}")
    for name in CUSTOMER_OWN:  # a customer's own orders and earnings: the customer asks
        lines += [
            "[[operations]]",
            f"include-name = {_toml(name)}",
            f"headers = {{ Authorization = {_toml('Bearer ' + w.customer)} }}",
        ]
    for name in SIGN_OUTS:
        lines += [
            "[[operations]]",
            f"include-name = {_toml(name)}",
            f"headers = {{ Authorization = {_toml('Bearer ' + w.spare_host)} }}",
        ]
    for name, statuses in SEMANTIC_REFUSALS.items():
        expected = DEFAULT_POSITIVE + [str(s) for s in statuses]
        lines += [
            "[[operations]]",
            f"include-name = {_toml(name)}",
            f"checks.positive_data_acceptance.expected-statuses = {_toml(expected)}",
        ]
    return "\n".join(lines) + "\n"


async def run_schemathesis(w: World, who: str, tmp: Path) -> tuple[int, str]:
    """Schemathesis's exit status and output: as ``who`` ("host", "viewer", or "text": the host, on the
    operations that store text)."""
    token = w.viewer if who == "viewer" else w.host
    if who == "host":
        # A room's thumbnail is grabbed from its live video, so a room the host's stateful phase just made
        # has none (404 by contract, which Schemathesis reads as a lost resource): the viewer's run has it.
        left_out = VIEWER_ONLY | {THUMBNAIL}
        selection = [arg for name in sorted(left_out) for arg in ("--exclude-name", name)]
    else:
        names = VIEWER_ONLY | VIEWER_TOO if who == "viewer" else TEXT_WRITES
        selection = [arg for name in sorted(names) for arg in ("--include-name", name)]
    (tmp / "livecart_st_hooks.py").write_text(HOOKS)
    (tmp / "schemathesis.toml").write_text(config(w, token, guest_joins=who == "text"))
    command = [
        PYTHON,
        *("-m", "schemathesis.cli"),
        *("--config-file", str(tmp / "schemathesis.toml")),
        "run",
        f"{w.server.url}/openapi.json",
        *("--checks", "all"),
        *selection,
        "--output-truncate=false",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "livecart_st_hooks",
        "PYTHONPATH": str(tmp),
        "NO_COLOR": "1",
        "COLUMNS": "160",
    }
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("world", "who"),
    [
        pytest.param("sqlite", "host", id="sqlite-host"),
        pytest.param("sqlite", "viewer", id="sqlite-viewer"),
        # What PostgreSQL adds is storing the text the schema admits: the operations that write text.
        pytest.param("postgresql", "text", id="postgresql-text"),
    ],
    indirect=["world"],
)
async def test_schemathesis_finds_nothing(world: World, who: str, tmp_path: Path) -> None:
    code, out = await run_schemathesis(world, who, tmp_path)
    assert code == 0, out[-20000:]
    # Every operation answered something besides 401/403: the run's tokens worked to the end.
    assert "Authentication failed" not in out, out[-20000:]
    # The joins got in: the world's customer is still one viewer (the joins as them all returned it); on
    # PostgreSQL, guests joined the guest room.
    async with world.server.state.sessions() as session:
        me = await session.get(Viewer, world.ids["viewer"])
        assert me is not None and me.customer_id is not None
        mine = await session.scalar(select(func.count()).where(Viewer.customer_id == me.customer_id))
        guests = await session.scalar(select(func.count()).where(Viewer.room_id == world.ids["guest_room"]))
    assert mine == 1
    if who == "text":
        assert guests, "no guest joined the guest room: the join operation never reached its core"
