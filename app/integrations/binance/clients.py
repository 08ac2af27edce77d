"""The Binance clients of one process: a public one for market data, one per credential.

Clients are created inside the running event loop (their aiohttp sessions belong to it) and
closed at shutdown. A credential's client holds the renter's plaintext key and secret, so it
lives no longer than it must: it is cached under the credential's id and key version (never
under anything derived from the key), a newer version closes it at once, and `prune` closes
it when its credentials are gone or changed, or when it has been idle for `idle_s`.

Every client of the process signs with one clock offset (`clock`), synced by the first open
and again after its TTL or a -1021 answer: a renter's client costs no request of its own. An
open that finds the sync due waits for it: concurrent requests for one client share its open,
and opens of different clients share the sync.

Symbol rules are cached for `rules_ttl_s`: they change rarely and exchangeInfo costs 20
weight. With Redis, one fetch serves every process of the deployment (a named lock makes
concurrent misses, here or in another process, wait for it); without, each process fetches
once, its concurrent misses still waiting for one fetch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from redis.asyncio import Redis

from app.core.locks import NamedLocks
from app.integrations.binance.client import BinanceClient
from app.integrations.binance.clock import CLOCK_TTL_S, ExchangeClock
from app.integrations.binance.filters import SymbolRules
from app.integrations.binance.governor import Governor, shared_governor

if TYPE_CHECKING:
    from app.core.settings import Settings


class CredentialKeys(Protocol):
    """Decrypted credentials; `version` changes whenever the stored key pair does."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def api_secret(self) -> str: ...
    @property
    def testnet(self) -> bool: ...


# Given cached credential ids, the current version of each one still stored.
KeyVersions = Callable[[list[str]], Awaitable[Mapping[str, str]]]


@dataclass
class _Cached:
    version: str
    client: BinanceClient
    used_at: float


