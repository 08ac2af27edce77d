from __future__ import annotations

from sqlalchemy import delete, select, update
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
    session: AsyncSession, record_id: str, status: int, content_type: str, body: bytes
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(
            status="completed",
            response_status=status,
            response_content_type=content_type,
            response_body=body,
        )
    )


async def remove(session: AsyncSession, record_id: str) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
