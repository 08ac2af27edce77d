"""Resolving `X-API-Key` to a caller fast: digest lookup behind a short-TTL cache.

Two caches: the key's own row by its digest, and its marketplace's assertion rules (mode and
public keys) by the marketplace, which every key of the marketplace shares, so a key read
anew costs one row. Revocation reaches every API process within the cache TTL (at most 5 s);
with Redis, a revocation or a change of a marketplace's rules is also published once its
transaction commits, so the other processes evict at once and cannot re-read the key as
valid from a database that does not show it revoked yet (app/core/evictions.py). When a hot
entry expires, one load serves every request that asks meanwhile. `last_used_at` is kept in
memory and written in one batch every few seconds instead of on every request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys import repository
from app.api_keys.schemas import Scope
from app.core.cache import TtlCache
from app.core.db import utcnow
from app.core.evictions import Evictions, channel_of
from app.core.key_tokens import TOKEN_PREFIX, digest_api_key, digests_match
from app.core.principal_assertions import (
    Algorithm,
    AssertionMode,
    VerifyingKey,
    load_public_key,
)
from app.core.reads import RowReader
from app.marketplaces import repository as marketplaces
from app.models import MarketplaceAssertionKey

log = logging.getLogger(__name__)

_MAX_TOKEN_LENGTH = 128
# On the evictions channel a marketplace's rules are named apart from the keys' digests (hex).
_MARKETPLACE_EVICTION = "marketplace:"


@dataclass(frozen=True)
class Caller:
    api_key_id: str
    scope: Scope
    owner_user_id: str | None
    prefix: str
    # A marketplace key's marketplace: the renters it acts for, and whose assertion rules.
    marketplace_id: str | None = None
    assertion_mode: AssertionMode = AssertionMode.off
    assertion_keys: tuple[VerifyingKey, ...] = ()
    rate_limit_per_minute: int | None = None


@dataclass(frozen=True)
class _AssertionRules:
    mode: AssertionMode
    keys: tuple[VerifyingKey, ...]


def verifying_key(row: MarketplaceAssertionKey) -> VerifyingKey:
    return load_public_key(row.id, Algorithm(row.algorithm), row.public_key)


class ApiKeyAuthenticator:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        rows: RowReader,
        *,
        ttl_s: float,
        database_url: str,
        redis: Redis | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._rows = rows
        # digest -> caller without its marketplace's rules, or None for an unknown or revoked key
        self._keys: TtlCache[str, Caller | None] = TtlCache(ttl_s)
        self._rules: TtlCache[str, _AssertionRules] = TtlCache(ttl_s)
        self.changes = Evictions(
            redis,
            channel_of(database_url, "api-key-changed"),
            self._forget,
            self._clear,
        )
        self._last_used: dict[str, datetime] = {}

    async def authenticate(self, token: str | None) -> Caller | None:
        if not token or len(token) > _MAX_TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
            return None
        return await self.by_digest(digest_api_key(token))

    async def by_digest(self, digest: str) -> Caller | None:
        """The caller of a key known by its digest (a console session holds no key), from
        the same caches, so that a revocation ends the key's sessions as fast as its calls."""
        caller = await self._keys.get(digest, partial(self._load_key, digest))
        if caller is None:
            return None
        self._last_used[caller.api_key_id] = utcnow()
        if caller.marketplace_id is None:
            return caller
        rules = await self._rules.get(
            caller.marketplace_id, partial(self._load_rules, caller.marketplace_id)
        )
        return replace(caller, assertion_mode=rules.mode, assertion_keys=rules.keys)

    async def _load_key(self, digest: str) -> Caller | None:
        row = await repository.caller_view(self._rows, digest)
        if row is None or row["revoked_at"] is not None:
            return None
        if not digests_match(row["key_digest"], digest):
            return None
        return Caller(
            api_key_id=row["id"],
            scope=Scope(row["scope"]),
            owner_user_id=row["owner_user_id"],
            prefix=row["prefix"],
            marketplace_id=row["marketplace_id"],
            rate_limit_per_minute=row["rate_limit_per_minute"],
        )

    async def _load_rules(self, marketplace_id: str) -> _AssertionRules:
        async with self._sessionmaker() as session:
            marketplace = await marketplaces.get(session, marketplace_id)
            assert marketplace is not None, "a marketplace is deleted with its keys"
            keys = await marketplaces.assertion_keys(session, [marketplace_id])
        return _AssertionRules(
            AssertionMode(marketplace.assertion_mode),
            tuple(verifying_key(k) for k in keys.get(marketplace_id, [])),
        )

    def _forget(self, evicted: str) -> None:
        if evicted.startswith(_MARKETPLACE_EVICTION):
            self._rules.forget(evicted.removeprefix(_MARKETPLACE_EVICTION))
        else:
            self._keys.forget(evicted)

    def _clear(self) -> None:
        self._keys.clear()
        self._rules.clear()

    def changed(self, session: AsyncSession, digest: str) -> None:
        """Once `session` commits a revocation of the key, forget it here and in the other
        processes."""
        self.changes.after_commit(session, digest)

    def marketplace_changed(self, session: AsyncSession, marketplace_id: str) -> None:
        """Once `session` commits a change of the marketplace's assertion keys or mode, forget
        its rules here and in the other processes (a rotated-out assertion key must stop
        vouching for every key of the marketplace as soon as a revocation would)."""
        self.changes.after_commit(session, _MARKETPLACE_EVICTION + marketplace_id)

    def stop(self) -> None:
        self.changes.stop()

    async def listen_for_changes(self, retry_s: float = 1.0) -> None:
        """Evict the keys other processes revoke or change, until stop()."""
        await self.changes.listen(retry_s)

    async def flush_last_used(self) -> None:
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        async with self._sessionmaker() as session:
            await repository.set_last_used(session, pending)
            await session.commit()

    async def flush_last_used_forever(self, every_s: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.flush_last_used()
            except Exception:
                log.exception("could not record api key last use")
