"""Marketplaces' rows and the public keys that verify their renters' principal assertions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey, Marketplace, MarketplaceAssertionKey


async def get(session: AsyncSession, marketplace_id: str) -> Marketplace | None:
    return await session.get(Marketplace, marketplace_id)


async def get_by_name(session: AsyncSession, name: str) -> Marketplace | None:
    return await session.scalar(select(Marketplace).where(Marketplace.name == name))


async def get_or_create(session: AsyncSession, name: str) -> Marketplace:
    """The marketplace by its name, made if there is none; safe when two creations race."""
    found = await get_by_name(session, name)
    if found is not None:
        return found
    try:
        async with session.begin_nested():
            made = Marketplace(name=name, assertion_mode="off")
            session.add(made)
        return made
    except IntegrityError:
        raced = await get_by_name(session, name)
        assert raced is not None
        return raced


async def by_ids(session: AsyncSession, ids: Collection[str]) -> dict[str, Marketplace]:
    if not ids:
        return {}
    rows = await session.scalars(select(Marketplace).where(Marketplace.id.in_(ids)))
    return {row.id: row for row in rows}


async def page(session: AsyncSession, after_id: str | None, limit: int) -> Sequence[Marketplace]:
    query = select(Marketplace).order_by(Marketplace.id).limit(limit)
    if after_id:
        query = query.where(Marketplace.id > after_id)
    return (await session.scalars(query)).all()


async def assertion_keys(
    session: AsyncSession, marketplace_ids: Collection[str]
) -> dict[str, list[MarketplaceAssertionKey]]:
    """The assertion public keys of these marketplaces, oldest first."""
    if not marketplace_ids:
        return {}
    rows = await session.scalars(
        select(MarketplaceAssertionKey)
        .where(MarketplaceAssertionKey.marketplace_id.in_(marketplace_ids))
        .order_by(MarketplaceAssertionKey.id)
    )
    by_marketplace: dict[str, list[MarketplaceAssertionKey]] = defaultdict(list)
    for row in rows:
        by_marketplace[row.marketplace_id].append(row)
    return by_marketplace


async def remove_assertion_key(session: AsyncSession, marketplace_id: str, key_id: str) -> None:
    await session.execute(
        delete(MarketplaceAssertionKey).where(
            MarketplaceAssertionKey.marketplace_id == marketplace_id,
            MarketplaceAssertionKey.id == key_id,
        )
    )


async def unsigned_in_use(session: AsyncSession) -> Sequence[Marketplace]:
    """The marketplaces whose assertion mode is off and that have a live key: whoever holds
    one acts for any of their principals."""
    live_key = exists().where(ApiKey.marketplace_id == Marketplace.id, ApiKey.revoked_at.is_(None))
    rows = await session.scalars(
        select(Marketplace)
        .where(Marketplace.assertion_mode == "off", live_key)
        .order_by(Marketplace.name)
    )
    return rows.all()