class BinanceClients:
    def __init__(
        self,
        governor: Governor,
        *,
        api_url: str | None,
        rules_ttl_s: float,
        idle_s: float,
        recv_window_ms: int | None = None,
        clock_ttl_s: float = CLOCK_TTL_S,
        redis: Redis | None = None,
        redis_prefix: str = "botmarket:binance",
    ) -> None:
        self.governor = governor
        self.clock = ExchangeClock(clock_ttl_s)
        self._redis = redis
        self._redis_prefix = redis_prefix
        self._locks = NamedLocks(redis)
        self._api_url = api_url
        self._recv_window_ms = recv_window_ms
        self._rules_ttl_s = rules_ttl_s
        self._idle_s = idle_s
        self._public: BinanceClient | None = None
        self._credentials: dict[str, _Cached] = {}
        self._opening: dict[tuple[str, ...], asyncio.Task[BinanceClient]] = {}
        self._rules: dict[str, tuple[SymbolRules, float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None) -> BinanceClients:
        """A process's clients as the settings configure them, sharing the deployment's
        request-weight budget (and its symbol rules) through `redis` when there is one."""
        return cls(
            shared_governor(redis, settings.binance_weight_per_minute),
            api_url=settings.binance_api_url,
            rules_ttl_s=settings.binance_rules_ttl_s,
            idle_s=settings.binance_client_idle_s,
            recv_window_ms=settings.binance_recv_window_ms,
            redis=redis,
        )

    async def public(self) -> BinanceClient:
        if self._public is not None:
            return self._public
        return await self._open_once(("public",), self._open_public)

    async def _open_public(self) -> BinanceClient:
        self._public = await BinanceClient.open(
            self.governor, api_url=self._api_url, clock=self.clock
        )
        return self._public

    async def for_credential(self, credential: CredentialKeys) -> BinanceClient:
        cached = self._credentials.get(credential.id)
        if cached is not None and cached.version == credential.version:
            cached.used_at = time.monotonic()
            return cached.client
        if cached is not None:  # replaced keys: the old ones must not stay in memory
            await self._drop([credential.id])
        return await self._open_once(
            (credential.id, credential.version), lambda: self._open_credential(credential)
        )

    async def _open_credential(self, credential: CredentialKeys) -> BinanceClient:
        client = await BinanceClient.open(
            self.governor,
            api_key=credential.api_key,
            api_secret=credential.api_secret,
            testnet=credential.testnet,
            api_url=self._api_url,
            recv_window_ms=self._recv_window_ms,
            clock=self.clock,
        )
        # Another version's open may have finished meanwhile: the last one to finish is kept
        # (a stale one goes at the next request or prune), and the other closed.
        replaced = self._credentials.get(credential.id)
        self._credentials[credential.id] = _Cached(credential.version, client, time.monotonic())
        if replaced is not None:
            await replaced.client.close()
        return client

    async def _open_once(
        self, key: tuple[str, ...], open_: Callable[[], Awaitable[BinanceClient]]
    ) -> BinanceClient:
        """Run `open_`, or join the run already in flight for `key`. The open caches its
        client itself, so a caller cancelled meanwhile leaves nothing unclosed behind; a failed
        open is forgotten and the next caller tries again."""
        opening = self._opening.get(key)
        if opening is None:

            async def run() -> BinanceClient:
                try:
                    return await open_()
                finally:
                    self._opening.pop(key, None)

            opening = self._opening[key] = asyncio.ensure_future(run())
        return await asyncio.shield(opening)

    async def prune(self, versions: KeyVersions) -> None:
        """Close the credential clients idle for `idle_s`, then those whose credentials
        `versions` no longer has, or has under another version."""
        idle_since = time.monotonic() - self._idle_s
        await self._drop([id for id, c in self._credentials.items() if c.used_at < idle_since])
        if not self._credentials:
            return
        ids = list(self._credentials)
        current = await versions(ids)
        await self._drop(
            [
                id
                for id in ids
                if (cached := self._credentials.get(id)) is not None
                and cached.version != current.get(id)
            ]
        )

    async def _drop(self, credential_ids: list[str]) -> None:
        dropped = [self._credentials.pop(id).client for id in credential_ids]
        await asyncio.gather(*(client.close() for client in dropped), return_exceptions=True)

    async def rules(self, symbol: str) -> SymbolRules:
        if (rules := self._cached_rules(symbol)) is not None:
            return rules
        key = f"{self._redis_prefix}:rules:{symbol}"
        async with self._locks.hold(key):
            # Another caller of this process may have cached them while we waited.
            if (rules := self._cached_rules(symbol)) is None:
                rules = await self._load_rules(symbol, key)
        return rules

    def _cached_rules(self, symbol: str) -> SymbolRules | None:
        cached = self._rules.get(symbol)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    async def _load_rules(self, symbol: str, key: str) -> SymbolRules:
        """From Redis, where another process may have put them, else from exchangeInfo (and
        then put there); cached here until they expire there."""
        rules, ttl_s = None, self._rules_ttl_s
        if self._redis is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                stored, ttl_ms = await pipe.execute()
            if stored is not None and ttl_ms > 0:
                rules, ttl_s = SymbolRules.from_json(json.loads(stored)), ttl_ms / 1000
        if rules is None:
            rules = await (await self.public()).symbol_rules(symbol)
            if self._redis is not None:
                stored = json.dumps(rules.to_json())
                await self._redis.set(key, stored, px=int(self._rules_ttl_s * 1000))
        self._rules[symbol] = (rules, time.monotonic() + ttl_s)
        return rules

    async def close(self) -> None:
        for opening in list(self._opening.values()):
            opening.cancel()
        await asyncio.gather(*self._opening.values(), return_exceptions=True)
        self._opening = {}  # a task cancelled before it started never ran its `finally`
        clients = [cached.client for cached in self._credentials.values()]
        if self._public is not None:
            clients.append(self._public)
        self._public, self._credentials = None, {}
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
