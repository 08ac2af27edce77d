from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.authenticator import Scope
from app.core.api_keys import generate_api_key
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable
from app.models import ApiKey
from app.users import repository as users


@dataclass(frozen=True)
class CreatedKey:
    row: ApiKey
    plaintext: str


async def create_api_key(
    session: AsyncSession, name: str, scope: Scope, owner_user_id: str | None = None
) -> CreatedKey:
    """A new key; admin and developer keys act as a user (a new developer if none is named)."""
    if owner_user_id is not None:
        if await users.get(session, owner_user_id) is None:
            raise Unprocessable(
                "owner is not a known user",
                details=[{"loc": "body.owner", "message": "unknown user id"}],
            )
    elif scope is not Scope.marketplace:
        owner_user_id = (await users.create_developer(session, name)).id
    new = generate_api_key()
    row = ApiKey(
        name=name,
        scope=scope.value,
        prefix=new.prefix,
        key_digest=new.digest,
        owner_user_id=owner_user_id,
    )
    session.add(row)
    await session.flush()
    return CreatedKey(row=row, plaintext=new.plaintext)


async def revoke_api_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await repository.get(session, key_id)
    if row is None:
        raise NotFound("api key")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row
