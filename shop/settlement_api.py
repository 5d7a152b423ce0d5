"""HTTP endpoints of settlement (SPEC §9): the commission report by period and payouts, the host's own.

Reads count against ``LIVECART_LIMIT_REPORTS_PER_HOST``, payouts against
``LIVECART_LIMIT_SETTLEMENT_PER_HOST``. A payout answers 201 when it paid, 200 when the same promoter and
instant had been paid already (the same payout, nothing paid twice), 409 ``nothing_owed`` when nothing is
payable.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.clock import parse_iso
from base.csv_export import csv_response
from base.errors import RateLimited
from base.http import read_json, read_query
from base.limits import Limit
from base.openapi import Header, Reply, doc
from shop import settlement
from shop.errors import NothingOwed, UnknownResource
from shop.leaders_api import host_caller
from shop.models import Payout
from shop.settlement_schemas import (
    CommissionLineOut,
    FormatQuery,
    PayoutDetailOut,
    PayoutIn,
    PayoutOut,
    PeriodQuery,
)

REPORT_COLUMNS = (
    "promoter_id",
    "name",
    "kind",
    "leader_id",
    *settlement.FIGURES,
)
PAYOUT_COLUMNS = ("id", "created_at", "promoter_id", "name", "kind", "phone", "amount", "rows", "up_to")
ITEM_COLUMNS = ("commission_id", "order_id", "room_id", "kind", "amount", "created_at")
CSV_HEADERS = {"Content-Disposition": Header("The CSV's file name (CSV only)", required=False)}


@doc(
    query=PeriodQuery,
    responses={
        200: Reply(
            "One line per promoter with ledger rows in the period (JSON, or CSV with ?format=csv)",
            {"application/json": [CommissionLineOut], "text/csv": None},
            CSV_HEADERS,
        )
    },
    errors=[RateLimited],
    summary="The commission report: accrued, clawed back, paid out and owed per promoter",
)
async def commission_report(request: Request) -> Response:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    query = read_query(request, PeriodQuery)
    async with st.sessions() as session:
        lines = await settlement.report(
            session,
            host.host_id,
            now_ms=st.clock.now_ms(),
            after_sale_days=st.settings.after_sale_days,
            from_ms=parse_iso(query.from_) if query.from_ else None,
            to_ms=parse_iso(query.to) if query.to else None,
        )
    if query.format == "csv":
        return csv_response("commissions.csv", REPORT_COLUMNS, lines)
    return JSONResponse(lines)


@doc(
    body=PayoutIn,
    responses={201: PayoutOut, 200: PayoutOut},
    errors=[NothingOwed, RateLimited],
    summary="Pay a promoter what is payable up to an instant (the same request twice pays once)",
)
async def create_payout(request: Request) -> JSONResponse:
    st, host = await host_caller(request, Limit.SETTLEMENT_PER_HOST)
    body = await read_json(request, PayoutIn)
    now = st.clock.now_ms()
    up_to = parse_iso(body.up_to) if body.up_to else now
    async with st.sessions() as session, session.begin():
        payout, created = await settlement.pay_out(
            session,
            host.host_id,
            body.promoter_id,
            up_to_ms=up_to,
            now_ms=now,
            after_sale_days=st.settings.after_sale_days,
        )
        who = await settlement.names(session, host.host_id, [payout.promoter_id])
    return JSONResponse(
        settlement.payout_json(payout, who.get(payout.promoter_id)), status_code=201 if created else 200
    )


@doc(
    query=FormatQuery,
    responses={
        200: Reply(
            "Your payouts, newest first (JSON, or with ?format=csv the transfer list: one line per payout)",
            {"application/json": [PayoutOut], "text/csv": None},
            CSV_HEADERS,
        )
    },
    errors=[RateLimited],
    summary="Your payouts",
)
async def list_payouts(request: Request) -> Response:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    async with st.sessions() as session:
        rows = await settlement.payouts(session, host.host_id)
        who = await settlement.names(session, host.host_id, sorted({p.promoter_id for p in rows}))
    lines = [settlement.payout_json(p, who.get(p.promoter_id)) for p in rows]
    if read_query(request, FormatQuery).format == "csv":
        phones = {key: name.phone for key, name in who.items()}
        return csv_response(
            "payouts.csv",
            PAYOUT_COLUMNS,
            ({**line, "phone": phones.get(line["promoter_id"])} for line in lines),
        )
    return JSONResponse(lines)


@doc(
    query=FormatQuery,
    responses={
        200: Reply(
            "The payout and the ledger rows it paid (JSON, or the rows as CSV with ?format=csv)",
            {"application/json": PayoutDetailOut, "text/csv": None},
            CSV_HEADERS,
        )
    },
    errors=[UnknownResource, RateLimited],
    summary="One of your payouts, with the ledger rows it paid",
)
async def get_payout(request: Request) -> Response:
    st, host = await host_caller(request, Limit.REPORTS_PER_HOST)
    async with st.sessions() as session:
        payout = await session.get(Payout, request.path_params["payout"])
        if payout is None or payout.host_id != host.host_id:
            raise UnknownResource("No such payout among yours.")
        items = await settlement.payout_items(session, payout.id)
        who = await settlement.names(session, host.host_id, [payout.promoter_id])
    if read_query(request, FormatQuery).format == "csv":
        return csv_response(f"payout-{payout.id}.csv", ITEM_COLUMNS, items)
    return JSONResponse({**settlement.payout_json(payout, who.get(payout.promoter_id)), "items": items})


routes = [
    Route("/api/commissions", commission_report, methods=["GET"]),
    Route("/api/payouts", create_payout, methods=["POST"]),
    Route("/api/payouts", list_payouts, methods=["GET"]),
    Route("/api/payouts/{payout:id}", get_payout, methods=["GET"]),
]
