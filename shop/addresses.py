"""Shipping addresses (SPEC §10): what a buyer gives at checkout, checked, kept on the order and offered
again at their next checkout with the same host (``shipping_addresses``, one per customer).

An address is a recipient's name, their phone (normalised to E.164 like every phone here), a region
(省市区, e.g. ``广东省 深圳市 南山区``) and a street line. A leader sees it masked (``mask``): the
recipient's family name, the phone's last four digits, the region alone.
"""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncSession

from base.db import upsert
from base.fields import OneLine, RequestBody
from identity.phones import normalise
from shop.models import ShippingAddress
from shop.orders.order import Address


class AddressIn(RequestBody):
    """Where the order ships: the recipient's name and phone, the region (省市区) and the street line"""

    name: Annotated[str, OneLine(40)]
    phone: Annotated[str, OneLine(32)]
    region: Annotated[str, OneLine(100)]
    line: Annotated[str, OneLine(200)]

    def checked(self, *, default_region: str) -> Address:
        """The address with its phone in E.164 (``InvalidPhone``, a 422, when it is not a phone)."""
        return Address(
            self.name, normalise(self.phone, default_region=default_region), self.region, self.line
        )


def mask(a: Address) -> Address:
    """What a leader may see of a buyer's address: enough to recognise an order, not to find a person."""
    phone = "****" + a.phone[-4:] if len(a.phone) > 4 else "****"
    return Address(a.name[:1] + "*" * max(len(a.name) - 1, 1), phone, a.region, "")


async def remember(session: AsyncSession, customer_id: str, a: Address, *, now_ms: int) -> None:
    await session.execute(
        upsert(
            session,
            ShippingAddress,
            {
                "customer_id": customer_id,
                "name": a.name,
                "phone": a.phone,
                "region": a.region,
                "line": a.line,
                "updated_ms": now_ms,
            },
            keys=["customer_id"],
        )
    )


async def last(session: AsyncSession, customer_id: str) -> Address | None:
    row = await session.get(ShippingAddress, customer_id)
    return Address(row.name, row.phone, row.region, row.line) if row else None
