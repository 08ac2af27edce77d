from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyRecord


async def find(session: AsyncSession, api_key_id: str, key: str) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.api_key_id == api_key_id,
            IdempotencyRecord.idempotency_key == key,
        )
    )


async def complete(
    session: AsyncSession,
    record_id: str,
    status: int,
    content_type: str,
    body: bytes,
    fernet_key_id: str,
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(
            status="completed",
            response_status=status,
            response_content_type=content_type,
            response_body=body,
            fernet_key_id=fernet_key_id,
        )
    )


async def bodies_not_under_key(
    session: AsyncSession, key_id: str, limit: int
) -> Sequence[IdempotencyRecord]:
    return (
        await session.scalars(
            select(IdempotencyRecord)
            .where(
                IdempotencyRecord.response_body.is_not(None),
                # Bodies stored before key ids were recorded have none.
                or_(
                    IdempotencyRecord.fernet_key_id.is_(None),
                    IdempotencyRecord.fernet_key_id != key_id,
                ),
            )
            .order_by(IdempotencyRecord.id)
            .limit(limit)
        )
    ).all()


async def remove(session: AsyncSession, record_id: str) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
