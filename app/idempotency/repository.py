"""The SQL of idempotency records: claim, complete, remove an expired one, purge, and the
batches re-encrypted on key rotation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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


async def claim(
    session: AsyncSession, api_key_id: str, key: str, fingerprint: str, expires_at: datetime
) -> str:
    """Insert the in-progress record of a key and return its id.

    Raises IntegrityError at flush when another copy holds the key: the unique constraint,
    not a process, decides which copy runs. The id is new on every claim, so it is also the
    holder's fencing token: after a takeover, the old holder's id matches no row.
    """
    record = IdempotencyRecord(
        api_key_id=api_key_id,
        idempotency_key=key,
        request_fingerprint=fingerprint,
        status="in_progress",
        expires_at=expires_at,
    )
    session.add(record)
    await session.flush()
    return record.id


async def remove_expired(session: AsyncSession, record_id: str, now: datetime) -> bool:
    """Delete one record if it has expired; only one of the copies racing for it gets True.

    The condition is evaluated on the row as committed (a DELETE reads the latest version
    and locks it, at any isolation level), so a record renewed or replaced meanwhile stays.
    """
    result = await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == record_id, IdempotencyRecord.expires_at < now
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def complete(
    session: AsyncSession,
    record_id: str,
    status: int,
    content_type: str,
    body: bytes,
    fernet_key_id: str,
    *,
    expires_at: datetime,
) -> bool:
    """Store the response in the holder's record; False if the record is no longer its own."""
    result = await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id, IdempotencyRecord.status == "in_progress")
        .values(
            status="completed",
            response_status=status,
            response_content_type=content_type,
            response_body=body,
            fernet_key_id=fernet_key_id,
            expires_at=expires_at,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


async def delete_expired(session: AsyncSession, now: datetime, limit: int) -> int:
    """Delete up to `limit` records expired before `now`; returns how many went.

    Ids first, then a DELETE by id: SQLite has no DELETE ... LIMIT, and a short statement
    keeps the lock short on a table every write request touches.
    """
    ids = (
        await session.scalars(
            select(IdempotencyRecord.id)
            .where(IdempotencyRecord.expires_at < now)
            .order_by(IdempotencyRecord.expires_at)
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    result = await session.execute(
        # The expiry again: a late holder may have completed its record since the SELECT,
        # which gave it a lifetime from now.
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id.in_(ids), IdempotencyRecord.expires_at < now
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def remove(session: AsyncSession, record_id: str) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
