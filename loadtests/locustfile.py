"""Locust scenarios for a LiveCart show: viewers on the room's websocket, buyers in flash-sale bursts and one
host running the sales. Everything is set up through the API at the start (a host, a product, a live room
and a group invite), so it runs against any deployment::

    locust -f loadtests/locustfile.py --headless -u 200 -r 50 -t 25s --host http://127.0.0.1:8000

Users (the weights split ``-u``; the host is always exactly one):

- ``Viewer`` signs in as a customer of the host's shop, each locust user with a phone number of its own
  (``POST /api/rooms/{room}/sign-in/code``, then ``/sign-in`` with the code the dev SMS provider puts in
  its answer), joins the room with that customer token (the room's invite, a group invite, or another
  viewer's share link, so promoters get attribution) and holds the websocket ``/ws/rooms/{room}``. Every
  stock frame is recorded as a locust event ``WS stock delay``: the server's ``ts`` in the frame to its
  arrival (the same clock when locust runs on the server's machine; otherwise it includes the clocks'
  skew). A gap in ``seq`` or an unexpected close is a failure; a dropped viewer reconnects with ``since``
  and ``epoch`` and carries on. Viewers chat now and then.
- ``Buyer`` is a viewer who buys: the moment a ``card`` frame says a sale is open, one order with a fresh
  ``Idempotency-Key``, retried with the same key after a connection error or a 5xx; some buyers repeat an
  acknowledged request on purpose and must get the same order back. An attempt that gets no answer at
  all (a dropped connection) is counted as ``buy: no answer, retried with the same key``; a 5xx is a
  failure, and so is a buy that no attempt got an answer for. ``sold_out``, ``sale_not_open`` and
  ``limit_exceeded`` are the expected refusals of a flash sale and count as successes under their own
  names. Most buyers then pay through the dev payment provider and time the ``order`` frame that tells
  them so; some cancel; the rest let the reservation expire.
- ``Host`` pins a card, opens its sale, cuts the price, adds stock, closes it, and starts over, with the
  host session token that sign-up (or ``--host-token``) gave.

The room is a verified one, as new rooms are (SPEC §8), so the target must

- run the dev SMS provider, whose answer carries the code: ``LIVECART_ENV=dev``, or on a staging server
  ``LIVECART_SMS_PROVIDER=dev`` (never in production: anyone could sign in as any phone);
- allow this many sign-ins from one address: every rate limit is per IP too, and production allows 10 codes
  an hour per address, so raise ``LIVECART_LIMITS_SCALE`` (``loadtests/profile.py`` starts its server with
  100000) rather than switching limits off; with the default, the 11th viewer's code request gets a 429.

At the end the scenario checks through the host API that no card was oversold, that every card's stock adds
up with its orders, that every acknowledged order exists with its card and quantity, and that the room's
GMV is the sum of the paid orders (``loadtests/show_check.py``). Any problem is logged and the run exits 1.

Options (also as environment variables): ``--stock`` units per card, ``--sale-seconds``,
``--reserve-seconds``, ``--host-token`` (an existing host's session token, for a deployment without open
sign-up: ``livecart create-host`` or ``create-session`` prints one),
``--check-seconds`` (how long the end check may wait for the stock and the orders to agree).

The scenario runs in one locust process (``--processes`` and master/worker runs are refused): the end check
needs every acknowledged order, and those are kept in this process.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gevent
import requests
import websocket
from gevent.event import Event
from locust import HttpUser, between, constant, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from show_check import Acknowledged, CardStock, gmv_problems, lost_orders, stock_problems

log = logging.getLogger("livecart.loadtest")

#: Where a load test's orders ship (every product ships unless it says otherwise).
ADDRESS = {"name": "压测用户", "phone": "13800138000", "region": "上海市 浦东新区", "line": "世纪大道 100 号"}
REFUSALS = frozenset({"sold_out", "sale_not_open", "limit_exceeded"})
BUY_ATTEMPTS = 4
PAY_SHARE, CANCEL_SHARE, REPEAT_SHARE = 0.6, 0.15, 0.2
CHAT_SHARE = 0.3
CLOSE_NORMAL = 1000
SETUP_TIMEOUT = 30.0
#: Each locust user's own phone: mainland mobile numbers from a random start, one after the other.
PHONES = itertools.count(random.randrange(10**8))


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("LiveCart show")
    group.add_argument("--stock", type=int, default=40, env_var="LIVECART_LOAD_STOCK", help="units per card")
    group.add_argument(
        "--sale-seconds",
        type=int,
        default=6,
        env_var="LIVECART_LOAD_SALE_SECONDS",
        help="how long a sale is open",
    )
    group.add_argument(
        "--reserve-seconds",
        type=int,
        default=8,
        env_var="LIVECART_LOAD_RESERVE_SECONDS",
        help="the buyers' payment window",
    )
    group.add_argument(
        "--host-token",
        default="",
        env_var="LIVECART_LOAD_HOST_TOKEN",
        help="an existing host's session token",
    )
    group.add_argument(
        "--check-seconds",
        type=float,
        default=20.0,
        env_var="LIVECART_LOAD_CHECK_SECONDS",
        help="how long the end check waits for stock and orders to agree",
    )


# -- the show, set up once per run ----------------------------------------------------------------------


@dataclass
class Show:
    base: str
    host_token: str
    room_id: str
    room_invite: str
    group_invite: str
    product_id: str
    origin: str
    stock: int
    sale_seconds: int
    reserve_seconds: int
    share_codes: list[str] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}/ws/rooms/{self.room_id}"

    def host_headers(self) -> dict[str, str]:
        return bearer(self.host_token)


SHOW: Show | None = None
SHOW_READY = Event()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _expect(response: requests.Response, *statuses: int) -> dict[str, Any]:
    if response.status_code not in statuses:
        raise RuntimeError(
            f"{response.request.method} {response.url}: {response.status_code} {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


def set_up_show(base: str, options: Any) -> Show:
    """A host (or the one given), a product, a live room and a group invite, through the public API."""
    http = requests.Session()
    token = options.host_token
    if not token:
        token = _expect(http.post(f"{base}/api/hosts", json={"name": "Load test host"}, timeout=10), 201)[
            "token"
        ]
    auth = bearer(token)
    product = _expect(
        http.post(
            f"{base}/api/products",
            json={"name": "Load test oolong", "price": 1990, "description": "Flash-sale tea"},
            headers=auth,
            timeout=10,
        ),
        201,
    )
    room = _expect(
        http.post(
            f"{base}/api/rooms",
            json={"title": "Load test show", "sign_in": "verified"},  # every viewer a signed-in customer
            headers=auth,
            timeout=10,
        ),
        201,
    )
    _expect(http.post(f"{base}/api/rooms/{room['id']}/live", headers=auth, timeout=10), 200)
    invite = _expect(
        http.post(
            f"{base}/api/rooms/{room['id']}/invites",
            json={"label": "load test group", "max_uses": 100_000},
            headers=auth,
            timeout=10,
        ),
        201,
    )
    # The websocket's Origin allowlist is the deployment's own origin, the one its invite links name.
    link = urlsplit(room["invite_url"])
    return Show(
        base=base,
        host_token=token,
        room_id=room["id"],
        room_invite=room["invite_token"],
        group_invite=invite["token"],
        product_id=product["id"],
        origin=f"{link.scheme}://{link.netloc}",
        stock=options.stock,
        sale_seconds=options.sale_seconds,
        reserve_seconds=options.reserve_seconds,
    )


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    global SHOW
    if isinstance(environment.runner, MasterRunner | WorkerRunner):
        log.error("This scenario runs in one locust process: its end check needs every acknowledged order.")
        environment.process_exit_code = 2
        environment.runner.quit()
        return
    assert environment.host, "give the deployment with --host"
    SHOW = set_up_show(environment.host.rstrip("/"), environment.parsed_options)
    SHOW_READY.set()
    log.info("show ready: room %s", SHOW.room_id)


def the_show() -> Show:
    if not SHOW_READY.wait(SETUP_TIMEOUT) or SHOW is None:
        raise RuntimeError("the show was not set up")
    return SHOW


def fire(environment: Environment, kind: str, name: str, millis: float, error: str | None = None) -> None:
    environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=millis,
        response_length=0,
        exception=RuntimeError(error) if error else None,
        context={},
    )


# -- viewers and buyers ---------------------------------------------------------------------------------


class Viewer(HttpUser):
    weight = 3
    wait_time = between(4, 10)

    def on_start(self) -> None:
        self.show = the_show()
        self.token = ""
        self.seq: int | None = None
        self.epoch: str | None = None
        self.ws: websocket.WebSocket | None = None
        self.stopping = False
        self._join()
        self.reader = gevent.spawn(self._watch)

    def on_stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            self.ws.close()
        self.reader.kill(block=False)

    def _sign_in(self) -> str:
        """A customer of the host's shop, by a phone of this user's own and the dev provider's code."""
        show = self.show
        phone = f"+86139{next(PHONES) % 10**8:08d}"
        sent = self.client.post(
            f"/api/rooms/{show.room_id}/sign-in/code",
            json={"phone": phone},
            name="/api/rooms/[room]/sign-in/code",
            timeout=15,
        )
        sent.raise_for_status()
        code = sent.json().get("dev_code")
        if not code:
            raise RuntimeError(
                "the target sent the code by SMS: run it with the dev SMS provider (LIVECART_ENV=dev, or "
                "LIVECART_SMS_PROVIDER=dev on a staging server)"
            )
        signed = self.client.post(
            f"/api/rooms/{show.room_id}/sign-in",
            json={"phone": phone, "code": code},
            name="/api/rooms/[room]/sign-in",
            timeout=15,
        )
        signed.raise_for_status()
        return str(signed.json()["token"])

    def _join(self) -> None:
        show, how = self.show, random.random()
        customer = self._sign_in()
        body: dict[str, str] = {"name": f"viewer-{uuid.uuid4().hex[:8]}"}
        if how < 0.3 and show.share_codes:
            body["invite"] = random.choice(show.share_codes)  # opened a promoter's share link
        elif how < 0.5:
            body["invite"] = show.group_invite
            if show.share_codes:
                body["ref"] = random.choice(show.share_codes)
        else:
            body["invite"] = show.room_invite
        response = self.client.post(
            f"/api/rooms/{show.room_id}/join",
            json=body,
            headers=bearer(customer),
            name="/api/rooms/[room]/join",
            timeout=15,
        )
        response.raise_for_status()
        joined = response.json()
        self.token = joined["token"]
        show.share_codes.append(joined["share_code"])

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    # The websocket, read by a greenlet of its own for as long as the user runs.

    def _watch(self) -> None:
        while not self.stopping:
            code = self._session()
            if self.stopping:
                return
            fire(self.environment, "WS", "reconnect", 0, f"closed with {code}; reconnecting with since")
            gevent.sleep(random.uniform(0.2, 1.0))

    def _session(self) -> int | None:
        url = f"{self.show.ws_url}?token={self.token}"
        if self.seq is not None and self.epoch is not None:
            url += f"&since={self.seq}&epoch={self.epoch}"
        started = time.monotonic()
        try:
            self.ws = websocket.create_connection(
                url, origin=self.show.origin, timeout=60, enable_multithread=True, skip_utf8_validation=True
            )
        except Exception as exc:  # refused, reset, timed out: the user retries
            fire(self.environment, "WS", "connect", (time.monotonic() - started) * 1000, repr(exc))
            return None
        first = True
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else CLOSE_NORMAL
                if first:
                    fire(self.environment, "WS", "connect + first frame", (time.monotonic() - started) * 1000)
                    first = False
                self._frame(json.loads(frame.data))
        except Exception as exc:
            if not self.stopping:
                fire(self.environment, "WS", "read", 0, repr(exc))
            return None
        finally:
            self.ws.close()

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "snapshot":
            self.seq, self.epoch = frame["seq"], frame["epoch"]
            for card in frame["cards"]:
                self.on_card(card)
            return
        if "seq" in frame:
            if self.seq is not None and frame["seq"] != self.seq + 1:
                fire(self.environment, "WS", "seq", 0, f"gap: {self.seq} then {frame['seq']}")
            self.seq = frame["seq"]
        if kind == "stock":
            fire(self.environment, "WS", "stock delay", max(0.0, time.time() * 1000 - frame["ts"]))
        elif kind == "card":
            self.on_card(frame["card"])
        elif kind == "order":
            self.on_order(frame["order"])

    def on_card(self, card: Mapping[str, Any]) -> None:
        """A viewer only watches."""

    def on_order(self, order: Mapping[str, Any]) -> None:
        """A viewer has no orders."""

    def chat(self) -> None:
        if self.ws is not None and self.ws.connected and random.random() < CHAT_SHARE:
            try:
                self.ws.send(
                    json.dumps({"type": "chat", "text": random.choice(["好!", "上链接", "还有吗?"])})
                )
            except Exception as exc:
                if not self.stopping:
                    fire(self.environment, "WS", "chat", 0, repr(exc))

    tasks = [chat]


