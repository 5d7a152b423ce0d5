"""A provider's statement of one day against our ledger's: which money moved on one side only, or by
another amount, or with another outcome (issue 13, "Money is exact").

Both sides are written as ``StatementLine`` values: a **payment** (our ``payment_id``, the provider's
``out_trade_no``) or a **refund** (our ``refund_id``, its ``out_refund_no``), an exact amount in minor units,
the provider's reference, when it happened and its ``status``. ``compare`` matches payments by
``payment_id`` and refunds by ``refund_id`` (a refund's ``payment_id`` is carried for the reader, not
matched) and names each mismatch a ``Difference``:

- ``missing_at_provider``: our ledger has it, the provider's statement does not;
- ``missing_in_ledger``: the provider has it, our ledger does not;
- ``amount_differs``: both have it, for other amounts;
- ``status_differs``: both have it, and one side took the money (``succeeded``, or a refund
  ``processing``) while the other did not (a payment still ``pending``, ``closed`` or ``failed`` in our
  ledger, a refund ``pending`` with us or ``failed`` at the provider). A refund ``processing`` on one side
  and ``succeeded`` on the other is the same money on its way: no difference.

Lines of one side with the same key (the provider listing a payment twice) are summed, so a duplicate
shows as an ``amount_differs``.

**Days and their edges.** A day's statement is cut at midnight in the provider's time zone, and the two
sides date the same payment a little apart (the provider when the buyer paid, our ledger when it heard of
it), so one near midnight can fall on the next day on one side. ``settle_edges`` takes what each side has
elsewhere — our ledger's lines of the ids the provider named (any day, any status), the provider's lines
of the neighbouring day — and turns a ``missing_*`` whose line the other side has, within
``boundary_ms`` of this day's edge, the same amount and status, into a ``Boundary`` (reported apart, not a
difference); found there but otherwise different, it is that difference instead (a payment the provider
took that our ledger still has ``pending`` is a ``status_differs``).

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

LineKind = Literal["payment", "refund"]
What = Literal["missing_at_provider", "missing_in_ledger", "amount_differs", "status_differs"]

#: Statuses in which the money has moved (or is moving: a refund the provider accepted).
TAKEN = frozenset({"succeeded", "processing"})


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: LineKind
    payment_id: str  #: our payment (a refund's: the payment it returns money from)
    refund_id: str | None  #: our refund; ``None`` on a payment
    amount: int  #: minor units, positive (a refund too)
    provider_ref: str | None  #: the provider's transaction or refund id
    at_ms: int  #: when it happened, epoch ms (each side by its own clock)
    #: ``succeeded``; a refund ``processing``; or what did not take the money (``pending``, ``failed``,
    #: ``closed``).
    status: str = "succeeded"

    @property
    def key(self) -> tuple[LineKind, str]:
        """What matches it to the other side's line: a payment's ``payment_id``, a refund's ``refund_id``."""
        if self.kind == "refund":
            return (self.kind, self.refund_id or "")
        return (self.kind, self.payment_id)

    @property
    def taken(self) -> bool:
        return self.status in TAKEN


@dataclass(frozen=True, slots=True)
class Difference:
    kind: LineKind
    what: What
    payment_id: str
    refund_id: str | None
    ours: StatementLine | None
    theirs: StatementLine | None
    detail: str

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "what": self.what,
            "payment_id": self.payment_id,
            "refund_id": self.refund_id,
            "ours": line_json(self.ours),
            "theirs": line_json(self.theirs),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Boundary:
    """A line each side has, on either side of midnight: not a difference."""

    ours: StatementLine
    theirs: StatementLine

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.ours.kind,
            "payment_id": self.ours.payment_id,
            "refund_id": self.ours.refund_id,
            "amount": self.ours.amount,
            "ours_at_ms": self.ours.at_ms,
            "theirs_at_ms": self.theirs.at_ms,
        }


@dataclass(frozen=True, slots=True)
class Totals:
    """What one side says moved that day: payments and refunds taken, counted and summed."""

    payments: int = 0
    payment_amount: int = 0
    refunds: int = 0
    refund_amount: int = 0

    @classmethod
    def of(cls, lines: Iterable[StatementLine]) -> Totals:
        taken = [line for line in lines if line.taken]
        payments = [line.amount for line in taken if line.kind == "payment"]
        refunds = [line.amount for line in taken if line.kind == "refund"]
        return cls(len(payments), sum(payments), len(refunds), sum(refunds))

    def as_json(self) -> dict[str, int]:
        return {
            "payments": self.payments,
            "payment_amount": self.payment_amount,
            "refunds": self.refunds,
            "refund_amount": self.refund_amount,
            "net_amount": self.payment_amount - self.refund_amount,
        }


