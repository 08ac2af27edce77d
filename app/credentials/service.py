"""Exchange credentials: encrypted at rest, masked in every view, decrypted in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.crypto import Keyring
from app.core.errors import NotFound
from app.credentials import repository
from app.events.types import EventType
from app.models import ExchangeCredential, Subscription
from app.subscriptions.events import status_changed

if TYPE_CHECKING:  # only workers hold clients: the API process never loads python-binance
    from app.integrations.binance.clients import BinanceClients


@dataclass(frozen=True)
class DecryptedCredential:
    """Plaintext keys for the moment of an exchange call; repr never shows them."""

    id: str
    version: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    testnet: bool


async def store(
    session: AsyncSession,
    keyring: Keyring,
    user_id: str,
    exchange: str,
    api_key: str,
    api_secret: str,
    testnet: bool,
) -> tuple[ExchangeCredential, bool]:
    """Create or replace; returns the row and whether it was created."""
    row = await repository.find(session, user_id, exchange, testnet)
    created = row is None
    if row is None:
        row = ExchangeCredential(user_id=user_id, exchange=exchange, testnet=testnet)
        session.add(row)
    row.api_key_ciphertext = keyring.encrypt(api_key)
    row.api_secret_ciphertext = keyring.encrypt(api_secret)
    row.api_key_last4 = api_key[-4:]
    row.fernet_key_id = keyring.primary_key_id
    await session.flush()
    return row, created


async def delete(session: AsyncSession, user_id: str, exchange: str, testnet: bool | None) -> int:
    rows = [
        row
        for row in await repository.of_user(session, user_id, exchange)
        if testnet is None or row.testnet == testnet
    ]
    if not rows:
        raise NotFound("credentials")
    for sub in await repository.pause_subscriptions_using(
        session, [row.id for row in rows], "exchange credentials were deleted"
    ):
        await status_changed(session, sub)
    for row in rows:
        await session.delete(row)
    await session.flush()
    return len(rows)


async def credentials_invalid(session: AsyncSession, sub_id: str, message: str) -> None:
    """The exchange refused the key subscription `sub_id` trades with (`message`): every
    active subscription using it pauses until the renter stores a good one, each told."""
    sub = await session.get(Subscription, sub_id)
    if sub is None or sub.credential_id is None:
        return
    credential_id = sub.credential_id
    reason = f"the exchange refused the stored credentials: {message}"
    for paused in await repository.pause_subscriptions_using(session, [credential_id], reason):
        await status_changed(
            session, paused, EventType.credentials_invalid, credential_id=credential_id
        )


async def decrypt_for_execution(
    session: AsyncSession, keyring: Keyring, credential_id: str
) -> DecryptedCredential:
    """The only place plaintext credentials exist: called by order execution, then dropped."""
    row = await session.get(ExchangeCredential, credential_id)
    if row is None:
        raise NotFound("credentials")
    return DecryptedCredential(
        id=row.id,
        version=row.key_version,
        api_key=keyring.decrypt(row.api_key_ciphertext),
        api_secret=keyring.decrypt(row.api_secret_ciphertext),
        testnet=row.testnet,
    )


async def rotate_all(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-encrypt every row not yet under the newest key; returns how many were rotated."""
    rotated = 0
    while rows := await repository.not_under_key(session, keyring.primary_key_id, batch):
        for row in rows:
            row.api_key_ciphertext = keyring.rotate(row.api_key_ciphertext)
            row.api_secret_ciphertext = keyring.rotate(row.api_secret_ciphertext)
            row.fernet_key_id = keyring.primary_key_id
        await session.flush()
        rotated += len(rows)
    return rotated


async def close_stale_clients(session: AsyncSession, clients: BinanceClients) -> None:
    """Close the cached exchange clients (each holds a plaintext key) of credentials deleted,
    erased or replaced since they were opened, and of those idle too long. Rows change in
    the API process and clients live in workers, so the database is the one they both see."""
    await clients.prune(lambda ids: repository.key_versions(session, ids))