class Buyer(Viewer):
    weight = 1

    def on_start(self) -> None:
        self.tried: set[str] = set()
        self.paying: dict[str, float] = {}  # order id -> when the payment was completed
        super().on_start()

    def on_card(self, card: Mapping[str, Any]) -> None:
        if card["status"] == "open" and card["id"] not in self.tried:
            self.tried.add(card["id"])
            gevent.spawn(self._buy, card["id"])

    def on_order(self, order: Mapping[str, Any]) -> None:
        paid_at = self.paying.pop(order["id"], None) if order["status"] == "paid" else None
        if paid_at is not None:
            fire(self.environment, "WS", "order frame after paying", (time.monotonic() - paid_at) * 1000)

    def _place(self, card_id: str, key: str, quantity: int) -> dict[str, Any] | None:
        """One order, retried with the same key until the server answers; None when refused."""
        for attempt in range(BUY_ATTEMPTS):
            with self.client.post(
                f"/api/cards/{card_id}/orders",
                json={"quantity": quantity},
                headers={**self.auth, "Idempotency-Key": key},
                name="/api/cards/[card]/orders",
                catch_response=True,
                timeout=15,
            ) as response:
                if response.status_code in (200, 201):
                    response.success()
                    order: dict[str, Any] = response.json()
                    return order
                error = _error_code(response)
                if response.status_code == 409 and error in REFUSALS:
                    response.request_meta["name"] = f"buy refused: {error}"
                    response.success()
                    return None
                if not response.status_code:
                    # No answer (the connection dropped): what a phone on a bad network retries with the
                    # same key. Counted under its own name; a failure only if no attempt gets an answer,
                    # and the end check finds the order if the lost attempt placed it.
                    response.request_meta["name"] = "buy: no answer, retried with the same key"
                    response.success()
                else:
                    response.failure(f"{response.status_code} {error}")
                    if response.status_code < 500:
                        return None  # the server answered and said no: a retry would say the same
            gevent.sleep(0.1 * 2**attempt)
        fire(self.environment, "HTTP", "buy", 0, f"no success after {BUY_ATTEMPTS} attempts")
        return None

    def _buy(self, card_id: str) -> None:
        key = str(uuid.uuid4())
        quantity = random.choice((1, 1, 2))
        order = self._place(card_id, key, quantity)
        if order is None:
            return
        self.show.acknowledged[order["id"]] = Acknowledged(order["id"], card_id, quantity)
        if random.random() < REPEAT_SHARE:  # a double tap: the same key must give the same order
            again = self._place(card_id, key, quantity)
            if again is not None and again["id"] != order["id"]:
                fire(self.environment, "HTTP", "idempotent repeat", 0, f"{again['id']} != {order['id']}")
        roll = random.random()
        if roll < PAY_SHARE:
            self._pay(order["id"])
        elif roll < PAY_SHARE + CANCEL_SHARE:
            self.client.post(
                f"/api/orders/{order['id']}/cancel", headers=self.auth, name="/api/orders/[order]/cancel"
            )

    def _pay(self, order_id: str) -> None:
        response = self.client.post(
            f"/api/orders/{order_id}/pay",
            json={"address": ADDRESS},
            headers=self.auth,
            name="/api/orders/[order]/pay",
        )
        if not response.ok:
            return
        payment = response.json()["payment_id"]
        paying = time.monotonic()
        self.paying[order_id] = paying
        done = self.client.post(
            f"/api/payments/dev/{payment}/complete",
            json={"outcome": "paid"},
            name="/api/payments/dev/[payment]/complete",
        )
        if not done.ok:
            self.paying.pop(order_id, None)


