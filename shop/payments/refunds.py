"""Refunds at the providers: every refund row is sent until the provider takes it, never dropped.

A refund is recorded in SQL first (``OrderService.refund_in`` for an order's, ``PaymentService`` for a
payment the order could not take), as ``pending``, in the transaction that changes the order. Then it is
sent: at once by whoever wrote it, and again by the sweeper (``retry_due``) while it is ``pending`` and its
``next_try_ms`` has come — after a crash, a provider that was down, or a refusal (``last_error`` says why,
and the host sees it). Each attempt claims the row first (a guarded UPDATE that moves ``next_try_ms``), so
two senders rarely send the same refund at once, and when they do, the provider sees our refund id as its
``out_refund_no`` (or idempotency key) and makes one refund of it.

The provider answers ``succeeded`` (done), ``processing`` (done later: its notification, or the sweeper's
``query_refund`` after ``LIVECART_PAYMENT_QUERY_AFTER_SECONDS``, completes it) or ``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from base.clock import Clock
from base.settings import Settings
from shop.models import Payment, Refund
from shop.payments.provider import ProviderError, RefundNotice, RefundRequest, RefundState
from shop.payments.registry import Providers

log = logging.getLogger("livecart.refunds")

MAX_BACKOFF_MS = 3600 * 1000


def backoff_ms(attempts: int, *, base_ms: int) -> int:
    """How long after its ``attempts``-th failed try a refund is tried again: doubling, at most an hour."""
    return int(min(base_ms * 2 ** max(attempts - 1, 0), MAX_BACKOFF_MS))


class Refunder:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        providers: Providers,
        clock: Clock,
        notify_url: Callable[[str], str],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.providers = providers
        self.clock = clock
        self.retry_ms = int(settings.refund_retry_seconds * 1000)
        self.query_after_ms = int(settings.payment_query_after_seconds * 1000)
        #: the URL a provider sends its refund notifications to, by provider name
        self.notify_url = notify_url

    async def send(self, refund_id: str) -> str:
        """Send one pending refund whose time has come; returns its status after (or why nothing was sent).
        Never raises for the provider's sake: a failure is recorded on the row and tried again later."""
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            claimed = await session.execute(
                update(Refund)
                .where(
                    Refund.id == refund_id,
                    Refund.status == "pending",
                    or_(Refund.next_try_ms.is_(None), Refund.next_try_ms <= now),
                )
                .values(
                    attempts=Refund.attempts + 1,
                    # If this process dies mid-call, the sweeper tries again after this.
                    next_try_ms=now + self.retry_ms,
                    updated_ms=now,
                )
                .returning(Refund)
            )
            refund = claimed.scalar_one_or_none()
            if refund is None:
                return "not_due"
            payment = await session.get(Payment, refund.payment_id) if refund.payment_id else None
        if payment is None:
            await self._record(refund_id, RefundState.SUCCEEDED, None, None, attempts=refund.attempts)
            return RefundState.SUCCEEDED.value
        provider = self.providers.find(payment.provider)
        if provider is None:
            error = f"The payment provider {payment.provider!r} is not configured on this server."
            await self._record(refund_id, RefundState.FAILED, None, error, attempts=refund.attempts)
            return "failed"
        request = RefundRequest(
            refund_id=refund.id,
            payment_id=payment.id,
            provider_ref=payment.provider_ref,
            amount=refund.amount,
            payment_amount=payment.amount,
            currency=self.settings.currency,
            reason=refund.reason or "refund",
            notify_url=self.notify_url(payment.provider),
        )
        try:
            notice = await provider.refund(request)
        except ProviderError as exc:
            log.warning("refund %s at %s failed: %s", refund_id, payment.provider, exc)
            await self._record(refund_id, RefundState.FAILED, None, str(exc), attempts=refund.attempts)
            return "failed"
        except Exception as exc:  # a bug in a provider module: keep the row, say so, try again later
            log.exception("refund %s at %s raised", refund_id, payment.provider)
            await self._record(refund_id, RefundState.FAILED, None, repr(exc), attempts=refund.attempts)
            return "failed"
        await self._record(
            refund_id, notice.state, notice.provider_ref, notice.error, attempts=refund.attempts
        )
        return notice.state.value

    async def apply(self, notice: RefundNotice) -> str:
        """What a provider told us of a refund (a notification or a query). Returns the outcome."""
        async with self.sessions() as session:
            refund = await session.get(Refund, notice.refund_id)
        if refund is None:
            return "unknown_refund"
        if refund.status == "succeeded":
            return "duplicate_event"
        if notice.amount is not None and notice.amount != refund.amount:
            log.error("refund %s: provider says %s, we asked %s", refund.id, notice.amount, refund.amount)
            return "amount_mismatch"
        if notice.state is RefundState.PROCESSING and refund.status == "processing":
            return "duplicate_event"
        await self._record(
            refund.id, notice.state, notice.provider_ref, notice.error, attempts=refund.attempts
        )
        return f"refund_{notice.state.value}"

    async def _record(
        self,
        refund_id: str,
        state: RefundState,
        provider_ref: str | None,
        error: str | None,
        *,
        attempts: int,
    ) -> None:
        now = self.clock.now_ms()
        values: dict[str, object] = {"updated_ms": now}
        if provider_ref:
            values["provider_ref"] = provider_ref[:64]
        if state is RefundState.FAILED:
            values.update(
                status="pending",
                last_error=(error or "the provider refused the refund")[:500],
                next_try_ms=now + backoff_ms(attempts, base_ms=self.retry_ms),
            )
        elif state is RefundState.PROCESSING:
            values.update(status="processing", last_error=None, next_try_ms=now + self.query_after_ms)
        else:
            values.update(status="succeeded", last_error=None, next_try_ms=None)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Refund).where(Refund.id == refund_id, Refund.status != "succeeded").values(**values)
            )

    async def retry_due(self, *, limit: int = 50) -> dict[str, int]:
        """The sweeper's pass: send pending refunds whose time has come, ask about processing ones."""
        now = self.clock.now_ms()
        counts = {"sent": 0, "queried": 0}
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(Refund.id, Refund.status)
                    .where(
                        Refund.status.in_(["pending", "processing"]),
                        or_(Refund.next_try_ms.is_(None), Refund.next_try_ms <= now),
                    )
                    .order_by(Refund.next_try_ms)
                    .limit(limit)
                )
            ).all()
        for refund_id, status in due:
            if status == "pending":
                await self.send(refund_id)
                counts["sent"] += 1
            else:
                await self._query(refund_id)
                counts["queried"] += 1
        return counts

    async def _query(self, refund_id: str) -> None:
        now = self.clock.now_ms()
        async with self.sessions() as session, session.begin():
            claimed = await session.execute(
                update(Refund)
                .where(Refund.id == refund_id, Refund.status == "processing")
                .values(next_try_ms=now + self.query_after_ms, updated_ms=now)
                .returning(Refund.payment_id)
            )
            payment_id = claimed.scalar_one_or_none()
            payment = await session.get(Payment, payment_id) if payment_id else None
        provider = self.providers.find(payment.provider) if payment else None
        if payment is None or provider is None:
            return
        try:
            notice = await provider.query_refund(refund_id, payment_id=payment.id)
        except ProviderError as exc:
            log.warning("refund %s: query failed: %s", refund_id, exc)
            return
        await self.apply(notice)
