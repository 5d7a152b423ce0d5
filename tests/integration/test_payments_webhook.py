"""The payment webhook over HTTP (``POST /api/payments/webhook``, header ``LiveCart-Signature``), on SQLite
and PostgreSQL with the real Redis: authenticity, deduplication of redeliveries, the order of events, and
late payments (SPEC §2 invariants 6 and 10).

Events are built as the provider (and ``PaymentService.dev_complete``) builds them:
``{"id", "type", "created", "data": {"payment_id"}}``, signed with ``shop.payments.signing.sign``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from shop.inventory.rules import commission_amount
from shop.models import Commission, PaymentEvent
from shop.payments import signing
from tests.conftest import LiveServer, make_settings
from tests.shop_api import ADDRESS, Buyer, Sale, auth, buy, join, new_sale, ok

WEBHOOK = "/api/payments/webhook"
SUCCEEDED, FAILED = "payment.succeeded", "payment.failed"


# -- helpers -------------------------------------------------------------------------------------------


def event(kind: str, payment_id: str, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "type": kind,
            "created": int(time.time()),
            "data": {"payment_id": payment_id},
        }
    ).encode()


def signature(server: LiveServer, body: bytes, *, at: int | None = None, secret: bytes | None = None) -> str:
    return signing.sign(
        body,
        secret=server.state.settings.webhook_secret if secret is None else secret,
        timestamp=int(time.time()) if at is None else at,
    )


SIGN = object()


async def deliver(
    client: httpx.AsyncClient, server: LiveServer, body: bytes, header: str | bytes | object | None = SIGN
) -> httpx.Response:
    """POST the event, signed properly now by default; ``header=None`` sends no signature header."""
    headers: dict[str, Any] = {"Content-Type": "application/json"}
    if header is SIGN:
        headers[signing.HEADER] = signature(server, body)
    elif isinstance(header, str | bytes):
        headers[signing.HEADER] = header
    return await client.post(WEBHOOK, content=body, headers=headers)


async def outcome(client: httpx.AsyncClient, server: LiveServer, body: bytes) -> str:
    r = await deliver(client, server, body)
    assert r.status_code == 200, r.text
    return str(r.json()["outcome"])


async def start_payment(
    client: httpx.AsyncClient, sale: Sale, name: str, *, via: str | None = None
) -> tuple[Buyer, dict[str, Any], str]:
    """A fresh buyer (referred by ``via`` when given) with a reserved order and a pending payment."""
    buyer = await join(client, sale, name, invite=via)
    order = await ok(await buy(client, sale.card_id, buyer), 201)
    pay = await ok(
        await client.post(
            f"/api/orders/{order['id']}/pay", json={"address": ADDRESS}, headers=auth(buyer.token)
        )
    )
    return buyer, order, str(pay["payment_id"])


async def order_of(client: httpx.AsyncClient, sale: Sale, order_id: str) -> dict[str, Any]:
    return await ok(await client.get(f"/api/orders/{order_id}", headers=auth(sale.host_token)))  # type: ignore[no-any-return]


async def payment_of(client: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    return await ok(await client.get(f"/api/payments/dev/{payment_id}"))  # type: ignore[no-any-return]


async def card_of(client: httpx.AsyncClient, sale: Sale, card_id: str | None = None) -> dict[str, Any]:
    return await ok(  # type: ignore[no-any-return]
        await client.get(f"/api/cards/{card_id or sale.card_id}", headers=auth(sale.host_token))
    )


async def stats_of(client: httpx.AsyncClient, sale: Sale) -> dict[str, Any]:
    return await ok(await client.get(f"/api/rooms/{sale.room_id}/stats", headers=auth(sale.host_token)))  # type: ignore[no-any-return]


async def ledger(server: LiveServer, order_id: str) -> list[tuple[str, int]]:
    """The commission ledger of one order: ``[(kind, amount)]``."""
    async with server.state.sessions() as session:
        rows = await session.execute(
            select(Commission.kind, Commission.amount).where(Commission.order_id == order_id)
        )
        return sorted((k, int(a)) for k, a in rows.all())


async def events_recorded(server: LiveServer) -> int:
    async with server.state.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(PaymentEvent))).scalar_one())


async def wait_for_status(
    client: httpx.AsyncClient, sale: Sale, order_id: str, status: str
) -> dict[str, Any]:
    for _ in range(100):
        current = await order_of(client, sale, order_id)
        if current["status"] == status:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} never became {status}: {current}")


async def early_in_a_second() -> int:
    """Now, in whole seconds, with at least half a second before the next one begins: a timestamp offset
    computed from it is still the same offset when the server reads its own clock a moment later."""
    while time.time() % 1 > 0.5:
        await asyncio.sleep(0.05)
    return int(time.time())


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code} {r.text}"
    body = r.json()
    assert set(body) >= {"error", "detail"} and body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body


# -- authenticity --------------------------------------------------------------------------------------


def forged_headers(server: LiveServer, good: bytes, now: int) -> dict[str, tuple[bytes, str | bytes | None]]:
    """Deliveries of (a variant of) the good event that must all be refused: ``name -> (body, header)``."""
    mac = signature(server, good, at=now).rpartition("v1=")[2]
    payment_id = json.loads(good)["data"]["payment_id"]
    other_body = event(SUCCEEDED, payment_id)  # another event id, signed header of the good body
    return {
        "wrong-secret": (good, signature(server, good, at=now, secret=b"not-the-webhook-secret")),
        "tampered-body": (other_body, signature(server, good, at=now)),
        "missing-header": (good, None),
        "empty-header": (good, ""),
        "garbage-header": (good, "nonsense"),
        "no-v1": (good, f"t={now}"),
        "no-timestamp": (good, f"v1={mac}"),
        "timestamp-not-a-number": (good, f"t=now,v1={mac}"),
        "v0-scheme-only": (good, f"t={now},v0={mac}"),
        "v1-of-another-timestamp": (good, f"t={now + 1},v1={mac}"),
        "mac-truncated": (good, f"t={now},v1={mac[:-2]}"),
        "timestamp-301s-old": (good, signature(server, good, at=now - 301)),
        "timestamp-301s-in-the-future": (good, signature(server, good, at=now + 301)),
        "timestamp-a-day-old": (good, signature(server, good, at=now - 86_400)),
    }


async def _unauthentic_deliveries_are_refused_and_change_nothing(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5)
    promoter = await join(client, sale, "Promoter")
    _, order, payment_id = await start_payment(client, sale, "Buyer", via=promoter.share_code)
    good = event(SUCCEEDED, payment_id)
    failures: list[str] = []

    async def state() -> tuple[Any, ...]:
        return (
            await order_of(client, sale, order["id"]),
            await payment_of(client, payment_id),
            await card_of(client, sale),
            await stats_of(client, sale),
            await ledger(server, order["id"]),
            await events_recorded(server),
        )

    before = await state()
    for name in forged_headers(server, good, int(time.time())):
        # Build each delivery just before sending it: "301 s" is still 301 s when the server reads its clock.
        now = await early_in_a_second() if "timestamp-" in name else int(time.time())
        body, header = forged_headers(server, good, now)[name]
        r = await deliver(client, server, body, header)
        try:
            assert_error(r, 400, "invalid_signature")
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
        if await state() != before:
            failures.append(f"{name}: changed the order, payment, stock, stats or event log")
            before = await state()
    assert not failures, "\n".join(failures)

    # None of them used up the event id: the genuine delivery of the same event is applied.
    assert await outcome(client, server, good) == "paid"
    assert (await order_of(client, sale, order["id"]))["status"] == "paid"


async def _non_ascii_signature_header_is_refused_not_a_crash(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """Anyone can send this header: a byte outside ASCII must be a 400 like any other bad signature."""
    sale = await new_sale(client, stock=5)
    _, order, payment_id = await start_payment(client, sale, "B")
    good = event(SUCCEEDED, payment_id)
    now = int(time.time())
    mac = signature(server, good, at=now).rpartition("v1=")[2]
    for header in (f"t={now},v1=".encode() + b"\xfc" + mac[1:].encode(), b"t=\xfc,v1=" + mac.encode()):
        assert_error(await deliver(client, server, good, header), 400, "invalid_signature")
    assert (await order_of(client, sale, order["id"]))["status"] == "reserved"
    assert (await payment_of(client, payment_id))["status"] == "pending"


async def _timestamps_inside_the_window_are_accepted(client: httpx.AsyncClient, server: LiveServer) -> None:
    """The tolerance (300 s) is symmetric and not stricter than configured."""
    sale = await new_sale(client, stock=5)
    tolerance = server.state.settings.webhook_tolerance_seconds
    assert tolerance == 300
    for offset in (-(tolerance - 1), tolerance - 1):
        _, order, payment_id = await start_payment(client, sale, f"B{offset}")
        body = event(SUCCEEDED, payment_id)
        now = await early_in_a_second()
        r = await deliver(client, server, body, signature(server, body, at=now + offset))
        assert r.status_code == 200 and r.json()["outcome"] == "paid", f"offset {offset}: {r.text}"
        assert (await order_of(client, sale, order["id"]))["status"] == "paid"


async def _several_v1_signatures_one_of_them_valid(client: httpx.AsyncClient, server: LiveServer) -> None:
    """During a secret rotation the provider sends one v1 per secret: any valid one is enough."""
    sale = await new_sale(client, stock=5)
    _, order, payment_id = await start_payment(client, sale, "B")
    body = event(SUCCEEDED, payment_id)
    now = int(time.time())
    good = signature(server, body, at=now).rpartition("v1=")[2]
    other = signature(server, body, at=now, secret=b"old-secret").rpartition("v1=")[2]
    r = await deliver(client, server, body, f"t={now},v1={other},v1={good}")
    assert r.status_code == 200 and r.json()["outcome"] == "paid", r.text
    assert (await order_of(client, sale, order["id"]))["status"] == "paid"


async def test_webhook_authenticity(client: httpx.AsyncClient, server: LiveServer) -> None:
    """Forged, stale, future-dated and malformed signatures are refused (400 invalid_signature) and change
    nothing; valid ones inside the window, or among several v1 values, are accepted."""
    await _unauthentic_deliveries_are_refused_and_change_nothing(client, server)
    await _non_ascii_signature_header_is_refused_not_a_crash(client, server)
    await _timestamps_inside_the_window_are_accepted(client, server)
    await _several_v1_signatures_one_of_them_valid(client, server)


# -- malformed but authentic events --------------------------------------------------------------------


async def test_authentic_but_malformed_events(client: httpx.AsyncClient, server: LiveServer) -> None:
    sale = await new_sale(client, stock=5)
    _, order, payment_id = await start_payment(client, sale, "B")
    before = (await order_of(client, sale, order["id"]), await payment_of(client, payment_id))
    bad = {
        "not-json": b"{not json",
        "json-array": b"[]",
        "no-data": json.dumps({"id": "evt_x1", "type": SUCCEEDED}).encode(),
        "no-payment-id": json.dumps({"id": "evt_x2", "type": SUCCEEDED, "data": {}}).encode(),
        "no-id": json.dumps({"type": SUCCEEDED, "data": {"payment_id": payment_id}}).encode(),
        "data-not-an-object": json.dumps({"id": "evt_x3", "type": SUCCEEDED, "data": "pay"}).encode(),
    }
    for name, body in bad.items():
        r = await deliver(client, server, body)
        assert r.status_code == 400 and r.json()["error"] == "invalid_event", (
            f"{name}: {r.status_code} {r.text}"
        )
    # Other event types are acknowledged and ignored; events for unknown payments change nothing.
    r = await deliver(client, server, event("payment.refunded", payment_id))
    assert r.status_code == 200 and r.json()["outcome"] == "ignored", r.text
    r = await deliver(client, server, event(SUCCEEDED, "pay_unknown"))
    assert r.status_code == 200 and r.json()["outcome"] == "unknown_payment", r.text
    assert (await order_of(client, sale, order["id"]), await payment_of(client, payment_id)) == before
    # An oversized body is refused before anything else.
    big = event(SUCCEEDED, payment_id)[:-1] + b', "pad": "' + b"x" * (70 * 1024) + b'"}'
    assert_error(await deliver(client, server, big), 413, "payload_too_large")
    assert (await order_of(client, sale, order["id"]), await payment_of(client, payment_id)) == before


async def test_long_provider_ids_get_a_clear_answer(client: httpx.AsyncClient, server: LiveServer) -> None:
    """An authentic event whose ids are longer than the columns that store them must not crash (500)."""
    sale = await new_sale(client, stock=5)
    _, _, payment_id = await start_payment(client, sale, "B")
    failures = []
    bodies = {
        "event-id-200-chars": event(SUCCEEDED, payment_id, event_id="evt_" + "x" * 200),
        "payment-id-200-chars": event(SUCCEEDED, "pay_" + "y" * 200),
    }
    for name, body in bodies.items():
        r = await deliver(client, server, body)
        if r.status_code >= 500 or not set(r.json()) >= ({"outcome"} if r.status_code == 200 else {"error"}):
            failures.append(f"{name}: {r.status_code} {r.text}")
    assert not failures, failures


# -- redeliveries and the order of events --------------------------------------------------------------


async def _a_valid_event_delivered_three_times_pays_once(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=5, price=990)
    promoter = await join(client, sale, "Promoter")
    _, order, payment_id = await start_payment(client, sale, "Buyer", via=promoter.share_code)
    body = event(SUCCEEDED, payment_id)
    outcomes = [await outcome(client, server, body) for _ in range(3)]
    assert outcomes == ["paid", "duplicate_event", "duplicate_event"]
    paid = await order_of(client, sale, order["id"])
    assert paid["status"] == "paid" and paid["paid_at"] and not paid["late_payment"]
    assert (await payment_of(client, payment_id))["status"] == "succeeded"
    assert await ledger(server, order["id"]) == [("accrual", commission_amount(990, 1000))]
    card = await card_of(client, sale)
    assert card["stock_left"] == 4
    stats = await stats_of(client, sale)
    assert stats["orders_paid"] == 1 and stats["gmv"] == 990
    assert stats["promoters"][0]["commission"] == 99


async def _concurrent_redeliveries_pay_once(client: httpx.AsyncClient, server: LiveServer) -> None:
    sale = await new_sale(client, stock=10, price=990)
    promoter = await join(client, sale, "Promoter")
    orders = [await start_payment(client, sale, f"B{i}", via=promoter.share_code) for i in range(4)]
    for _, order, payment_id in orders:
        same = event(SUCCEEDED, payment_id)
        bodies = [same] * 4 + [event(SUCCEEDED, payment_id), event(FAILED, payment_id)]
        results = await asyncio.gather(*(outcome(client, server, b) for b in bodies))
        assert sorted(results).count("paid") == 1, results
        assert set(results) <= {"paid", "duplicate_event", "stale_event", "failed"}, results
        assert (await order_of(client, sale, order["id"]))["status"] == "paid"
        assert (await payment_of(client, payment_id))["status"] == "succeeded"
        assert await ledger(server, order["id"]) == [("accrual", 99)]
    assert (await card_of(client, sale))["stock_left"] == 6
    assert (await stats_of(client, sale))["promoters"][0]["commission"] == 4 * 99


async def test_redeliveries_pay_once(client: httpx.AsyncClient, server: LiveServer) -> None:
    """A valid event delivered again (one after another, or all at once) pays the order exactly once."""
    await _a_valid_event_delivered_three_times_pays_once(client, server)
    await _concurrent_redeliveries_pay_once(client, server)


async def _failed_then_succeeded_in_any_order_pays_once(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    """20 orders, each with a random delivery order of: a failure (evt1), a success (evt2), a redelivery of
    the success (evt2 again) and a redelivery of the failure (evt1 again)."""
    rng = random.Random(20261122)
    sale = await new_sale(client, stock=30, price=990)
    promoter = await join(client, sale, "Promoter")
    seen_orders: set[tuple[str, ...]] = set()
    for i in range(20):
        _, order, payment_id = await start_payment(client, sale, f"B{i}", via=promoter.share_code)
        failed, succeeded = event(FAILED, payment_id), event(SUCCEEDED, payment_id)
        named = [("F1", failed), ("S2", succeeded), ("S2", succeeded), ("F1", failed)]
        rng.shuffle(named)
        seen_orders.add(tuple(n for n, _ in named))
        results = [await outcome(client, server, body) for _, body in named]
        where = f"order {i}, deliveries {[n for n, _ in named]} -> {results}"
        assert results.count("paid") == 1, where
        assert results.count("duplicate_event") == 2, where  # the second F1 and the second S2
        current = await order_of(client, sale, order["id"])
        assert current["status"] == "paid" and not current["late_payment"], where
        assert (await payment_of(client, payment_id))["status"] == "succeeded", where
        assert await ledger(server, order["id"]) == [("accrual", 99)], where
    assert len(seen_orders) > 5  # the shuffles really differ
    stats = await stats_of(client, sale)
    assert stats["orders_paid"] == 20 and stats["gmv"] == 20 * 990
    assert stats["promoters"][0]["commission"] == 20 * 99
    assert (await card_of(client, sale))["stock_left"] == 10


async def _every_order_of_failure_and_success_events(client: httpx.AsyncClient, server: LiveServer) -> None:
    """All distinct orders of [failed(evt1), succeeded(evt2), succeeded(evt2)], exhaustively."""
    sale = await new_sale(client, stock=10, price=500)
    for i, perm in enumerate(sorted(set(itertools.permutations(["F1", "S2", "S2"])))):
        _, order, payment_id = await start_payment(client, sale, f"P{i}")
        bodies = {"F1": event(FAILED, payment_id), "S2": event(SUCCEEDED, payment_id)}
        results = [await outcome(client, server, bodies[n]) for n in perm]
        assert results.count("paid") == 1 and results.count("duplicate_event") == 1, (perm, results)
        assert (await order_of(client, sale, order["id"]))["status"] == "paid", perm


async def test_order_of_events_does_not_matter(client: httpx.AsyncClient, server: LiveServer) -> None:
    """Failure and success events in any order: the order ends paid exactly once, commission accrued once."""
    await _failed_then_succeeded_in_any_order_pays_once(client, server)
    await _every_order_of_failure_and_success_events(client, server)


# -- late payments -------------------------------------------------------------------------------------


async def _late_payment_is_honoured_while_stock_remains(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=2, price=990, reserve_seconds=1)
    promoter = await join(client, sale, "Promoter")
    _, order, payment_id = await start_payment(client, sale, "Slow", via=promoter.share_code)
    await wait_for_status(client, sale, order["id"], "expired")
    assert (await card_of(client, sale))["stock_left"] == 2  # the reservation went back to the sale

    body = event(SUCCEEDED, payment_id)
    assert await outcome(client, server, body) == "paid_late"
    paid = await order_of(client, sale, order["id"])
    assert paid["status"] == "paid" and paid["late_payment"] is True and paid["paid_at"]
    assert (await payment_of(client, payment_id))["status"] == "succeeded"
    assert (await card_of(client, sale))["stock_left"] == 1
    assert await ledger(server, order["id"]) == [("accrual", 99)]
    assert await outcome(client, server, body) == "duplicate_event"
    await asyncio.sleep(0.5)  # a few sweeps: the paid units stay sold
    assert (await card_of(client, sale))["stock_left"] == 1
    assert (await order_of(client, sale, order["id"]))["status"] == "paid"


async def _late_payment_is_refunded_when_the_stock_was_sold_meanwhile(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    sale = await new_sale(client, stock=1, price=990, reserve_seconds=1)
    promoter = await join(client, sale, "Promoter")
    _, order, payment_id = await start_payment(client, sale, "Slow", via=promoter.share_code)
    await wait_for_status(client, sale, order["id"], "expired")
    quick = await join(client, sale, "Quick")
    taken = await ok(await buy(client, sale.card_id, quick), 201)
    assert (await card_of(client, sale))["stock_left"] == 0

    body = event(SUCCEEDED, payment_id)
    assert await outcome(client, server, body) == "refunded_late"
    refunded = await order_of(client, sale, order["id"])
    assert refunded["status"] == "refunded", refunded
    assert str(refunded["refund_reason"]).startswith("late_payment_"), refunded
    assert (await payment_of(client, payment_id))["status"] == "refunded"
    assert await ledger(server, order["id"]) == []
    card = await card_of(client, sale)
    assert card["stock_left"] == 0 and card["stock_total"] == 1
    assert (await order_of(client, sale, taken["id"]))["status"] == "reserved"
    stats = await stats_of(client, sale)
    assert stats["orders_paid"] == 0 and stats["gmv"] == 0
    # A redelivery changes nothing; the other buyer can still pay for the unit.
    assert await outcome(client, server, body) == "duplicate_event"
    pay = await ok(
        await client.post(
            f"/api/orders/{taken['id']}/pay", json={"address": ADDRESS}, headers=auth(quick.token)
        )
    )
    assert await outcome(client, server, event(SUCCEEDED, pay["payment_id"])) == "paid"
    assert (await card_of(client, sale))["stock_left"] == 0
    assert (await order_of(client, sale, order["id"]))["status"] == "refunded"


async def test_late_payments_are_decided(client: httpx.AsyncClient, server: LiveServer) -> None:
    """SPEC invariant 6: a late payment is honoured while stock remains, refunded once it was sold."""
    await asyncio.gather(  # two sales of their own: both wait for a reservation to expire, side by side
        _late_payment_is_honoured_while_stock_remains(client, server),
        _late_payment_is_refunded_when_the_stock_was_sold_meanwhile(client, server),
    )


async def test_late_payment_before_the_sweeper_expired_it(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """With no sweeper, a payment after the window finds the order still ``reserved``: it is decided as late
    (the units are released and taken again), never paid as if on time."""
    settings = make_settings(database_url, redis_url, tmp_path)
    async with (
        LiveServer(settings, sweeper=False) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        sale = await new_sale(client, stock=1, price=990, reserve_seconds=1)
        _, order, payment_id = await start_payment(client, sale, "Slow")
        await asyncio.sleep(1.2)
        assert (await order_of(client, sale, order["id"]))["status"] == "reserved"
        assert await outcome(client, server, event(SUCCEEDED, payment_id)) == "paid_late"
        paid = await order_of(client, sale, order["id"])
        assert paid["status"] == "paid" and paid["late_payment"] is True
        card = await card_of(client, sale)
        assert card["stock_left"] == 0 and card["stock_total"] == 1
