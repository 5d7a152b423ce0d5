"""A host's customers in SQL: found or made by phone or WeChat ``openid`` (the same person at the same host
is always the same customer, even when two first sign-ins race). Takes a session, never commits."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from base.db import insert_ignoring_conflicts
from base.ids import new_id
from identity.models import Customer
from identity.wechat import WeChatUser


async def upsert(
    session: AsyncSession,
    host_id: str,
    *,
    now_ms: int,
    phone: str | None = None,
    wechat: WeChatUser | None = None,
    signed_in: bool = True,
) -> str:
    """The id of the customer with this phone (or this WeChat ``openid``) at this host, made if new. A
    WeChat ``unionid`` is kept; ``signed_in`` records this as their latest sign-in."""
    assert (phone is None) != (wechat is None)
    if wechat is not None:
        who = Customer.wechat_openid == wechat.openid
        values: dict[str, object] = {"wechat_openid": wechat.openid, "wechat_unionid": wechat.unionid}
    else:
        who = Customer.phone == phone
        values = {"phone": phone}
    await session.execute(
        insert_ignoring_conflicts(session, Customer).values(
            id=new_id("cus"), host_id=host_id, created_ms=now_ms, last_sign_in_ms=now_ms, **values
        )
    )
    customer_id = str(
        (await session.execute(select(Customer.id).where(Customer.host_id == host_id, who))).scalar_one()
    )
    changes: dict[str, object] = {"last_sign_in_ms": now_ms} if signed_in else {}
    if wechat is not None and wechat.unionid is not None:
        changes["wechat_unionid"] = wechat.unionid
    if changes:
        await session.execute(update(Customer).where(Customer.id == customer_id).values(**changes))
    return customer_id
