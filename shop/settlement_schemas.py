"""Request bodies and response shapes of leaders, the shop's rate and settlement (SPEC §9)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from base.fields import DisplayName, Identifier, Instant, RequestBody

Rate = int  # basis points, 0..10000
RATE = Field(default=None, ge=0, le=10_000, description="basis points of the order amount (1000 = 10 %)")


def _exactly_one_who(schema: dict[str, Any]) -> None:
    """The JSON Schema of :meth:`LeaderIn.one_who`: ``customer_id`` or ``phone``, given and not null, and
    not the other one at all."""
    branches = []
    for name, other in (("customer_id", "phone"), ("phone", "customer_id")):
        (given,) = [s for s in schema["properties"][name]["anyOf"] if s != {"type": "null"}]
        branches.append({"required": [name], "properties": {name: given}, "not": {"required": [other]}})
    schema["oneOf"] = branches


class LeaderIn(RequestBody):
    """Who: one of your customers by ``customer_id``, or by ``phone`` (made a customer if new)."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_who)

    customer_id: Identifier | None = None
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    name: DisplayName | None = None
    commission_bps: int | None = RATE

    @model_validator(mode="after")
    def one_who(self) -> LeaderIn:
        given = {"customer_id", "phone"} & self.model_fields_set
        if len(given) != 1 or getattr(self, given.pop()) is None:
            raise ValueError("Give customer_id or phone (one of them, not null).")
        return self


class LeaderPatchIn(RequestBody):
    """What to change (at least one); ``commission_bps: null`` goes back to the shop's rate."""

    name: DisplayName | None = None
    commission_bps: int | None = RATE
    suspended: bool | None = None

    @model_validator(mode="after")
    def something(self) -> LeaderPatchIn:
        if not self.model_fields_set:
            raise ValueError("Give name, commission_bps and/or suspended.")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name: a leader keeps a name.")
        if "suspended" in self.model_fields_set and self.suspended is None:
            raise ValueError("suspended: true or false.")
        return self


class Figures(BaseModel):
    orders_paid: int
    gmv: int
    accrued: int
    clawed_back: int
    net: int
    paid_out: int
    #: net - paid_out
    owed: int
    #: The part of ``owed`` a payout now would pay (orders past their after-sale window).
    payable: int


class LeaderOut(Figures):
    id: str
    customer_id: str
    name: str
    phone_masked: str | None
    code: str
    #: The leader's link: the host's live show, else the next scheduled one.
    url: str
    qr_url: str
    #: ``None``: the shop's rate.
    commission_bps: int | None
    suspended: bool
    created_at: str
    #: Customers bound to the leader now.
    customers: int


ProviderName = Literal["wechat", "alipay", "stripe", "dev"]


class ShopOut(BaseModel):
    id: str
    name: str
    #: The shop's own rate (``None``: the server's default below).
    commission_bps: int | None
    default_commission_bps: int
    binding_days: float
    after_sale_days: float
    #: The providers the shop chose, best first (``None``: every one this server has).
    payment_providers: list[str] | None
    #: The providers buyers are offered now: the shop's choice among those this server has.
    offered_providers: list[str]
    #: Every provider this server is configured for.
    server_providers: list[str]
    #: Days a show's replay is kept after it ends (``None``: the server's default below; 0: not kept).
    replay_keep_days: int | None
    default_replay_keep_days: int
    #: Hours a show's open cards stay on sale after it ends, for its replay's viewers (0: closed at the end).
    replay_sales_hours: int


class ShopPatchIn(RequestBody):
    """What to change (at least one)"""

    #: ``null``: the server's default.
    commission_bps: int | None = Field(
        default=None, ge=0, le=10_000, description="basis points (1000 = 10 %); null: default"
    )
    #: The payment providers to offer buyers, best first; ``null``: every one this server has.
    payment_providers: list[ProviderName] | None = Field(default=None, min_length=1, max_length=4)
    #: Days a show's replay is kept after it ends; 0: deleted when it ends; ``null``: the server's default.
    replay_keep_days: int | None = Field(
        default=None, ge=0, le=3650, description="days; 0: deleted when the show ends; null: default"
    )
    #: Hours a show's open cards stay on sale after it ends (回放带货); 0: ending a show closes them.
    replay_sales_hours: int | None = Field(default=None, ge=0, le=720, description="hours (0: none)")

    @model_validator(mode="after")
    def something(self) -> ShopPatchIn:
        if not self.model_fields_set:
            raise ValueError(
                "Give commission_bps, payment_providers, replay_keep_days and/or replay_sales_hours."
            )
        if "replay_sales_hours" in self.model_fields_set and self.replay_sales_hours is None:
            raise ValueError("replay_sales_hours: a number of hours (0: none).")
        chosen = self.payment_providers or []
        if len(set(chosen)) != len(chosen):
            raise ValueError("payment_providers: each provider once.")
        return self


class PeriodQuery(BaseModel):
    """The query of ``GET /api/commissions``: ledger rows made in ``[from, to)``."""

    model_config = {"populate_by_name": True}
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None
    format: str | None = Field(default=None, description="csv: a CSV file; anything else: JSON")


class FormatQuery(BaseModel):
    format: str | None = Field(default=None, description="csv: a CSV file; anything else: JSON")


class CommissionLineOut(Figures):
    promoter_id: str
    name: str
    kind: Literal["leader", "customer", "guest"]
    leader_id: str | None


class PayoutIn(RequestBody):
    promoter_id: Identifier
    #: Pay the rows made up to this instant (default: now); the same promoter and instant is one payout.
    up_to: Instant | None = None


class PayoutOut(BaseModel):
    id: str
    promoter_id: str
    name: str
    kind: Literal["leader", "customer", "guest"]
    amount: int
    rows: int
    up_to: str
    created_at: str


class PayoutItemOut(BaseModel):
    commission_id: str
    order_id: str
    room_id: str
    kind: Literal["accrual", "clawback"]
    amount: int
    created_at: str


class PayoutDetailOut(PayoutOut):
    items: list[PayoutItemOut]
