"""One day of one provider's money, our ledger against the provider's statement (``livecart
reconcile-payments``; the comparison itself is ``shop.payments.statements``).

**The day** is the provider's: midnight to midnight in its ``statement_zone`` (Beijing time for WeChat Pay,
UTC for Stripe), as epoch ms ``[start, end)``.

**Our side of it**:

- the provider's payments that are ``succeeded`` (or ``refunded`` since: they were paid) and were *paid*
  that day. Paid is when the payment became succeeded here: the ``received_ms`` of its first recorded
  ``succeeded`` event (a notification, or the query that settled a lost one), else — for a payment with no
  such event recorded — its ``updated_ms``. Our clock runs a little behind the provider's (it hears of a
  payment after the buyer paid), which is what the boundary below is for;
- the refunds of the provider's payments that the provider took (``processing`` or ``succeeded``; a
  ``pending`` one has not reached it), by ``created_ms``.

**Boundary.** A payment near midnight may fall on this day on one side and on the next (or previous) on
the other. A line only the provider has is looked up in our ledger by its id, whatever its day or status;
a line only we have, within ``boundary_seconds`` of an edge of the day, is looked for in the provider's
statement of the neighbouring day (fetched only then; a neighbour the provider cannot give yet, e.g.
WeChat's bill of today, leaves the difference as it is). Found there within ``boundary_seconds`` of the
edge, with the same amount and status, it is reported under ``boundary``, not as a difference; found but
otherwise different, it is that difference (a payment the provider took that we still hold ``pending`` is a
``status_differs``). The command's exit status counts differences only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import ColumnElement, Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop.models import Payment, PaymentEvent, Refund
from shop.payments.provider import HasStatement, ProviderError
from shop.payments.registry import Providers
from shop.payments.statements import (
    Boundary,
    Difference,
    StatementLine,
    Totals,
    compare,
    settle_edges,
)

DAY_MS = 24 * 60 * 60 * 1000
#: How near midnight a line may lie on the other side's neighbouring day to count as the same day's.
BOUNDARY_SECONDS = 60 * 60
#: Our payment statuses that mean the money was taken (``refunded`` was paid first).
PAID = ("succeeded", "refunded")
#: Our refund statuses that mean the provider took the refund.
REFUND_TAKEN = ("processing", "succeeded")


class NoStatement(Exception):
    """The provider is not configured here, or publishes no statement this side can read."""


@dataclass(frozen=True, slots=True)
class Report:
    provider: str
    day: date
    zone: tzinfo
    ours: Totals
    theirs: Totals
    differences: list[Difference]
    boundary: list[Boundary]

    def as_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "date": self.day.isoformat(),
            "time_zone": str(self.zone),
            "ours": self.ours.as_json(),
            "theirs": self.theirs.as_json(),
            "differences": [d.as_json() for d in self.differences],
            "boundary": [b.as_json() for b in self.boundary],
        }


def day_window(day: date, zone: tzinfo) -> tuple[int, int]:
    """``day`` in ``zone`` as epoch ms ``[start, end)``."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = start + timedelta(days=1)
    return int(start.astimezone(UTC).timestamp() * 1000), int(end.astimezone(UTC).timestamp() * 1000)


def _payment_status(status: str) -> str:
    return "succeeded" if status in PAID else status


def _paid_at() -> tuple[ColumnElement[int], Subquery]:
    """When each payment was paid (module docstring), and the subquery it is read from (outer-joined)."""
    first = (
        select(PaymentEvent.payment_id, func.min(PaymentEvent.received_ms).label("paid_ms"))
        .where(PaymentEvent.type == "succeeded")
        .group_by(PaymentEvent.payment_id)
        .subquery()
    )
    return func.coalesce(first.c.paid_ms, Payment.updated_ms), first


async def _payment_lines(
    session: AsyncSession, provider: str, *, window: tuple[int, int] | None, ids: Sequence[str] = ()
) -> list[StatementLine]:
    """Our payments at ``provider``: those paid within ``window``, or (``window=None``) those of ``ids``
    whatever their day and status."""
    at, first = _paid_at()
    query = (
        select(Payment.id, Payment.amount, Payment.provider_ref, Payment.status, at.label("at_ms"))
        .outerjoin(first, first.c.payment_id == Payment.id)
        .where(Payment.provider == provider)
    )
    if window is None:
        query = query.where(Payment.id.in_(list(ids)))
    else:
        start, end = window
        query = query.where(Payment.status.in_(PAID), Payment.created_ms < end, at >= start, at < end)
    rows = (await session.execute(query.order_by(at, Payment.id))).all()
    return [
        StatementLine(
            kind="payment",
            payment_id=row.id,
            refund_id=None,
            amount=row.amount,
            provider_ref=row.provider_ref,
            at_ms=row.at_ms,
            status=_payment_status(row.status),
        )
        for row in rows
    ]


