"""Idempotency records: claims and completion for the middleware, purge and key rotation.

An in-progress record is held under a lease (IDEMPOTENCY_LEASE_S): a process that dies
mid-request leaves a record that any later copy takes over once the lease has run out, instead
of a key that answers 409 for a day. Completed, a record lives IDEMPOTENCY_TTL_HOURS; beat
deletes expired records every hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import session_scope
from app.core.settings import Settings
from app.idempotency import repository

PURGE_BATCH = 1000


async def claim(
    session: AsyncSession,
    settings: Settings,
    api_key_id: str,
    key: str,
    fingerprint: str,
    now: datetime,
) -> str:
    """Make this copy the one that runs the request, for one lease; returns the record id.

    IntegrityError if another copy holds the key.
    """
    lease_until = now + timedelta(seconds=settings.idempotency_lease_s)
    return await repository.claim(session, api_key_id, key, fingerprint, lease_until)


async def take_over(
    session: AsyncSession,
    settings: Settings,
    expired_id: str,
    api_key_id: str,
    key: str,
    fingerprint: str,
    now: datetime,
) -> str | None:
    """Replace an expired record by this copy's claim, in the caller's transaction.

    Of the copies that find the same expired record, only the one whose DELETE removes it
    claims the key; the others get None and wait for it like for any first copy. The new
    record has a new id, so the old holder, if it was only slow, can neither complete nor
    release it.
    """
    if not await repository.remove_expired(session, expired_id, now):
        return None
    return await claim(session, settings, api_key_id, key, fingerprint, now)


async def complete(
    session: AsyncSession,
    settings: Settings,
    record_id: str,
    status: int,
    content_type: str,
    sealed_body: bytes,
    fernet_key_id: str,
    now: datetime,
) -> bool:
    """Store the response; the record now lives its full lifetime. False if it was taken
    over (the lease ran out): the response stored is the new holder's."""
    return await repository.complete(
        session,
        record_id,
        status,
        content_type,
        sealed_body,
        fernet_key_id,
        expires_at=now + timedelta(hours=settings.idempotency_ttl_hours),
    )


async def purge_expired(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, batch: int = PURGE_BATCH
) -> int:
    """Delete every record expired before `now`, one short transaction per batch."""
    purged = 0
    while True:
        async with session_scope(sessionmaker) as session:
            deleted = await repository.delete_expired(session, now, batch)
        purged += deleted
        if deleted < batch:
            return purged


async def rotate_bodies(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-encrypt every stored response not yet under the newest key; returns how many."""
    rotated = 0
    while rows := await repository.bodies_not_under_key(session, keyring.primary_key_id, batch):
        for row in rows:
            assert row.response_body is not None
            row.response_body = keyring.rotate(row.response_body.decode()).encode()
            row.fernet_key_id = keyring.primary_key_id
        await session.flush()
        rotated += len(rows)
    return rotated
