"""API keys' rows."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.reads import RowReader, Rows
from app.models import ApiKey

# What authenticating a request needs of its key, read as a row (app/core/reads.py): with many
# keys, each key's cache entry expires between two of its requests, so this read runs on most
# requests, and through a session it was half of a request's CPU (bench/gateway.py).
_CALLER_COLUMNS: list[Any] = [
    ApiKey.id,
    ApiKey.key_digest,
    ApiKey.scope,
    ApiKey.owner_user_id,
    ApiKey.prefix,
    ApiKey.marketplace_id,
    ApiKey.rate_limit_per_minute,
    ApiKey.revoked_at,
]
_CALLER_VIEW = Rows(
    select(ApiKey)
    .where(ApiKey.key_digest == bindparam("digest"))
    .with_only_columns(*_CALLER_COLUMNS)
)
# Keys whose last use one UPDATE records: two bind parameters each, well under any database's
# limit on parameters per statement.
_LAST_USED_CHUNK = 400


async def caller_view(reader: RowReader, digest: str) -> dict[str, Any] | None:
    return await _CALLER_VIEW.one_or_none(reader, digest=digest)


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def revoked_among(session: AsyncSession, key_ids: Collection[str]) -> set[str]:
    """Which of these keys are revoked."""
    rows = await session.scalars(
        select(ApiKey.id).where(ApiKey.id.in_(key_ids), ApiKey.revoked_at.is_not(None))
    )
    return set(rows.all())


async def page(session: AsyncSession, after_id: str | None, limit: int) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id).limit(limit)
    if after_id:
        query = query.where(ApiKey.id > after_id)
    return (await session.scalars(query)).all()


async def set_last_used(session: AsyncSession, last_used: Mapping[str, datetime]) -> None:
    """One statement per chunk of keys, not one per key: a process serving many keys records
    each of them every few seconds."""
    items = list(last_used.items())
    for start in range(0, len(items), _LAST_USED_CHUNK):
        chunk = dict(items[start : start + _LAST_USED_CHUNK])
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id.in_(chunk))
            .values(last_used_at=case(chunk, value=ApiKey.id))
            .execution_options(synchronize_session=False)
        )