async def _refund_lines(
    session: AsyncSession, provider: str, *, window: tuple[int, int] | None, ids: Sequence[str] = ()
) -> list[StatementLine]:
    """Our refunds of ``provider``'s payments: those it took made within ``window``, or (``window=None``)
    those of ``ids`` whatever their day and status."""
    query = (
        select(
            Refund.id, Refund.payment_id, Refund.amount, Refund.provider_ref, Refund.status, Refund.created_ms
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.provider == provider)
    )
    if window is None:
        query = query.where(Refund.id.in_(list(ids)))
    else:
        start, end = window
        query = query.where(
            Refund.status.in_(REFUND_TAKEN), Refund.created_ms >= start, Refund.created_ms < end
        )
    rows = (await session.execute(query.order_by(Refund.created_ms, Refund.id))).all()
    return [
        StatementLine(
            kind="refund",
            payment_id=row.payment_id or "",
            refund_id=row.id,
            amount=row.amount,
            provider_ref=row.provider_ref,
            at_ms=row.created_ms,
            status=row.status,
        )
        for row in rows
    ]


def statement_provider(providers: Providers, name: str) -> HasStatement:
    """The provider ``name`` if it is configured here and has a statement; else ``NoStatement``."""
    provider = providers.find(name)
    if provider is None:
        raise NoStatement(
            f"the payment provider {name!r} is not configured here "
            f"(configured: {', '.join(providers.names) or 'none'})"
        )
    if not isinstance(provider, HasStatement):
        raise NoStatement(f"the payment provider {name!r} has no statement to reconcile with")
    return provider


async def reconcile_day(
    sessions: async_sessionmaker[AsyncSession],
    providers: Providers,
    provider_name: str,
    day: date,
    *,
    boundary_seconds: int = BOUNDARY_SECONDS,
) -> Report:
    """Our ledger's ``day`` at ``provider_name`` against the provider's statement of it (module docstring).
    ``NoStatement`` for a provider without one, ``ProviderError`` when the statement cannot be had."""
    provider = statement_provider(providers, provider_name)
    window = day_window(day, provider.statement_zone)
    boundary_ms = boundary_seconds * 1000
    async with sessions() as session:
        ours = [
            *await _payment_lines(session, provider_name, window=window),
            *await _refund_lines(session, provider_name, window=window),
        ]
    theirs = await provider.statement(day)
    differences = compare(ours, theirs)

    only_theirs = [d.theirs for d in differences if d.what == "missing_in_ledger" and d.theirs is not None]
    ours_elsewhere: list[StatementLine] = []
    if only_theirs:
        async with sessions() as session:
            payment_ids = [line.payment_id for line in only_theirs if line.kind == "payment"]
            refund_ids = [line.refund_id for line in only_theirs if line.kind == "refund" and line.refund_id]
            if payment_ids:
                ours_elsewhere += await _payment_lines(session, provider_name, window=None, ids=payment_ids)
            if refund_ids:
                ours_elsewhere += await _refund_lines(session, provider_name, window=None, ids=refund_ids)

    start, end = window
    only_ours = [d.ours for d in differences if d.what == "missing_at_provider" and d.ours is not None]
    neighbours = sorted(
        {day - timedelta(days=1) for line in only_ours if line.at_ms < start + boundary_ms}
        | {day + timedelta(days=1) for line in only_ours if line.at_ms >= end - boundary_ms}
    )
    theirs_elsewhere: list[StatementLine] = []
    for neighbour in neighbours:
        theirs_elsewhere += await _neighbour_statement(provider, neighbour)

    differences, boundary = settle_edges(
        differences,
        ours_elsewhere=ours_elsewhere,
        theirs_elsewhere=theirs_elsewhere,
        day=window,
        boundary_ms=boundary_ms,
    )
    return Report(
        provider=provider_name,
        day=day,
        zone=provider.statement_zone,
        ours=Totals.of(ours),
        theirs=Totals.of(theirs),
        differences=differences,
        boundary=boundary,
    )


async def _neighbour_statement(provider: HasStatement, day: date) -> list[StatementLine]:
    """The neighbouring day's statement, or nothing when the provider cannot give it (yet): the lines it
    was fetched for then stay differences."""
    try:
        return await provider.statement(day)
    except ProviderError:
        return []
