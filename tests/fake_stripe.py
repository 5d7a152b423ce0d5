"""A stand-in for Stripe's API, the part LiveCart's Stripe provider (``shop.payments.stripe_pay``) uses, on a
held loopback port (``FakeServer``), so the real ``stripe`` SDK runs unchanged against it.

Like Stripe it

- checks every request's API key (``Authorization: Bearer sk_...``, or HTTP Basic with the key as the
  user): none or another is a 401 in Stripe's error format, counted in ``bad_auth``;
- reads POST bodies as Stripe takes them, ``application/x-www-form-urlencoded`` with nested keys in
  brackets (``line_items[0][price_data][currency]=usd``), and query strings the same way
  (``created[gte]=...``);
- answers Stripe's JSON objects, each with its ``"object"`` (``checkout.session``, ``payment_intent``,
  ``refund``, ``list``, ``search_result``) and errors as ``{"error": {"type", "code"?, "message",
  "param"?}}`` with Stripe's HTTP statuses (400, 401, 404; ``fail_with`` for a 5xx);
- honours ``Idempotency-Key`` on POST: the same key with the same parameters replays the first answer
  (``Idempotent-Replayed: true``), with other parameters is a 400 ``idempotency_error``;
- keeps state: Checkout Sessions (``mode=payment``, their line items, ``expires_at`` checked to lie 30
  minutes to 24 hours ahead as Stripe requires), the PaymentIntent made when the buyer pays (as Stripe has
  done since API version 2022-08-01: none before), and refunds (never more than the payment's unrefunded
  amount).

Endpoints: ``POST /v1/checkout/sessions``, ``GET /v1/checkout/sessions`` (``created``, ``status``,
``payment_intent``; newest first, ``limit`` and ``starting_after``), ``GET /v1/checkout/sessions/{id}``,
``POST /v1/checkout/sessions/{id}/expire`` (an error unless it is open), ``GET
/v1/payment_intents/search`` (queries of the form ``metadata['key']:'value'`` only; Stripe's search lags
writes by up to a minute, this one does not), ``GET /v1/payment_intents/{id}``, ``POST /v1/refunds``,
``GET /v1/refunds`` (``payment_intent``, ``created``), ``GET /v1/refunds/{id}``, ``GET
/v1/balance_transactions`` (``created``, ``type``; newest first, paged; ``expand[]`` of ``data.source`` and
``data.source.payment_intent``).

Money moving makes a balance transaction, as on Stripe: a ``charge`` (its source the Charge, which a
succeeded PaymentIntent now has: ``charges``) when the buyer pays, a ``refund`` (negative, its source the
Refund) when a refund is made. A test makes the statement differ from what happened with
``statement_left_out`` (the ``payment_id`` and ``refund_id`` values whose transactions are not listed),
``statement_amounts`` (an amount to show instead, by the same ids) and ``outside_payment`` (a payment made on
the account that LiveCart's ledger never saw).

The buyer's side, for tests: ``pay(payment_id)`` pays a payment's open session as if the buyer did
(without notifying), ``pay(..., delayed=True)`` then ``settle_delayed(...)`` a delayed method (a bank debit),
``expire(payment_id)`` lets a session run out. Webhooks are built and signed as Stripe does them (``t=<unix
time>,v1=<hex HMAC-SHA256 of "{t}.{body}" with the endpoint secret>``): ``payment_notification``,
``refund_notification``, ``redeliver``. Messages in errors paraphrase Stripe's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fake_providers import FakeServer

API_VERSION = "2025-07-30.basil"
MIN_LIFETIME_S = 30 * 60
MAX_LIFETIME_S = 24 * 60 * 60
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
SEARCH = re.compile(r"^metadata\['([^'\\]+)'\]:'((?:[^'\\]|\\.)*)'$")

Answer = tuple[int, dict[str, Any]]


class StripeFailure(Exception):
    """An error answer, in Stripe's format."""

    def __init__(
        self, status: int, message: str, *, kind: str = "invalid_request_error", **extra: str
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": kind, "message": message, **extra}}


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracketed form keys as nested values: ``a[b][0][c]=x`` → ``{"a": {"b": [{"c": "x"}]}}``."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = key.replace("]", "").split("[")
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StripeFailure(400, f"Invalid parameter: {key}", param=key)
        node[path[-1]] = value
    decoded: dict[str, Any] = _lists(root)
    return decoded


def _lists(value: Any) -> Any:
    """Dicts keyed 0, 1, ... as lists (Stripe's form encoding of arrays)."""
    if not isinstance(value, dict):
        return value
    items = {k: _lists(v) for k, v in value.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def integer(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise StripeFailure(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise StripeFailure(400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
    return int(raw)


def metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, str]:
    raw = params.get(name, {})
    if raw == "":
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise StripeFailure(400, "Invalid metadata: must be a hash of strings", param=name)
    for key, value in raw.items():
        if len(key) > 40 or len(value) > 500:
            raise StripeFailure(400, "Metadata keys are at most 40 characters, values 500", param=name)
    return dict(raw)


def new(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}" if prefix == "cs" else f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class SeenRequest:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None


@dataclass
class FakeStripe:
    secret_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_urlsafe(24))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    #: Checkout Sessions as Stripe answers them, by id, in creation order.
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What each session was created with (Stripe shows line items only on request): its decoded params.
    session_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every API request that passed the key check, in order.
    requests: list[SeenRequest] = field(default_factory=list)
    #: Requests refused for a missing or wrong API key.
    bad_auth: int = 0
    #: Answer every API request with this HTTP status (a 5xx: Stripe's ``api_error``).
    fail_with: int | None = None
    #: Seconds to wait before answering (a Stripe that hangs).
    delay: float = 0.0
    #: The ``status`` of a new refund (card refunds are usually ``succeeded`` at once, some ``pending``).
    refund_status: str = "succeeded"
    #: The most a list page holds (Stripe's is 100; a test lowers it to see paging).
    max_page: int = 100
    #: Called with the session id just before ``POST .../expire`` is handled (a buyer paying just then).
    on_expire: Callable[[str], object] | None = None
    #: The server's URL, once ``server()`` made it.
    api_base: str | None = None
    #: Charges, by id (one per succeeded PaymentIntent).
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Balance transactions, by id, in creation order.
    balance_transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Our ids (``payment_id``, ``refund_id``) whose balance transactions the list leaves out.
    statement_left_out: set[str] = field(default_factory=set)
    #: Our ids whose balance transaction's source shows this amount instead of the true one.
    statement_amounts: dict[str, int] = field(default_factory=dict)
    _events: dict[str, bytes] = field(default_factory=dict)
    _idempotent: dict[str, tuple[str, dict[str, Any], Answer]] = field(default_factory=dict)
    _intent_metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- set-up ------------------------------------------------------------------------------------

    def server(self) -> FakeServer:
        routes = [
            Route("/v1/checkout/sessions", self._route(self._create_session), methods=["POST"]),
            Route("/v1/checkout/sessions", self._route(self._list_sessions), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}", self._route(self._get_session), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}/expire", self._route(self._expire_session), methods=["POST"]),
            Route("/v1/payment_intents/search", self._route(self._search_intents), methods=["GET"]),
            Route("/v1/payment_intents/{id}", self._route(self._get_intent), methods=["GET"]),
            Route("/v1/refunds", self._route(self._create_refund), methods=["POST"]),
            Route("/v1/refunds", self._route(self._list_refunds), methods=["GET"]),
            Route("/v1/refunds/{id}", self._route(self._get_refund), methods=["GET"]),
            Route("/v1/balance_transactions", self._route(self._list_balance), methods=["GET"]),
        ]
        server = FakeServer(Starlette(routes=routes))
        self.api_base = server.url
        return server

    def settings(self, tmp_path: Path | None = None) -> dict[str, Any]:
        """The ``Settings`` overrides that point LiveCart's Stripe provider here (Stripe has no key files:
        ``tmp_path`` is taken for the same signature as the other fakes)."""
        assert self.api_base is not None, "call server() first"
        return {
            "stripe_secret_key": self.secret_key,
            "stripe_webhook_secret": self.webhook_secret,
            "stripe_api_base": self.api_base,
        }

    # -- what tests read ---------------------------------------------------------------------------

    def session_for(self, payment_id: str) -> dict[str, Any]:
        """The newest session made for a payment (its ``client_reference_id``)."""
        found = [s for s in self.sessions.values() if s["client_reference_id"] == payment_id]
        if not found:
            raise KeyError(f"no Checkout Session for {payment_id}")
        return found[-1]

    def refund_for(self, refund_id: str) -> dict[str, Any]:
        """The refund whose ``metadata[refund_id]`` is ours."""
        for refund in self.refunds.values():
            if refund["metadata"].get("refund_id") == refund_id:
                return refund
        raise KeyError(f"no refund for {refund_id}")

    def calls(self, method: str, path_prefix: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- the buyer's side --------------------------------------------------------------------------

    def pay(self, payment_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The buyer pays the payment's open session (no webhook is sent): a PaymentIntent is made,
        ``succeeded``, or ``processing`` for a ``delayed`` method (the session completes ``unpaid``)."""
        session = self.session_for(payment_id)
        if session["status"] != "open":
            raise ValueError(f"the Checkout Session is {session['status']}: the buyer cannot pay")
        intent = {
            "id": new("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": 0 if delayed else session["amount_total"],
            "currency": session["currency"],
            "created": int(time.time()),
            "latest_charge": new("ch"),
            "livemode": False,
            "metadata": dict(self._intent_metadata.get(session["id"], {})),
            "status": "processing" if delayed else "succeeded",
        }
        self.payment_intents[intent["id"]] = intent
        session.update(status="complete", payment_status="unpaid" if delayed else "paid")
        session["payment_intent"] = intent["id"]
        if not delayed:
            self._charge(intent)
        return intent

    def settle_delayed(self, payment_id: str, *, succeeded: bool) -> None:
        """A delayed payment method's outcome: the money arrives, or the debit fails."""
        session = self.session_for(payment_id)
        intent = self.payment_intents[session["payment_intent"]]
        if succeeded:
            intent.update(status="succeeded", amount_received=intent["amount"])
            session["payment_status"] = "paid"
            self._charge(intent)
        else:
            intent["status"] = "requires_payment_method"

    def expire(self, payment_id: str) -> None:
        """The session's ``expires_at`` passes (Stripe expires it)."""
        session = self.session_for(payment_id)
        if session["status"] == "open":
            session["status"] = "expired"

    def backdate(self, payment_id: str, seconds: int) -> None:
        """Moves a payment's session (and PaymentIntent) ``seconds`` into the past."""
        session = self.session_for(payment_id)
        session["created"] -= seconds
        session["expires_at"] -= seconds
        if session["payment_intent"]:
            intent = self.payment_intents[session["payment_intent"]]
            intent["created"] -= seconds
            charge = self.charges.get(intent["latest_charge"])
            if charge is not None:
                charge["created"] -= seconds
                self.balance_transactions[charge["balance_transaction"]]["created"] -= seconds

    def outside_payment(self, amount: int, *, payment_id: str | None = None) -> dict[str, Any]:
        """A payment made on the account by something other than LiveCart's checkout (no session; its
        PaymentIntent names ``payment_id`` all the same): charged, in the balance, unknown to our ledger."""
        intent = {
            "id": new("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": "cny",
            "created": int(time.time()),
            "latest_charge": new("ch"),
            "livemode": False,
            "metadata": {"payment_id": payment_id or "pay_" + secrets.token_hex(8)},
            "status": "succeeded",
        }
        self.payment_intents[intent["id"]] = intent
        self._charge(intent)
        return intent

    def _charge(self, intent: dict[str, Any]) -> None:
        """The Charge of a PaymentIntent that took the money, and its balance transaction."""
        now = int(time.time())
        charge = {
            "id": intent["latest_charge"],
            "object": "charge",
            "amount": intent["amount_received"],
            "amount_captured": intent["amount_received"],
            "amount_refunded": 0,
            "balance_transaction": None,
            "captured": True,
            "created": now,
            "currency": intent["currency"],
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": intent["id"],
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        charge["balance_transaction"] = self._balance(
            "charge", charge["amount"], charge["currency"], charge["id"], now
        )

    def _balance(self, kind: str, amount: int, currency: str, source: str, created: int) -> str:
        """A balance transaction (a card's fee as Stripe's standard 2.9% + 30 on a charge), its id."""
        fee = (amount * 29 + 500) // 1000 + 30 if kind == "charge" else 0
        txn = {
            "id": new("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created + 2 * 24 * 60 * 60,
            "created": created,
            "currency": currency,
            "description": None,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": [{"amount": fee, "currency": currency, "type": "stripe_fee"}] if fee else [],
            "net": amount - fee,
            "reporting_category": kind,
            "source": source,
            "status": "pending",
            "type": kind,
        }
        self.balance_transactions[txn["id"]] = txn
        return str(txn["id"])

    # -- webhooks ----------------------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        """The headers Stripe sends a webhook with, signed at ``timestamp`` (now) with ``secret`` (ours)."""
        t = int(time.time()) if timestamp is None else timestamp
        key = (secret or self.webhook_secret).encode()
        v1 = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {
            "Stripe-Signature": f"t={t},v1={v1}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }

    def payment_notification(
        self,
        payment_id: str,
        *,
        type: str = "checkout.session.completed",
        amount: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A ``checkout.session.*`` event with the payment's session as it is now (``amount`` overrides
        its ``amount_total``), signed."""
        session = json.loads(json.dumps(self.session_for(payment_id)))
        if amount is not None:
            session["amount_total"] = amount
        return self._event(type, session, timestamp=timestamp, secret=secret)

    def refund_notification(
        self,
        refund_id: str,
        *,
        status: str | None = None,
        failure_reason: str | None = None,
        type: str = "refund.updated",
        timestamp: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A refund event for our ``refund_id``, after setting the refund's ``status`` when given."""
        refund = self.refund_for(refund_id)
        if status is not None:
            refund["status"] = status
            refund["failure_reason"] = failure_reason
        return self._event(type, json.loads(json.dumps(refund)), timestamp=timestamp)

    def redeliver(self, event_id: str, *, timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        """An event sent again, as Stripe retries one: the same body, signed anew."""
        body = self._events[event_id]
        return self.sign(body, timestamp=timestamp), body

    def _event(
        self, type: str, obj: dict[str, Any], *, timestamp: int | None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        event_id = new("evt")
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        body = json.dumps(event, indent=2).encode()
        self._events[event_id] = body
        return self.sign(body, timestamp=timestamp, secret=secret), body

    # -- the HTTP side -----------------------------------------------------------------------------

    def _route(
        self, handler: Callable[[Request, dict[str, Any]], Awaitable[Answer]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            status, body, headers = await self._answer(request, handler)
            return Response(
                json.dumps(body, indent=2), status, headers=headers, media_type="application/json"
            )

        return endpoint

    async def _answer(
        self, request: Request, handler: Callable[[Request, dict[str, Any]], Awaitable[Answer]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"Request-Id": "req_" + secrets.token_hex(7), "Stripe-Version": API_VERSION}
        if self.delay:
            await asyncio.sleep(self.delay)
        problem = self._check_key(request.headers.get("authorization", ""))
        if problem is not None:
            self.bad_auth += 1
            return 401, StripeFailure(401, problem).body, headers
        body = (await request.body()).decode()
        try:
            if request.method == "POST":
                kind = request.headers.get("content-type", "").split(";")[0].strip()
                if body and kind != "application/x-www-form-urlencoded":
                    raise StripeFailure(400, f"Invalid request: unsupported Content-Type {kind}.")
            params = decode_form(parse_qsl(request.url.query, keep_blank_values=True))
            params.update(decode_form(parse_qsl(body, keep_blank_values=True)))
        except StripeFailure as failure:
            return failure.status, failure.body, headers
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        self.requests.append(SeenRequest(request.method, request.url.path, params, key))
        if self.fail_with is not None:
            error = StripeFailure(self.fail_with, "Something went wrong on Stripe's end.", kind="api_error")
            return error.status, error.body, headers
        if key is not None and key in self._idempotent:
            path, first_params, (status, answer) = self._idempotent[key]
            if (path, first_params) != (request.url.path, params):
                message = (
                    "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{key}' if you meant to execute a "
                    "different request."
                )
                return 400, StripeFailure(400, message, kind="idempotency_error").body, headers
            return status, answer, {**headers, "Idempotent-Replayed": "true"}
        try:
            status, answer = await handler(request, params)
        except StripeFailure as failure:
            return failure.status, failure.body, headers
        if key is not None:
            self._idempotent[key] = (request.url.path, params, (status, answer))
        return status, answer, headers

    def _check_key(self, authorization: str) -> str | None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials).decode().partition(":")[0]
            except ValueError:
                credentials = ""
        elif scheme.lower() != "bearer":
            return (
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
            )
        if not hmac.compare_digest(credentials.encode(), self.secret_key.encode()):
            return f"Invalid API Key provided: {credentials[:8]}****{credentials[-4:]}"
        return None

    # -- Checkout Sessions -------------------------------------------------------------------------

    async def _create_session(self, request: Request, params: dict[str, Any]) -> Answer:
        if params.get("mode") != "payment":
            raise StripeFailure(400, "This fake makes Checkout Sessions in payment mode only.", param="mode")
        lines = params.get("line_items")
        if not isinstance(lines, list) or not lines:
            raise StripeFailure(400, "line_items is required in payment mode.", param="line_items")
        total, currencies = 0, set()
        for i, line in enumerate(lines):
            price = line.get("price_data") if isinstance(line, dict) else None
            product = price.get("product_data") if isinstance(price, dict) else None
            if not isinstance(price, dict) or not isinstance(product, dict) or not product.get("name"):
                raise StripeFailure(
                    400, "Each line item needs price_data with product_data[name].", param="line_items"
                )
            unit = integer(price, "unit_amount")
            quantity = integer(line, "quantity")
            assert unit is not None and quantity is not None
            if unit <= 0 or quantity <= 0:
                raise StripeFailure(
                    400, "unit_amount and quantity must be positive.", param=f"line_items[{i}]"
                )
            currency = price.get("currency", "")
            if not re.fullmatch(r"[a-z]{3}", currency):
                raise StripeFailure(
                    400, f"Invalid currency: {currency}.", param=f"line_items[{i}][price_data][currency]"
                )
            currencies.add(currency)
            total += unit * quantity
        if len(currencies) != 1:
            raise StripeFailure(400, "All line items must be in one currency.", param="line_items")
        for name in ("success_url", "cancel_url"):
            url = params.get(name)
            if (url is not None or name == "success_url") and not re.match(r"https?://", str(url)):
                raise StripeFailure(400, f"Not a valid URL: {name}.", code="url_invalid", param=name)
        now = int(time.time())
        expires_at = integer(params, "expires_at", required=False) or now + MAX_LIFETIME_S
        if not now + MIN_LIFETIME_S <= expires_at <= now + MAX_LIFETIME_S:
            raise StripeFailure(
                400,
                "The expires_at timestamp must be between 30 minutes and 24 hours from Checkout Session "
                "creation.",
                param="expires_at",
            )
        intent_data = params.get("payment_intent_data", {})
        session_id = new("cs")
        self._intent_metadata[session_id] = metadata(intent_data) if isinstance(intent_data, dict) else {}
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currencies.pop(),
            "customer": None,
            "expires_at": expires_at,
            "livemode": False,
            "metadata": metadata(params),
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "ui_mode": "hosted",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self.session_params[session_id] = params
        return 200, session

    async def _list_sessions(self, request: Request, params: dict[str, Any]) -> Answer:
        items = list(reversed(self.sessions.values()))
        for name in ("status", "payment_intent"):
            if name in params:
                items = [s for s in items if s[name] == params[name]]
        return 200, self._page(items, params, "/v1/checkout/sessions")

    async def _get_session(self, request: Request, params: dict[str, Any]) -> Answer:
        return 200, self._session(request.path_params["id"])

    async def _expire_session(self, request: Request, params: dict[str, Any]) -> Answer:
        session_id = request.path_params["id"]
        session = self._session(session_id)
        if self.on_expire is not None:
            self.on_expire(session_id)
        if session["status"] != "open":
            raise StripeFailure(
                400,
                f"This Checkout Session is {session['status']} and can no longer be expired: only a Checkout "
                "Session with a status of open can be expired.",
            )
        session["status"] = "expired"
        return 200, session

    def _session(self, session_id: str) -> dict[str, Any]:
        if session_id not in self.sessions:
            raise StripeFailure(
                404, f"No such checkout.session: '{session_id}'", code="resource_missing", param="session"
            )
        return self.sessions[session_id]

    # -- PaymentIntents ----------------------------------------------------------------------------

    async def _search_intents(self, request: Request, params: dict[str, Any]) -> Answer:
        match = SEARCH.match(str(params.get("query", "")))
        if match is None:
            raise StripeFailure(400, "This fake searches by metadata['key']:'value' only.", param="query")
        key, value = match[1], re.sub(r"\\(.)", r"\1", match[2])
        found = [i for i in reversed(self.payment_intents.values()) if i["metadata"].get(key) == value]
        return 200, {
            "object": "search_result",
            "data": found,
            "has_more": False,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }

    async def _get_intent(self, request: Request, params: dict[str, Any]) -> Answer:
        intent_id = request.path_params["id"]
        if intent_id not in self.payment_intents:
            raise StripeFailure(
                404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="intent"
            )
        return 200, self.payment_intents[intent_id]

    # -- refunds -----------------------------------------------------------------------------------

    async def _create_refund(self, request: Request, params: dict[str, Any]) -> Answer:
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise StripeFailure(400, "This fake refunds by payment_intent only.", param="payment_intent")
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise StripeFailure(
                400, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="payment_intent"
            )
        if intent["status"] != "succeeded":
            raise StripeFailure(
                400, f"This PaymentIntent ({intent_id}) does not have a successful charge to refund."
            )
        refunded = sum(
            r["amount"]
            for r in self.refunds.values()
            if r["payment_intent"] == intent_id and r["status"] not in ("failed", "canceled")
        )
        left = intent["amount_received"] - refunded
        if left <= 0:
            raise StripeFailure(
                400,
                f"Charge {intent['latest_charge']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = integer(params, "amount", required=False)
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise StripeFailure(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                param="amount",
            )
        reason = params.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeFailure(
                400, f"Invalid reason: must be one of {sorted(REFUND_REASONS)}", param="reason"
            )
        refund = {
            "id": new("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": intent["latest_charge"],
            "created": int(time.time()),
            "currency": intent["currency"],
            "failure_reason": None,
            "metadata": metadata(params),
            "payment_intent": intent_id,
            "reason": reason,
            "status": self.refund_status,
        }
        self.refunds[refund["id"]] = refund
        if refund["status"] not in ("failed", "canceled"):
            charge = self.charges.get(intent["latest_charge"])
            if charge is not None:
                charge["amount_refunded"] += amount
                charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            refund["balance_transaction"] = self._balance(
                "refund", -amount, refund["currency"], refund["id"], refund["created"]
            )
        return 200, refund

    async def _list_refunds(self, request: Request, params: dict[str, Any]) -> Answer:
        items = list(reversed(self.refunds.values()))
        if "payment_intent" in params:
            items = [r for r in items if r["payment_intent"] == params["payment_intent"]]
        return 200, self._page(items, params, "/v1/refunds")

    async def _get_refund(self, request: Request, params: dict[str, Any]) -> Answer:
        refund_id = request.path_params["id"]
        if refund_id not in self.refunds:
            raise StripeFailure(404, f"No such refund: '{refund_id}'", code="resource_missing", param="id")
        return 200, self.refunds[refund_id]

    # -- balance transactions ----------------------------------------------------------------------

    async def _list_balance(self, request: Request, params: dict[str, Any]) -> Answer:
        expand = params.get("expand", [])
        expand = expand if isinstance(expand, list) else [expand]
        for path in expand:
            if path not in ("data.source", "data.source.payment_intent"):
                raise StripeFailure(400, f"This property cannot be expanded ({path}).", param="expand")
        items = [t for t in reversed(self.balance_transactions.values()) if not self._left_out(t)]
        if "type" in params:
            items = [t for t in items if t["type"] == params["type"]]
        page = self._page(items, params, "/v1/balance_transactions")
        page["data"] = [self._shown(t, expand) for t in page["data"]]
        return 200, page

    def _source(self, txn: dict[str, Any]) -> dict[str, Any]:
        return self.charges.get(txn["source"]) or self.refunds[txn["source"]]

    def _our_id(self, source: dict[str, Any]) -> str | None:
        """The ``payment_id`` of a charge (its PaymentIntent's), the ``refund_id`` of a refund."""
        if source["object"] == "refund":
            metadata: dict[str, str] = source["metadata"]
            return metadata.get("refund_id")
        metadata = self.payment_intents[source["payment_intent"]]["metadata"]
        return metadata.get("payment_id")

    def _left_out(self, txn: dict[str, Any]) -> bool:
        return self._our_id(self._source(txn)) in self.statement_left_out

    def _shown(self, txn: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """A balance transaction as listed: its source (and the source's PaymentIntent) expanded when
        asked, the source's amount as ``statement_amounts`` says."""
        shown: dict[str, Any] = json.loads(json.dumps(txn))
        source: dict[str, Any] = json.loads(json.dumps(self._source(txn)))
        ours = self._our_id(source)
        if ours in self.statement_amounts:
            source["amount"] = self.statement_amounts[ours]
        if "data.source.payment_intent" in expand and source.get("payment_intent"):
            source["payment_intent"] = json.loads(json.dumps(self.payment_intents[source["payment_intent"]]))
        if "data.source" in expand or "data.source.payment_intent" in expand:
            shown["source"] = source
        return shown

    # -- lists -------------------------------------------------------------------------------------

    def _page(self, items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        """One page of a list, newest first: ``created`` bounds, ``starting_after``, ``limit``."""
        created = params.get("created")
        if isinstance(created, dict):
            bounds = {op: integer(created, op, required=False) for op in ("gt", "gte", "lt", "lte")}
            tests: dict[str, Callable[[int, int], bool]] = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            for op, bound in bounds.items():
                if bound is not None:
                    items = [i for i in items if tests[op](i["created"], bound)]
        elif created is not None:
            exact = integer(params, "created")
            items = [i for i in items if i["created"] == exact]
        after = params.get("starting_after")
        if after is not None:
            ids = [i["id"] for i in items]
            if after not in ids:
                raise StripeFailure(400, f"Invalid starting_after id: {after}", param="starting_after")
            items = items[ids.index(after) + 1 :]
        limit = integer(params, "limit", required=False) or 10
        if not 1 <= limit <= 100:
            raise StripeFailure(400, "Invalid limit: must be between 1 and 100", param="limit")
        limit = min(limit, self.max_page)
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}