def _error_code(response: Any) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""


# -- the host -------------------------------------------------------------------------------------------


class Host(HttpUser):
    fixed_count = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        self.show = the_show()

    def _card(self, verb: str, path: str, name: str, **kwargs: Any) -> dict[str, Any] | None:
        response = self.client.request(verb, path, headers=self.show.host_headers(), name=name, **kwargs)
        return dict(response.json()) if response.ok else None

    def sale_round(self) -> None:
        show = self.show
        card = self._card(
            "POST",
            f"/api/rooms/{show.room_id}/cards",
            "/api/rooms/[room]/cards",
            json={
                "product_id": show.product_id,
                "price": 1990,
                "stock": show.stock,
                "per_user_limit": 2,
                "reserve_seconds": show.reserve_seconds,
            },
        )
        if card is None:
            gevent.sleep(1)
            return
        card_id, beat = card["id"], show.sale_seconds / 3
        show.cards.append(card_id)
        gevent.sleep(1.0)  # pinned: everyone sees it coming
        self._card(
            "POST",
            f"/api/cards/{card_id}/open",
            "/api/cards/[card]/open",
            json={"duration_seconds": show.sale_seconds},
        )
        gevent.sleep(beat)
        self._card("PATCH", f"/api/cards/{card_id}", "/api/cards/[card] (cut price)", json={"price": 1490})
        gevent.sleep(beat)
        self._card(
            "PATCH",
            f"/api/cards/{card_id}",
            "/api/cards/[card] (add stock)",
            json={"add_stock": show.stock // 2},
        )
        self.client.get(
            f"/api/rooms/{show.room_id}/stats", headers=show.host_headers(), name="/api/rooms/[room]/stats"
        )
        gevent.sleep(beat)
        self._card("POST", f"/api/cards/{card_id}/close", "/api/cards/[card]/close")
        gevent.sleep(1.0)

    tasks = [sale_round]


# -- the end-of-run check -------------------------------------------------------------------------------


def check_show(show: Show, wait_seconds: float) -> list[str]:
    """Every problem the host API shows, after waiting up to ``wait_seconds`` for the stock and the orders
    to agree (reservations expiring between the two reads)."""
    http = requests.Session()
    auth = show.host_headers()
    deadline = time.monotonic() + wait_seconds
    while True:
        cards = []
        for card_id in show.cards:
            card = _expect(http.get(f"{show.base}/api/cards/{card_id}", headers=auth, timeout=10), 200)
            cards.append(CardStock(card_id, int(card["stock_total"]), int(card["stock_left"])))
        room_orders = http.get(f"{show.base}/api/rooms/{show.room_id}/orders", headers=auth, timeout=30)
        orders: list[dict[str, Any]] = room_orders.json() if room_orders.ok else []
        stats = _expect(
            http.get(f"{show.base}/api/rooms/{show.room_id}/stats", headers=auth, timeout=10), 200
        )
        problems = (
            ([] if room_orders.ok else [f"orders: {room_orders.status_code} {room_orders.text}"])
            + stock_problems(cards, orders)
            + lost_orders(show.acknowledged.values(), orders)
            + gmv_problems(int(stats["gmv"]), orders)
        )
        if not problems or time.monotonic() > deadline:
            log.info(
                "end check: %d cards, %d orders (%d acknowledged to this run, %d paid), GMV %s",
                len(cards),
                len(orders),
                len(show.acknowledged),
                sum(1 for o in orders if o["status"] == "paid"),
                stats["gmv"],
            )
            if problems:
                _log_breakdown(orders)
            return problems
        time.sleep(0.5)


def _log_breakdown(orders: list[dict[str, Any]]) -> None:
    """What a failed check needs to be understood: each card's orders by status."""
    tally: dict[tuple[str, str], list[int]] = {}
    for order in orders:
        status = order["status"] + (" (late)" if order.get("late_payment") else "")
        status += " (restocked)" if order.get("restocked") else ""
        tally.setdefault((order["card_id"], status), []).append(int(order["quantity"]))
    for (card_id, status), quantities in sorted(tally.items()):
        log.error("card %s: %d %s orders, %d units", card_id, len(quantities), status, sum(quantities))


@events.quitting.add_listener
def _check(environment: Environment, **_: Any) -> None:
    if SHOW is None:
        return
    problems = check_show(SHOW, environment.parsed_options.check_seconds)
    for problem in problems:
        log.error("end check failed: %s", problem)
    if problems:
        environment.process_exit_code = 1
    else:
        log.info("end check passed: nothing oversold, every acknowledged order exists, GMV adds up")
