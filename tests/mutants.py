"""Planted bugs the test suite must catch: ``.venv/bin/python -m tests.mutants [name ...]``.

Each mutant is one exact replacement in one file, and the pytest node ids that must fail with it. For each,
the runner copies the repository's files (``git ls-files``: tracked, plus untracked files not ignored) to a
temporary directory, applies the replacement there (a snippet not found exactly once is an error: update
the table), runs the named tests in that copy with this environment's ``LIVECART_TEST_*`` targets, and
reports ``CAUGHT`` (every named test failed) or ``MISSED``. First, unless ``--no-baseline``, the named tests
run once on an unmodified copy: they must pass there, or a ``CAUGHT`` would prove nothing.

Exit status 0 only if every mutant chosen is caught. This is not part of the normal pytest run (not a
``test_`` module). docs/testing.md explains each mutant. When code moves, edit ``path``, ``old`` or the
node ids in ``MUTANTS`` below.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOTH = ("sqlite", "postgresql")
PER_RUN_TIMEOUT_S = 1200


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


def on_both(node: str) -> tuple[str, ...]:
    """A test that runs on SQLite and on PostgreSQL (the ``database_url`` fixture): both node ids."""
    return tuple(f"{node}[{db}]" for db in BOTH)


# Test files, to keep the node ids below short.
BAD_INPUT = "tests/integration/test_bad_input.py::test_bad_input_is_refused_and_changes_nothing"
CARDS = "tests/integration/test_cards.py::"
COMMISSIONS = "tests/integration/test_commissions.py::"
CONCURRENCY = "tests/integration/test_concurrency.py::"
HUB = "tests/unit/test_hub.py::"
INVITES = "tests/integration/test_invites.py::"
SM = "tests/integration/test_order_state_machine.py::"
SQL_FAILURE = "tests/integration/test_sql_failure.py::"

MUTANTS: list[Mutant] = [
    Mutant(
        name="oversell",
        what="reserve.lua reserves without checking the stock left",
        path="shop/inventory/lua/reserve.lua",
        old="if left < qty then return {'sold_out', tostring(left)} end\n",
        new="",
        tests=(
            *on_both(CARDS + "test_adding_stock_reopens_a_sold_out_sale"),
            CONCURRENCY + "test_no_oversell_under_concurrent_buyers[sqlite]",
        ),
    ),
    Mutant(
        name="answer-before-commit",
        what="the order writer resolves a buy's future before its batch is committed",
        path="shop/orders/writer.py",
        old="        try:\n            written, taken = await inserter.insert(",
        new=(
            "        for _, early, _ in live:\n"
            "            early.set_result(True)\n"
            "        try:\n"
            "            written, taken = await inserter.insert("
        ),
        tests=(
            *on_both(SQL_FAILURE + "test_sql_outage_gives_503_and_releases_the_reservation"),
            *on_both(SQL_FAILURE + "test_a_refused_insert_puts_the_unit_back_at_once"),
        ),
    ),
    Mutant(
        name="sweeper-never-releases",
        what="the sweeper never releases an orphaned reservation (no SQL row after the grace)",
        path="shop/sweeper.py",
        old=(
            "                outcome = await self.inventory.release(\n"
            '                    card_id, order_id, mode="orphan", now_ms=now, grace_ms=self.grace_ms\n'
            "                )\n"
        ),
        new='                outcome = "busy"\n',
        tests=(
            SM + "test_a_buy_that_crashed_before_its_row_is_adopted_by_its_retry_or_returned",
            SM + "test_the_real_services_die_at_each_fault_point_and_everything_heals",
        ),
    ),
    Mutant(
        name="hub-skips-a-frame",
        what="a connection going live drops the first event held after its snapshot",
        path="realtime/hub.py",
        old="for s, frame in sorted(conn.held, key=lambda h: h[0]) if s > seq]",
        new="for s, frame in sorted(conn.held, key=lambda h: h[0]) if s > seq + 1]",
        tests=(
            HUB + "test_syncing_connection_holds_events_and_gets_exactly_those_after_its_snapshot",
            HUB + "test_held_frames_come_back_in_seq_order",
        ),
    ),
    Mutant(
        name="hub-repeats-a-frame",
        what="a connection going live gets again the event its snapshot holds",
        path="realtime/hub.py",
        old="for s, frame in sorted(conn.held, key=lambda h: h[0]) if s > seq]",
        new="for s, frame in sorted(conn.held, key=lambda h: h[0]) if s >= seq]",
        tests=(HUB + "test_syncing_connection_holds_events_and_gets_exactly_those_after_its_snapshot",),
    ),
    Mutant(
        name="no-per-buyer-limit",
        what="reserve.lua skips the per-buyer limit",
        path="shop/inventory/lua/reserve.lua",
        old="if held + qty > tonumber(sale[5]) then return {'limit_exceeded', tostring(held)} end\n",
        new="",
        tests=tuple(
            CONCURRENCY + f"test_one_buyer_with_many_keys_at_once_gets_no_more_than_the_limit[{db}-{case}]"
            for db in BOTH
            for case in ("limit2-qty1", "limit5-qty2")
        ),
    ),
    Mutant(
        name="self-referral-commission",
        what="commissions.accrue pays a referrer who is the buyer",
        path="shop/commissions.py",
        old="    if order.referrer_id is None or order.referrer_id == order.buyer_id:\n        return 0\n",
        new="    if order.referrer_id is None:\n        return 0\n",
        tests=(
            *on_both(COMMISSIONS + "test_a_self_referred_paid_order_earns_no_commission"),
            *on_both(COMMISSIONS + "test_accrue_credits_the_referrer_and_never_the_buyer"),
        ),
    ),
    Mutant(
        name="refund-without-note",
        what="OrderService.refund commits without noting the refund in Redis first (begin_refund)",
        path="shop/orders/service.py",
        old="            await self.inventory.begin_refund(order.card_id, order_id, now_ms=now)\n",
        new="",
        tests=(
            SM + "test_a_crash_between_the_sql_and_redis_halves_of_a_refund_heals",
            SM + "test_the_real_services_die_at_each_fault_point_and_everything_heals",
        ),
    ),
    Mutant(
        name="unwritten-kept",
        what="a refused order row keeps its unit until the orphan grace (_release_unwritten does nothing)",
        path="shop/orders/service.py",
        old="    async def _release_unwritten(self, card_id: str, order_id: str) -> None:\n",
        new="    async def _release_unwritten(self, card_id: str, order_id: str) -> None:\n        return\n",
        tests=on_both(SQL_FAILURE + "test_a_refused_insert_puts_the_unit_back_at_once"),
    ),
    Mutant(
        name="join-without-sign-in",
        what="a verified room lets in whoever has not signed in, as a guest",
        path="live/api.py",
        old=(
            '    elif room.sign_in == "verified":\n'
            '        raise SignInRequired("Sign in with your phone number (or WeChat) to join this show.")\n'
        ),
        new="",
        tests=(
            *on_both(INVITES + "test_uses_are_counted_per_customer"),
            BAD_INPUT + "[sqlite-join-verified-not-signed-in]",
        ),
    ),
    Mutant(
        name="another-shops-customer",
        what="a customer signed in at another host's shop joins as that customer",
        path="live/api.py",
        old="    if customer is not None and customer.host_id != room.host_id:\n",
        new="    if False:\n",
        tests=(
            *on_both(INVITES + "test_uses_are_counted_per_customer"),
            BAD_INPUT + "[sqlite-join-verified-other-shops-customer]",
        ),
    ),
    Mutant(
        name="return-takes-a-use",
        what="a customer's every join through a per-invitee invite takes a use, not only their first",
        path="live/api.py",
        old="            if existing is None:\n                try:\n",
        new="            if True:\n                try:\n",
        tests=on_both(INVITES + "test_uses_are_counted_per_customer"),
    ),
]


def repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def copy_repo(files: Iterable[str], into: Path) -> None:
    for rel in files:
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def apply(mutant: Mutant, tree: Path) -> None:
    target = tree / mutant.path
    if not target.is_file():
        raise SystemExit(f"mutant {mutant.name}: {mutant.path} does not exist; update the table")
    text = target.read_text()
    found = text.count(mutant.old)
    if found != 1:
        raise SystemExit(
            f"mutant {mutant.name}: its snippet occurs {found} times in {mutant.path} (must be once); "
            f"update the table:\n{mutant.old}"
        )
    target.write_text(text.replace(mutant.old, mutant.new))


def run_tests(tree: Path, nodes: Iterable[str]) -> tuple[dict[str, str], str]:
    """Run ``nodes`` in ``tree``; their outcomes (PASSED, FAILED, ERROR, SKIPPED, ...) and pytest's tail."""
    env = dict(os.environ)
    # The copy's packages before the editable install's (also for `livecart serve` child processes).
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *nodes]
    try:
        done = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=PER_RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {}, f"pytest ran past {PER_RUN_TIMEOUT_S} s"
    output = done.stdout + done.stderr
    outcomes: dict[str, str] = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS") and rest.startswith("tests/"):
            outcomes.setdefault(rest.split(" - ", 1)[0].strip(), word)
    return outcomes, "\n".join(output.splitlines()[-15:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to check (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmodified copy")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:26} {m.path}: {m.what}")
        return 0
    by_name = {m.name: m for m in MUTANTS}
    if unknown := [n for n in args.names if n not in by_name]:
        parser.error(f"unknown mutants {unknown}; known: {sorted(by_name)}")
    chosen = [by_name[n] for n in args.names] or MUTANTS

    files = repo_files()
    with tempfile.TemporaryDirectory(prefix="livecart-mutants-") as tmp:
        pristine = Path(tmp) / "pristine"
        copy_repo(files, pristine)
        for m in chosen:  # every snippet is checked before anything runs
            probe = Path(tmp) / "probe"
            (probe / m.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pristine / m.path, probe / m.path)
            apply(m, probe)

        if not args.no_baseline:
            nodes = list(dict.fromkeys(t for m in chosen for t in m.tests))
            print(f"baseline: {len(nodes)} tests on the unmodified code ...", flush=True)
            outcomes, tail = run_tests(pristine, nodes)
            bad = {n: outcomes.get(n, "NOT RUN") for n in nodes if outcomes.get(n) != "PASSED"}
            if bad:
                print(f"BASELINE FAILS: these must pass on unmodified code: {bad}\n{tail}")
                return 2
            print("baseline: all pass", flush=True)

        results: list[tuple[Mutant, str, str]] = []
        for m in chosen:
            tree = Path(tmp) / m.name
            shutil.copytree(pristine, tree)
            apply(m, tree)
            started = time.monotonic()
            outcomes, tail = run_tests(tree, m.tests)
            failed = [t for t in m.tests if outcomes.get(t) in ("FAILED", "ERROR")]
            not_failed = {t: outcomes.get(t, "NOT RUN") for t in m.tests if t not in failed}
            verdict = "CAUGHT" if not not_failed else "MISSED"
            detail = f"{len(failed)}/{len(m.tests)} tests failed, {time.monotonic() - started:.0f} s"
            if not_failed:
                detail += f"; did not fail: {not_failed}\n{tail}"
            print(f"{verdict} {m.name}: {detail}", flush=True)
            results.append((m, verdict, detail))
            shutil.rmtree(tree, ignore_errors=True)

    print("\nmutant                     result  what")
    for m, verdict, _ in results:
        print(f"{m.name:26} {verdict:7} {m.what}")
    missed = [m.name for m, verdict, _ in results if verdict != "CAUGHT"]
    print(
        f"\n{len(results) - len(missed)} of {len(results)} caught" + (f"; MISSED: {missed}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
