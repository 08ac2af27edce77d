"""Marketplace rules: which one a key belongs to, and its renters' assertion keys and mode.

A marketplace is named when a key or a listing is made. In development an unknown name makes
the marketplace, so a local run needs no setup step; elsewhere it must have been created
(`botmarket marketplaces create NAME` or `POST /api/v1/marketplaces`), so a typo cannot split
one marketplace's renters into two.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.principal_assertions import Algorithm, AssertionMode
from app.marketplaces import repository
from app.models import Marketplace, MarketplaceAssertionKey

# Where a key or listing that names no marketplace belongs; also where the data of the time
# before marketplaces moved (migration 0011).
DEFAULT_MARKETPLACE = "default"


def invalid(loc: str, message: str) -> Unprocessable:
    return Unprocessable(message, details=[{"loc": loc, "message": message}])


async def create(
    session: AsyncSession,
    name: str,
    assertion_keys: Sequence[tuple[Algorithm, bytes]] = (),
    assertion_mode: AssertionMode | None = None,
) -> tuple[Marketplace, list[MarketplaceAssertionKey]]:
    if await repository.get_by_name(session, name) is not None:
        raise Conflict(f"marketplace {name!r} exists")
    marketplace = await repository.get_or_create(session, name)
    keys = await add_assertion_keys(session, marketplace, assertion_keys, assertion_mode)
    return marketplace, keys


async def resolve(session: AsyncSession, name: str, *, create_missing: bool) -> Marketplace:
    """The marketplace by its name; made when missing if `create_missing` (development)."""
    if create_missing:
        return await repository.get_or_create(session, name)
    found = await repository.get_by_name(session, name)
    if found is None:
        raise invalid(
            "body.marketplace",
            f"no marketplace is named {name!r}: create it first (botmarket marketplaces create)",
        )
    return found


async def add_assertion_keys(
    session: AsyncSession,
    marketplace: Marketplace,
    assertion_keys: Sequence[tuple[Algorithm, bytes]],
    assertion_mode: AssertionMode | None,
) -> list[MarketplaceAssertionKey]:
    """Add the keys the marketplace lacks and set the mode; returns all its keys.

    Keys given with no mode make an unprotected marketplace require assertions: keys meant to
    protect it should not leave it unprotected."""
    if len({raw for _, raw in assertion_keys}) != len(assertion_keys):
        raise invalid("body.assertion_keys", "the same public key is given twice")
    existing = await _keys(session, marketplace.id)
    held = {key.public_key for key in existing}
    added = [
        MarketplaceAssertionKey(
            marketplace_id=marketplace.id, algorithm=algorithm.value, public_key=raw
        )
        for algorithm, raw in assertion_keys
        if raw not in held
    ]
    session.add_all(added)
    keys = existing + added
    if assertion_mode is None and added and marketplace.assertion_mode == AssertionMode.off:
        assertion_mode = AssertionMode.required
    if assertion_mode is not None:
        _check_mode(assertion_mode, keys)
        marketplace.assertion_mode = assertion_mode.value
    await session.flush()
    return keys


async def _keys(session: AsyncSession, marketplace_id: str) -> list[MarketplaceAssertionKey]:
    return (await repository.assertion_keys(session, [marketplace_id])).get(marketplace_id, [])


def _check_mode(mode: AssertionMode, keys: Sequence[MarketplaceAssertionKey]) -> None:
    if mode is not AssertionMode.off and not keys:
        raise invalid("body.assertion_mode", "a mode other than off needs assertion keys")


async def get(session: AsyncSession, marketplace_id: str) -> Marketplace:
    marketplace = await repository.get(session, marketplace_id)
    if marketplace is None:
        raise NotFound("marketplace")
    return marketplace


async def add_assertion_key(
    session: AsyncSession, marketplace_id: str, algorithm: Algorithm, raw: bytes
) -> MarketplaceAssertionKey:
    """The first half of a rotation: both keys verify until the old one is removed."""
    existing = await _keys(session, marketplace_id)
    if any(key.public_key == raw for key in existing):
        raise Conflict("this public key is already on the marketplace")
    added = MarketplaceAssertionKey(
        marketplace_id=marketplace_id, algorithm=algorithm.value, public_key=raw
    )
    session.add(added)
    await session.flush()
    return added


async def remove_assertion_key(
    session: AsyncSession, marketplace: Marketplace, assertion_key_id: str
) -> None:
    existing = await _keys(session, marketplace.id)
    if not any(key.id == assertion_key_id for key in existing):
        raise NotFound("assertion key")
    if len(existing) == 1 and marketplace.assertion_mode != AssertionMode.off:
        # Otherwise every renter request would fail until a key is added again.
        raise Conflict("the last assertion key stays while the assertion mode is not off")
    await repository.remove_assertion_key(session, marketplace.id, assertion_key_id)


async def set_assertion_mode(
    session: AsyncSession, marketplace: Marketplace, mode: AssertionMode
) -> list[MarketplaceAssertionKey]:
    keys = await _keys(session, marketplace.id)
    _check_mode(mode, keys)
    marketplace.assertion_mode = mode.value
    await session.flush()
    return keys
