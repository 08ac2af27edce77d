"""Creating and revoking a key as the API and the console both do it: the change, its audit
record, and the caches of every API process told once it commits."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.api_keys import service
from app.api_keys.schemas import ApiKeyCreate
from app.api_keys.service import CreatedKey
from app.models import ApiKey
from app.runtime import Runtime


async def create(
    session: AsyncSession, request: Request, runtime: Runtime, body: ApiKeyCreate
) -> CreatedKey:
    """A marketplace key joins its marketplace: assertion keys or a mode given here change the
    marketplace, so its other keys follow at once."""
    created = await service.create_api_key(
        session,
        body.name,
        body.scope,
        body.owner,
        [(k.algorithm, k.raw()) for k in body.assertion_keys],
        body.assertion_mode,
        marketplace=body.marketplace,
        create_marketplace=runtime.settings.makes_missing_marketplaces,
        rate_limit_per_minute=body.rate_limit_per_minute,
    )
    audit.record(session, request, "api_key.create", "api_key", created.row.id)
    if created.marketplace is not None:
        runtime.authenticator.marketplace_changed(session, created.marketplace.id)
    return created


async def revoke(session: AsyncSession, request: Request, runtime: Runtime, key_id: str) -> ApiKey:
    row = await service.revoke_api_key(session, key_id)
    audit.record(session, request, "api_key.revoke", "api_key", key_id)
    runtime.authenticator.changed(session, row.key_digest)
    return row
