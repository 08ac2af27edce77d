"""Stored idempotent responses outside the request path: key rotation."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import Keyring
from app.idempotency import repository


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
