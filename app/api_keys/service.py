"""API key rules: creation (the plaintext shown once, in its marketplace), revocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.schemas import Scope
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound
from app.core.key_tokens import generate_api_key
from app.core.principal_assertions import Algorithm, AssertionMode
from app.marketplaces import service as marketplaces
from app.marketplaces.service import DEFAULT_MARKETPLACE
from app.models import ApiKey, Marketplace, MarketplaceAssertionKey
from app.users import repository as users
from app.webhooks import service as webhooks


@dataclass(frozen=True)
class CreatedKey:
    row: ApiKey
    plaintext: str
    marketplace: Marketplace | None = None
    assertion_keys: list[MarketplaceAssertionKey] = field(default_factory=list)


async def create_api_key(
    session: AsyncSession,
    name: str,
    scope: Scope,
    owner_user_id: str | None = None,
    assertion_keys: Sequence[tuple[Algorithm, bytes]] = (),
    assertion_mode: AssertionMode | None = None,
    *,
    marketplace: str | None = None,
    create_marketplace: bool = False,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    """A new key; admin and developer keys act as a user (a new developer if none is named),
    a marketplace key for the renters of its marketplace (DEFAULT_MARKETPLACE if none is
    named; made when missing if `create_marketplace`). Assertion keys and a mode given here are
    the marketplace's: they apply to its other keys too."""
    if owner_user_id is not None:
        if await users.get(session, owner_user_id) is None:
            raise marketplaces.invalid("body.owner", "owner is not a known user")
    elif scope is not Scope.marketplace:
        owner_user_id = (await users.create_developer(session, name)).id
    if scope is not Scope.marketplace:
        if assertion_keys or assertion_mode not in (None, AssertionMode.off):
            raise marketplaces.invalid(
                "body.assertion_keys", "only a marketplace key acts for principals"
            )
        if marketplace is not None:
            raise marketplaces.invalid("body.marketplace", "only a marketplace key has one")
        return await _insert(session, name, scope, owner_user_id, None, rate_limit_per_minute)
    home = await marketplaces.resolve(
        session, marketplace or DEFAULT_MARKETPLACE, create_missing=create_marketplace
    )
    keys = await marketplaces.add_assertion_keys(session, home, assertion_keys, assertion_mode)
    created = await _insert(session, name, scope, owner_user_id, home.id, rate_limit_per_minute)
    return CreatedKey(created.row, created.plaintext, home, keys)


async def _insert(
    session: AsyncSession,
    name: str,
    scope: Scope,
    owner_user_id: str | None,
    marketplace_id: str | None,
    rate_limit_per_minute: int | None,
) -> CreatedKey:
    new = generate_api_key()
    row = ApiKey(
        name=name,
        scope=scope.value,
        prefix=new.prefix,
        key_digest=new.digest,
        owner_user_id=owner_user_id,
        marketplace_id=marketplace_id,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    session.add(row)
    await session.flush()
    return CreatedKey(row=row, plaintext=new.plaintext)


async def _get(session: AsyncSession, key_id: str) -> ApiKey:
    row = await repository.get(session, key_id)
    if row is None:
        raise NotFound("api key")
    return row


async def revoke_api_key(session: AsyncSession, key_id: str) -> ApiKey:
    """Revoke the key, and with it the webhook endpoints it registered."""
    row = await _get(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await webhooks.disable_registered_by(session, row.id, row.revoked_at)
        await session.flush()
    return row


async def marketplace_of_key(session: AsyncSession, key_id: str) -> Marketplace:
    """The marketplace whose assertion keys and mode the key's routes change."""
    row = await _get(session, key_id)
    if row.marketplace_id is None:
        raise Conflict("only a marketplace key carries assertion keys")
    return await marketplaces.get(session, row.marketplace_id)
