"""API keys' rows and their assertion public keys."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey, ApiKeyAssertionKey


async def get_by_digest(session: AsyncSession, digest: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.key_digest == digest))


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def page(session: AsyncSession, after_id: str | None, limit: int) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id).limit(limit)
    if after_id:
        query = query.where(ApiKey.id > after_id)
    return (await session.scalars(query)).all()


async def set_last_used(session: AsyncSession, last_used: Mapping[str, datetime]) -> None:
    for key_id, at in last_used.items():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))


async def assertion_keys(
    session: AsyncSession, api_key_ids: Collection[str]
) -> dict[str, list[ApiKeyAssertionKey]]:
    """The assertion public keys of these API keys, oldest first."""
    if not api_key_ids:
        return {}
    rows = await session.scalars(
        select(ApiKeyAssertionKey)
        .where(ApiKeyAssertionKey.api_key_id.in_(api_key_ids))
        .order_by(ApiKeyAssertionKey.id)
    )
    by_key: dict[str, list[ApiKeyAssertionKey]] = defaultdict(list)
    for row in rows:
        by_key[row.api_key_id].append(row)
    return by_key


async def remove_assertion_key(session: AsyncSession, api_key_id: str, key_id: str) -> None:
    await session.execute(
        delete(ApiKeyAssertionKey).where(
            ApiKeyAssertionKey.api_key_id == api_key_id, ApiKeyAssertionKey.id == key_id
        )
    )


async def unsigned_marketplace_keys(session: AsyncSession) -> Sequence[ApiKey]:
    """The live marketplace keys whose assertion mode is off: they act for any principal."""
    rows = await session.scalars(
        select(ApiKey)
        .where(
            ApiKey.scope == "marketplace",
            ApiKey.assertion_mode == "off",
            ApiKey.revoked_at.is_(None),
        )
        .order_by(ApiKey.id)
    )
    return rows.all()
