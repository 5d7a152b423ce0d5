"""Sale types (shop/inventory/sale_types.py), tested without an event loop: a flash sale's buy as its script's
ARGV, the script's reply as a result, and which refusal raises which error (with its status at the edge)."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from livecart.edge import status_of
from shop.errors import (
    IdempotencyMismatch,
    InventoryUnavailable,
    LimitExceeded,
    SaleNotOpen,
    ShopError,
    SoldOut,
    TooManyOrders,
    UnknownResource,
    WrongRoom,
)
from shop.inventory.records import Reservation, ReserveResult
from shop.inventory.rules import OrderRates
from shop.inventory.sale_types import (
    FLASH_SALE,
    SALE_TYPES,
    FlashSale,
    SaleType,
    sale_type_of,
    shared_refusal,
    shared_result,
)

NOW = 1_800_000_000_000
RECORD = json.dumps(
    {
        "buyer": "vw_a",
        "qty": 2,
        "price": 990,
        "expires": NOW + 300_000,
        "key": "k1",
        "created": NOW,
        "state": "reserved",
        "ref": "vw_p",
    }
)
RESERVATION = Reservation(
    order_id="ord_1",
    buyer_id="vw_a",
    quantity=2,
    unit_price=990,
    expires_ms=NOW + 300_000,
    idempotency_key="k1",
    created_ms=NOW,
    state="reserved",
    referrer_id="vw_p",
)


def lua(script: str) -> str:
    return resources.files("shop.inventory").joinpath(f"lua/{script}.lua").read_text()


RATES = OrderRates(per_buyer=60, buyer_window_ms=60_000, per_address=600, address_window_ms=60_000)


def declared_argv(script: str) -> list[str]:
    """The ``ARGV[i] name`` declarations at the top of a script, in index order."""
    header = "\n".join(line for line in lua(script).splitlines() if line.startswith("--"))
    found = re.findall(r"ARGV\[(\d+)\] ([a-z][a-z' ]*?)(?=\s+ARGV\[|\s*\(|\n|$)", header)
    assert [int(i) for i, _ in found] == list(range(1, len(found) + 1)), found
    return [name.strip() for _, name in found]


# -- the registry --------------------------------------------------------------------------------------


def test_every_card_is_a_flash_sale_today() -> None:
    assert sale_type_of("crd_any") is FLASH_SALE
    assert SALE_TYPES == {"flash": FLASH_SALE}


@pytest.mark.parametrize("name", sorted(SALE_TYPES))
def test_each_sale_type_is_registered_by_its_name_and_its_script_names_its_keys_and_argv(name: str) -> None:
    sale: SaleType = SALE_TYPES[name]
    assert sale.name == name
    top = lua(sale.script).splitlines()[:20]
    assert any(line.startswith("-- KEYS[1]") for line in top), "the script names its KEYS at the top"
    assert any("ARGV[1]" in line for line in top if line.startswith("--")), "and its ARGV"


# -- a buy as the flash sale's ARGV --------------------------------------------------------------------


def test_flash_sale_argv_is_in_the_order_reserve_lua_declares() -> None:
    assert FLASH_SALE.script == "reserve"
    assert declared_argv("reserve") == [
        "buyer id",
        "idempotency key",
        "quantity",
        "now",
        "new order id",
        "room id of the buyer's token",
        "referrer id",
        "attempts per buyer",
        "in this window",
        "attempts per address",
        "window",
    ]
    args = FLASH_SALE.reserve_args(
        buyer_id="vw_a",
        room_id="rm_1",
        idempotency_key="k1",
        quantity=2,
        order_id="ord_1",
        referrer_id="vw_p",
        now_ms=NOW,
        rates=RATES,
    )
    assert args == ("vw_a", "k1", 2, NOW, "ord_1", "rm_1", "vw_p", 60, 60_000, 600, 60_000)


def test_flash_sale_argv_without_a_referrer_is_empty_text() -> None:
    args = FlashSale().reserve_args(
        buyer_id="vw_a",
        room_id="rm_1",
        idempotency_key="k1",
        quantity=1,
        order_id="ord_1",
        referrer_id=None,
        now_ms=NOW,
        rates=RATES,
    )
    assert args[6] == ""
    assert all(isinstance(a, str | int) for a in args)


# -- the script's reply as a result --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(["ok", "ord_1", RECORD, "7"], ReserveResult("ok", "ord_1", RESERVATION, 7), id="ok"),
        pytest.param(
            ["duplicate", "ord_1", RECORD], ReserveResult("duplicate", "ord_1", RESERVATION), id="duplicate"
        ),
        pytest.param(["duplicate", "ord_1", ""], ReserveResult("duplicate", "ord_1"), id="duplicate-settled"),
        pytest.param(
            ["idempotency_mismatch", "ord_1"], ReserveResult("idempotency_mismatch", "ord_1"), id="mismatch"
        ),
        pytest.param(["sold_out", "1"], ReserveResult("sold_out", stock_left=1), id="sold_out"),
        pytest.param(["sold_out", "0"], ReserveResult("sold_out", stock_left=0), id="sold_out-empty"),
        pytest.param(["limit_exceeded", "3"], ReserveResult("limit_exceeded"), id="limit_exceeded"),
        pytest.param(["sale_not_open"], ReserveResult("sale_not_open"), id="sale_not_open"),
        pytest.param(["busy"], ReserveResult("busy"), id="busy"),
        pytest.param(
            ["rate_limited", "1500"], ReserveResult("rate_limited", wait_ms=1500), id="rate_limited"
        ),
        pytest.param(["no_sale"], ReserveResult("no_sale"), id="no_sale"),
        pytest.param(["wrong_room"], ReserveResult("wrong_room"), id="wrong_room"),
    ],
)
def test_flash_sale_reads_every_reply(reply: list[str], expected: ReserveResult) -> None:
    assert FLASH_SALE.result(reply) == expected


def test_a_reservation_without_a_referrer_has_none() -> None:
    record = json.dumps({**json.loads(RECORD), "ref": ""})
    result = shared_result(["ok", "ord_1", record, "0"])
    assert result.reservation is not None and result.reservation.referrer_id is None


# -- which refusal raises which error ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "error", "status", "code", "detail", "extra"),
    [
        pytest.param(
            ReserveResult("idempotency_mismatch", "ord_1"),
            IdempotencyMismatch,
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different quantity.",
            {},
            id="idempotency_mismatch",
        ),
        pytest.param(
            ReserveResult("wrong_room"),
            WrongRoom,
            403,
            "forbidden",
            "Your viewer token is for another room.",
            {},
            id="wrong_room",
        ),
        pytest.param(
            ReserveResult("no_sale"), UnknownResource, 404, "not_found", "No such card.", {}, id="no_sale"
        ),
        pytest.param(
            ReserveResult("rate_limited", wait_ms=1500),
            TooManyOrders,
            429,
            "rate_limited",
            "Too many orders; try again in 2 s.",
            {"retry_after": 2},
            id="rate_limited",
        ),
        pytest.param(
            ReserveResult("sale_not_open"),
            SaleNotOpen,
            409,
            "sale_not_open",
            "This card is not on sale right now.",
            {},
            id="sale_not_open",
        ),
        pytest.param(
            ReserveResult("limit_exceeded"),
            LimitExceeded,
            409,
            "limit_exceeded",
            "You have reached the per-buyer limit for this card.",
            {},
            id="limit_exceeded",
        ),
        pytest.param(
            ReserveResult("sold_out", stock_left=1),
            SoldOut,
            409,
            "sold_out",
            "Sold out.",
            {"stock_left": 1},
            id="sold_out",
        ),
        pytest.param(
            ReserveResult("sold_out"),
            SoldOut,
            409,
            "sold_out",
            "Sold out.",
            {"stock_left": 0},
            id="sold_out-none",
        ),
        pytest.param(
            ReserveResult("melted"),
            InventoryUnavailable,
            503,
            "unavailable",
            "unexpected inventory outcome melted",
            {},
            id="unknown-outcome",
        ),
    ],
)
def test_flash_sale_refusals(
    result: ReserveResult,
    error: type[ShopError],
    status: int,
    code: str,
    detail: str,
    extra: dict[str, object],
) -> None:
    raised = FLASH_SALE.refusal(result)
    assert type(raised) is error
    assert status_of(type(raised)) == status
    assert raised.body() == {"error": code, "detail": detail, **extra}


@pytest.mark.parametrize("outcome", ["sale_not_open", "limit_exceeded", "sold_out"])
def test_the_flash_sales_own_refusals_are_not_shared(outcome: str) -> None:
    """Another sale type does not inherit a flash sale's refusals: shared_refusal does not know them."""
    assert type(shared_refusal(ReserveResult(outcome))) is InventoryUnavailable
