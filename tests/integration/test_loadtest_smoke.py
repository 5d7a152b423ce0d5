"""The CI smoke of the load tests: ``loadtests/profile.py`` starts a real ``livecart serve`` and runs the
locust scenario headless with small numbers; it must finish with zero failures and a passing end-of-run
check, every viewer and buyer a verified customer (signed in through the dev SMS provider, in a verified
room: a join without it would be a 401, a failure). And the end check itself, run against a real server,
must find an order that was acknowledged but does not exist (a check that cannot fail would prove nothing).

Locust monkey-patches the interpreter with gevent when imported, so it only ever runs in a subprocess here.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.shop_api import buy, join, new_sale, ok

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
USERS = 40
SMOKE_SECONDS = 12


def _stats(report: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (report / "locust_stats.csv").open() as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


async def test_the_locust_scenario_runs_clean(database_url: str, redis_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    command = [
        PYTHON,
        str(ROOT / "loadtests" / "profile.py"),
        *("-u", str(USERS), "-r", "20", "-t", f"{SMOKE_SECONDS}s"),
        *("--report", str(report), "--server-log", str(tmp_path / "serve.log")),
        *("--sale-seconds", "3", "--reserve-seconds", "4", "--stock", "15", "--check-seconds", "10"),
    ]
    env = {"LIVECART_DATABASE_URL": database_url, "LIVECART_REDIS_URL": redis_url}
    proc = await asyncio.create_subprocess_exec(
        *command,
        env={**_inherited(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=SMOKE_SECONDS + 45)
    text = out.decode(errors="replace")
    logged = "\n".join(line for line in text.splitlines() if line.startswith("["))  # not the tables
    assert proc.returncode == 0, f"{logged[-6000:]}\n{text[-3000:]}"
    assert "end check passed" in text, logged[-6000:]

    stats = _stats(report)
    total = stats[("", "Aggregated")]
    assert total["Failure Count"] == "0", text[-3000:]
    viewers_and_buyers = USERS - 1  # the host is one user
    for name in ("/api/rooms/[room]/sign-in/code", "/api/rooms/[room]/sign-in", "/api/rooms/[room]/join"):
        assert int(stats[("POST", name)]["Request Count"]) == viewers_and_buyers, name
    assert int(stats[("WS", "connect + first frame")]["Request Count"]) >= viewers_and_buyers
    assert int(stats[("WS", "stock delay")]["Request Count"]) > 0
    assert int(stats[("POST", "/api/cards/[card]/orders")]["Request Count"]) > 0
    assert int(stats[("POST", "/api/cards/[card]/open")]["Request Count"]) >= 1


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")}


CHECK = textwrap.dedent(
    """
    import json, sys
    import locust  # first, as the locust command does: it monkey-patches ssl before requests loads it
    sys.path.insert(0, sys.argv[1])
    from locustfile import Show, check_show
    from show_check import Acknowledged
    args = json.loads(sys.argv[2])
    show = Show(base=args["base"], host_token=args["host_token"], room_id=args["room_id"], room_invite="",
                group_invite="", product_id="", origin="", stock=0, sale_seconds=0, reserve_seconds=0,
                cards=[args["card_id"]])
    for order_id, card_id, quantity in args["acks"]:
        show.acknowledged[order_id] = Acknowledged(order_id, card_id, quantity)
    print(json.dumps(check_show(show, 0.0)))
    """
)


async def test_the_end_check_finds_lost_and_altered_orders(
    server: LiveServer, client: httpx.AsyncClient
) -> None:
    sale = await new_sale(client, stock=5)
    buyer = await join(client, sale, "Buyer")
    order: dict[str, Any] = await ok(await buy(client, sale.card_id, buyer), 201)
    args = {
        "base": server.url,
        "host_token": sale.host_token,
        "room_id": sale.room_id,
        "card_id": sale.card_id,
        "acks": [
            [order["id"], sale.card_id, 1],  # true
            ["or_never_written", sale.card_id, 1],  # lost
        ],
    }
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-c",
        CHECK,
        str(ROOT / "loadtests"),
        json.dumps(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    problems = json.loads(out.decode().strip().splitlines()[-1])
    assert problems == [f"acknowledged order or_never_written (card {sale.card_id}) does not exist"]

    args["acks"] = [[order["id"], sale.card_id, 2]]  # acknowledged as 2 units, the server holds 1
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-c", CHECK, str(ROOT / "loadtests"), json.dumps(args), stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    problems = json.loads(out.decode().strip().splitlines()[-1])
    assert problems == [
        f"order {order['id']} is 1 of card {sale.card_id}, but 2 of card {sale.card_id} was acknowledged"
    ]