def line_json(line: StatementLine | None) -> dict[str, object] | None:
    if line is None:
        return None
    return {
        "amount": line.amount,
        "status": line.status,
        "provider_ref": line.provider_ref,
        "at_ms": line.at_ms,
    }


def _by_key(lines: Iterable[StatementLine]) -> dict[tuple[LineKind, str], StatementLine]:
    """One line per key, in first-seen order; lines with the same key summed into the first."""
    found: dict[tuple[LineKind, str], StatementLine] = {}
    for line in lines:
        seen = found.get(line.key)
        found[line.key] = line if seen is None else replace(seen, amount=seen.amount + line.amount)
    return found


def _pair(ours: StatementLine, theirs: StatementLine) -> list[Difference]:
    """The differences between two lines of the same key."""
    found: list[Difference] = []
    if ours.amount != theirs.amount:
        found.append(
            _difference(
                "amount_differs",
                ours,
                theirs,
                f"our ledger has {ours.amount}, the provider {theirs.amount} "
                f"(difference {theirs.amount - ours.amount:+d})",
            )
        )
    if ours.taken != theirs.taken:
        found.append(
            _difference(
                "status_differs", ours, theirs, f"our ledger says {ours.status}, the provider {theirs.status}"
            )
        )
    return found


def _difference(
    what: What, ours: StatementLine | None, theirs: StatementLine | None, detail: str
) -> Difference:
    line = ours or theirs
    assert line is not None
    return Difference(line.kind, what, line.payment_id, line.refund_id, ours, theirs, detail)


def compare(ours: Sequence[StatementLine], theirs: Sequence[StatementLine]) -> list[Difference]:
    """Every difference between our ledger's lines and the provider's (module docstring), ours in their
    order first, then what only the provider has. Exact integers: no tolerance."""
    mine, others = _by_key(ours), _by_key(theirs)
    found: list[Difference] = []
    for key, line in mine.items():
        other = others.get(key)
        if other is None:
            if line.taken:
                found.append(
                    _difference("missing_at_provider", line, None, "not in the provider's statement")
                )
            continue
        found.extend(_pair(line, other))
    for key, other in others.items():
        if key not in mine and other.taken:
            found.append(_difference("missing_in_ledger", None, other, "not in our ledger"))
    return found


def near_edge(at_ms: int, *, day: tuple[int, int], boundary_ms: int) -> bool:
    """Whether ``at_ms`` lies outside ``day`` (``[start, end)`` epoch ms) but within ``boundary_ms`` of it."""
    start, end = day
    return start - boundary_ms <= at_ms < start or end <= at_ms < end + boundary_ms


def settle_edges(
    differences: Sequence[Difference],
    *,
    ours_elsewhere: Sequence[StatementLine],
    theirs_elsewhere: Sequence[StatementLine],
    day: tuple[int, int],
    boundary_ms: int,
) -> tuple[list[Difference], list[Boundary]]:
    """``differences`` with each ``missing_*`` looked for on the other side elsewhere (module docstring):
    ``(differences left, boundary lines)``. ``ours_elsewhere``: our ledger's lines (any day, any status)
    of ids only the provider's statement has; ``theirs_elsewhere``: the provider's lines of a neighbouring
    day."""
    mine, others = _by_key(ours_elsewhere), _by_key(theirs_elsewhere)
    left: list[Difference] = []
    boundary: list[Boundary] = []
    for difference in differences:
        ours: StatementLine | None
        theirs: StatementLine | None
        if difference.what == "missing_in_ledger" and difference.theirs is not None:
            theirs = difference.theirs
            ours = mine.get(theirs.key)
        elif difference.what == "missing_at_provider" and difference.ours is not None:
            ours = difference.ours
            theirs = others.get(ours.key)
        else:
            left.append(difference)
            continue
        if ours is None or theirs is None:
            left.append(difference)
            continue
        elsewhere = ours if difference.what == "missing_in_ledger" else theirs
        paired = _pair(ours, theirs)
        if paired:
            left.extend(paired)
        elif near_edge(elsewhere.at_ms, day=day, boundary_ms=boundary_ms):
            boundary.append(Boundary(ours, theirs))
        else:
            left.append(
                replace(difference, detail=f"{difference.detail}; on another day at {elsewhere.at_ms}")
            )
    return left, boundary
