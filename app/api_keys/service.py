"""API key rules: creation (the plaintext shown once), revocation, assertion keys and mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys import repository
from app.api_keys.schemas import Scope
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.key_tokens import generate_api_key
from app.core.principal_assertions import Algorithm, AssertionMode
from app.models import ApiKey, ApiKeyAssertionKey
from app.users import repository as users


@dataclass(frozen=True)
class CreatedKey:
    row: ApiKey
    plaintext: str
    assertion_keys: list[ApiKeyAssertionKey] = field(default_factory=list)


def _invalid(loc: str, message: str) -> Unprocessable:
    return Unprocessable(message, details=[{"loc": loc, "message": message}])


async def create_api_key(
    session: AsyncSession,
    name: str,
    scope: Scope,
    owner_user_id: str | None = None,
    assertion_keys: Sequence[tuple[Algorithm, bytes]] = (),
    assertion_mode: AssertionMode | None = None,
    *,
    rate_limit_per_minute: int | None = None,
) -> CreatedKey:
    """A new key; admin and developer keys act as a user (a new developer if none is named).

    A marketplace key with assertion keys requires signed principal assertions unless told
    otherwise: a key meant to be protected should not start out unprotected.
    """
    if owner_user_id is not None:
        if await users.get(session, owner_user_id) is None:
            raise _invalid("body.owner", "owner is not a known user")
    elif scope is not Scope.marketplace:
        owner_user_id = (await users.create_developer(session, name)).id
    if assertion_mode is None:
        assertion_mode = AssertionMode.required if assertion_keys else AssertionMode.off
    if (assertion_keys or assertion_mode is not AssertionMode.off) and (
        scope is not Scope.marketplace
    ):
        raise _invalid("body.assertion_keys", "only a marketplace key acts for principals")
    if assertion_mode is not AssertionMode.off and not assertion_keys:
        raise _invalid("body.assertion_mode", "a mode other than off needs assertion keys")
    if len({raw for _, raw in assertion_keys}) != len(assertion_keys):
        raise _invalid("body.assertion_keys", "the same public key is given twice")
    new = generate_api_key()
    row = ApiKey(
        name=name,
        scope=scope.value,
        prefix=new.prefix,
        key_digest=new.digest,
        owner_user_id=owner_user_id,
        assertion_mode=assertion_mode.value,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    session.add(row)
    await session.flush()
    keys = [
        ApiKeyAssertionKey(api_key_id=row.id, algorithm=algorithm.value, public_key=raw)
        for algorithm, raw in assertion_keys
    ]
    session.add_all(keys)
    await session.flush()
    return CreatedKey(row=row, plaintext=new.plaintext, assertion_keys=keys)


async def _get(session: AsyncSession, key_id: str) -> ApiKey:
    row = await repository.get(session, key_id)
    if row is None:
        raise NotFound("api key")
    return row


async def revoke_api_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await _get(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def _marketplace_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await _get(session, key_id)
    if row.scope != Scope.marketplace.value:
        raise Conflict("only a marketplace key carries assertion keys")
    return row


async def add_assertion_key(
    session: AsyncSession, key_id: str, algorithm: Algorithm, raw: bytes
) -> tuple[ApiKey, ApiKeyAssertionKey]:
    """The first half of a rotation: both keys verify until the old one is removed."""
    row = await _marketplace_key(session, key_id)
    existing = (await repository.assertion_keys(session, [key_id])).get(key_id, [])
    if any(k.public_key == raw for k in existing):
        raise Conflict("this public key is already on the key")
    added = ApiKeyAssertionKey(api_key_id=key_id, algorithm=algorithm.value, public_key=raw)
    session.add(added)
    await session.flush()
    return row, added


async def remove_assertion_key(session: AsyncSession, key_id: str, assertion_key_id: str) -> ApiKey:
    row = await _marketplace_key(session, key_id)
    existing = (await repository.assertion_keys(session, [key_id])).get(key_id, [])
    if not any(k.id == assertion_key_id for k in existing):
        raise NotFound("assertion key")
    if len(existing) == 1 and row.assertion_mode != AssertionMode.off.value:
        # Otherwise every renter request would fail until a key is added again.
        raise Conflict("the last assertion key stays while the assertion mode is not off")
    await repository.remove_assertion_key(session, key_id, assertion_key_id)
    return row


async def set_assertion_mode(
    session: AsyncSession, key_id: str, mode: AssertionMode
) -> tuple[ApiKey, list[ApiKeyAssertionKey]]:
    row = await _marketplace_key(session, key_id)
    keys = (await repository.assertion_keys(session, [key_id])).get(key_id, [])
    if mode is not AssertionMode.off and not keys:
        raise _invalid("body.assertion_mode", "a mode other than off needs assertion keys")
    row.assertion_mode = mode.value
    await session.flush()
    return row, keys
