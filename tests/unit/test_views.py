"""Views against their response models, without an event loop: every JSON shape the API answers with is
built here from model objects and validated against its ``*Out`` model with the exact key set (no key the
model lacks, none it has missing). Also: the one order type holds exactly the columns of an order row, and
the writer's row exactly the columns the bulk insert writes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

from live.models import Room
from live.schemas import RoomOut
from live.views import public_room, room_json
from shop import models
from shop.inventory.records import Reservation
from shop.inventory.rules import CardStatus, OrderStatus
from shop.orders.bulk import COLUMNS
from shop.orders.order import Order
from shop.orders.writer import row_of
from shop.payments.service import payment_json
from shop.schemas import CardOut, OrderOut, PaymentOut, ProductOut
from shop.views import card_json, order_json, product_json

NOW = 1_800_000_000_000


def check(view: dict[str, Any], model: type[BaseModel]) -> None:
    """``view`` has exactly ``model``'s keys, nested models included, and validates against it."""
    assert set(view) == set(model.model_fields), (
        f"{model.__name__}: extra {sorted(set(view) - set(model.model_fields))}, "
        f"missing {sorted(set(model.model_fields) - set(view))}"
    )
    for name, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            check(view[name], nested)
    model.model_validate(view, strict=True)


def product(*, described: bool) -> models.Product:
    return models.Product(
        id="prd_1",
        host_id="hst_1",
        name="Teapot",
        price=990,
        description="Cast iron" if described else None,
        image_url="https://example.com/t.png" if described else None,
        shippable=described,
        created_ms=NOW,
    )


def card(status: str, *, closes_ms: int | None) -> models.Card:
    return models.Card(
        id="crd_1",
        room_id="rm_1",
        product_id="prd_1",
        price=990,
        stock_total=10,
        per_user_limit=2,
        reserve_seconds=300,
        status=status,
        opened_ms=NOW if status != "pinned" else None,
        closes_ms=closes_ms,
        created_ms=NOW,
    )


def order_row(status: str, **changes: Any) -> models.Order:
    values: dict[str, Any] = {
        "id": "ord_1",
        "card_id": "crd_1",
        "room_id": "rm_1",
        "buyer_id": "vw_a",
        "referrer_id": None,
        "idempotency_key": "k1",
        "quantity": 2,
        "unit_price": 990,
        "amount": 1980,
        "status": status,
        "refunded_amount": 0,
        "restocked": False,
        "late": False,
        "refund_reason": None,
        "tracking_number": None,
        "expires_ms": NOW + 300_000,
        "created_ms": NOW,
        "paid_ms": None,
        "closed_ms": None,
    }
    return models.Order(**{**values, **changes})


RESERVATION = Reservation(
    order_id="ord_2",
    buyer_id="vw_b",
    quantity=3,
    unit_price=500,
    expires_ms=NOW + 300_000,
    idempotency_key="k2",
    created_ms=NOW,
    state="reserved",
    referrer_id="vw_p",
)


# -- the one order type --------------------------------------------------------------------------------


SHIP_COLUMNS = {"ship_name": "name", "ship_phone": "phone", "ship_region": "region", "ship_line": "line"}


def _flat(order: Order) -> dict[str, object]:
    """The order's fields as columns: its address spread over the ``ship_*`` columns."""
    fields = {f.name: getattr(order, f.name) for f in dataclasses.fields(Order) if f.name != "address"}
    for column, field in SHIP_COLUMNS.items():
        fields[column] = getattr(order.address, field) if order.address else None
    return fields


def test_the_order_type_holds_exactly_the_columns_of_an_order_row() -> None:
    columns = {c.key for c in models.Order.__table__.columns}
    names = {f.name for f in dataclasses.fields(Order)} - {"address"}
    assert names | set(SHIP_COLUMNS) == columns


def test_an_order_from_its_row_keeps_every_column() -> None:
    row = order_row("paid", referrer_id="vw_p", paid_ms=NOW + 5, late=True, tracking_number="TRK1")
    row.ship_name, row.ship_phone = "王小明", "+8613800138000"
    row.ship_region, row.ship_line = "上海市", "1号"
    row.carrier, row.shipped_ms = "顺丰", NOW + 9
    order = Order.of_row(row)
    assert _flat(order) == {c.key: getattr(row, c.key) for c in models.Order.__table__.columns}
    assert order.was_paid and not Order.of_row(order_row("refunded")).was_paid


