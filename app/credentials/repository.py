"""The SQL of exchange credentials: lookups, key-rotation batches, and pausing the
subscriptions that use a deleted credential."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ExchangeCredential, Subscription


async def find(
    session: AsyncSession, user_id: str, exchange: str, testnet: bool
) -> ExchangeCredential | None:
    return await session.scalar(
        select(ExchangeCredential).where(
            ExchangeCredential.user_id == user_id,
            ExchangeCredential.exchange == exchange,
            ExchangeCredential.testnet == testnet,
        )
    )


async def of_user(
    session: AsyncSession, user_id: str, exchange: str | None = None
) -> Sequence[ExchangeCredential]:
    query = select(ExchangeCredential).where(ExchangeCredential.user_id == user_id)
    if exchange is not None:
        query = query.where(ExchangeCredential.exchange == exchange)
    return (await session.scalars(query.order_by(ExchangeCredential.id))).all()


async def key_versions(session: AsyncSession, ids: Collection[str]) -> dict[str, str]:
    """The current key version of each of `ids` still stored."""
    rows = await session.scalars(select(ExchangeCredential).where(ExchangeCredential.id.in_(ids)))
    return {row.id: row.key_version for row in rows}


async def not_under_key(
    session: AsyncSession, key_id: str, limit: int
) -> Sequence[ExchangeCredential]:
    return (
        await session.scalars(
            select(ExchangeCredential)
            .where(ExchangeCredential.fernet_key_id != key_id)
            .order_by(ExchangeCredential.id)
            .limit(limit)
        )
    ).all()


async def pause_subscriptions_using(
    session: AsyncSession, credential_ids: Sequence[str], reason: str
) -> Sequence[Subscription]:
    """The active subscriptions trading with these credentials, now paused with `reason`."""
    subs = (
        await session.scalars(
            select(Subscription)
            .where(Subscription.credential_id.in_(credential_ids), Subscription.status == "active")
            .with_for_update()
        )
    ).all()
    for sub in subs:
        sub.status, sub.status_reason = "paused", reason
    return subs
