"""The Binance clients of one process: a public one for market data, one per credential.

Clients are created inside the running event loop (their aiohttp sessions belong to it) and
closed at shutdown. Symbol rules are cached for `rules_ttl_s`: they change rarely and
exchangeInfo costs 20 weight.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from app.integrations.binance.client import BinanceClient
from app.integrations.binance.filters import SymbolRules
from app.integrations.binance.governor import Governor


class BinanceClients:
    def __init__(
        self,
        governor: Governor,
        *,
        api_url: str | None,
        rules_ttl_s: float,
        recv_window_ms: int | None = None,
    ) -> None:
        self.governor = governor
        self._api_url = api_url
        self._recv_window_ms = recv_window_ms
        self._rules_ttl_s = rules_ttl_s
        self._clients: dict[str, BinanceClient] = {}
        self._rules: dict[str, tuple[SymbolRules, float]] = {}
        self._lock = asyncio.Lock()

    async def _get(
        self,
        cache_key: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        testnet: bool = False,
    ) -> BinanceClient:
        async with self._lock:
            client = self._clients.get(cache_key)
            if client is None:
                client = await BinanceClient.open(
                    self.governor,
                    api_key=api_key,
                    api_secret=api_secret,
                    testnet=testnet,
                    api_url=self._api_url,
                    recv_window_ms=self._recv_window_ms,
                )
                self._clients[cache_key] = client
            return client

    async def public(self) -> BinanceClient:
        return await self._get("public")

    async def for_credential(self, api_key: str, api_secret: str, testnet: bool) -> BinanceClient:
        # Keyed by a digest of the key pair, so replaced credentials get a new client and the
        # cache never holds plaintext as a key.
        digest = hashlib.sha256(f"{api_key}\0{api_secret}\0{testnet}".encode()).hexdigest()
        return await self._get(digest, api_key=api_key, api_secret=api_secret, testnet=testnet)

    async def rules(self, symbol: str) -> SymbolRules:
        cached = self._rules.get(symbol)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        rules = await (await self.public()).symbol_rules(symbol)
        self._rules[symbol] = (rules, time.monotonic() + self._rules_ttl_s)
        return rules

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