def test_an_order_from_a_fresh_reservation_is_reserved_and_nothing_else() -> None:
    order = Order.reserved("crd_1", "rm_1", RESERVATION)
    assert order == Order(
        id="ord_2",
        card_id="crd_1",
        room_id="rm_1",
        buyer_id="vw_b",
        referrer_id="vw_p",
        idempotency_key="k2",
        quantity=3,
        unit_price=500,
        amount=1500,
        status=OrderStatus.RESERVED.value,
        refunded_amount=0,
        restocked=False,
        late=False,
        refund_reason=None,
        tracking_number=None,
        expires_ms=NOW + 300_000,
        created_ms=NOW,
        paid_ms=None,
        closed_ms=None,
    )
    assert not order.was_paid


def test_the_writers_row_is_exactly_the_columns_the_bulk_insert_writes() -> None:
    order = Order.reserved("crd_1", "rm_1", RESERVATION)
    row = row_of(order)
    assert list(row) == list(COLUMNS)
    assert row == {c: getattr(order, c) for c in COLUMNS}


# -- views against their models ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [s.value for s in OrderStatus])
def test_order_json_is_an_order_out(status: str) -> None:
    paid = status in ("paid", "refunded")
    row = order_row(
        status,
        paid_ms=NOW + 1 if paid else None,
        closed_ms=NOW + 2 if status != "reserved" else None,
        refund_reason="host_refund" if status == "refunded" else None,
        tracking_number="TRK1" if status == "paid" else None,
        referrer_id="vw_p" if paid else None,
    )
    view = order_json(Order.of_row(row), currency="EUR")
    check(view, OrderOut)
    assert view["status"] == status and view["currency"] == "EUR"
    assert (view["paid_at"] is not None) is paid


def test_the_json_of_a_fresh_order_is_an_order_out() -> None:
    view = order_json(Order.reserved("crd_1", "rm_1", RESERVATION), currency="EUR")
    check(view, OrderOut)
    assert view["amount"] == 1500 and view["referrer_id"] == "vw_p" and view["paid_at"] is None


@pytest.mark.parametrize("described", [True, False])
def test_product_json_is_a_product_out(described: bool) -> None:
    check(product_json(product(described=described)), ProductOut)


@pytest.mark.parametrize("status", [s.value for s in CardStatus])
@pytest.mark.parametrize("closes_ms", [None, NOW + 60_000])
@pytest.mark.parametrize("described", [True, False])
def test_card_json_is_a_card_out(status: str, closes_ms: int | None, described: bool) -> None:
    view = card_json(
        card(status, closes_ms=closes_ms),
        product(described=described),
        stock_left=4,
        stock_total=10,
        price=990,
        now_ms=NOW,
    )
    check(view, CardOut)


@pytest.mark.parametrize("status", ["pending", "succeeded", "failed", "refunded"])
def test_payment_json_is_a_payment_out(status: str) -> None:
    payment = models.Payment(
        id="pay_1",
        order_id="ord_1",
        provider="dev",
        status=status,
        amount=1980,
        created_ms=NOW,
        updated_ms=NOW,
    )
    check(payment_json(payment), PaymentOut)


def room(status: str) -> Room:
    return Room(
        id="rm_1",
        host_id="hst_1",
        title="Evening show",
        status=status,
        invite_token="inv_secret",
        sign_in="verified",
        scheduled_ms=NOW,
        started_ms=NOW + 1 if status != "scheduled" else None,
        ended_ms=NOW + 2 if status == "ended" else None,
        created_ms=NOW,
    )


@pytest.mark.parametrize("status", ["scheduled", "live", "ended"])
@pytest.mark.parametrize("for_host", [True, False])
def test_room_json_is_a_room_out(status: str, for_host: bool) -> None:
    view = room_json(room(status), base_url="https://shop.example/", for_host=for_host)
    check(view, RoomOut)
    assert (view["invite_token"] is not None) is for_host and (view["invite_url"] is not None) is for_host


@pytest.mark.parametrize("status", ["scheduled", "live", "ended"])
def test_the_public_room_is_a_room_out_without_its_invite(status: str) -> None:
    view = public_room(room(status))
    assert set(view) == set(RoomOut.model_fields) - {"invite_token", "invite_url"}
    RoomOut.model_validate({**view, "invite_token": None, "invite_url": None}, strict=True)
