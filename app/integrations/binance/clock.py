"""The offset between this machine's clock and Binance's, one per process.

Binance refuses a signed request whose timestamp is outside its recvWindow (-1021), so every
signed request adds this offset to our clock. The offset belongs to the exchange host and this
machine's clock, not to a credential: one sync serves every client of the process, instead of
one GET /api/v3/time (weight and a round trip) per renter's client. It is refreshed after its
TTL, and at once when Binance answers -1021; concurrent syncs share one request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# A quartz clock drifts by at most ~50 ppm: 30 ms in ten minutes, far inside the 5 s receive
# window. A step of the clock (NTP, suspend) is caught by the -1021 answer it causes instead.
CLOCK_TTL_S = 600.0

# Reads Binance's time in milliseconds (GET /api/v3/time, its weight taken).
ServerTime = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Offset:
    ms: int  # add to this machine's epoch milliseconds to get Binance's
    sync: int  # how many syncs preceded this offset: tells a stale offset from a fresh one


class ExchangeClock:
    def __init__(self, ttl_s: float = CLOCK_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._offset = Offset(ms=0, sync=0)
        self._expires_at = float("-inf")  # monotonic; never synced yet
        self._syncing: asyncio.Future[None] | None = None

    async def current(self, read: ServerTime) -> Offset:
        """The offset, synced through `read` first when it never was or its TTL has passed."""
        if time.monotonic() >= self._expires_at:
            await self._sync(read)
        return self._offset

    async def refused(self, offset: Offset, read: ServerTime) -> None:
        """Binance refused a request signed with `offset` (-1021): sync, unless a sync since
        has already replaced it, so that a burst of refused orders makes one request."""
        if offset.sync == self._offset.sync:
            await self._sync(read)

    async def _sync(self, read: ServerTime) -> None:
        """Join the sync in flight or start one. It outlives a caller that is cancelled; a
        failed one is forgotten and the next caller tries again."""
        if self._syncing is None:

            async def run() -> None:
                try:
                    server_ms = await read()
                    offset_ms = server_ms - int(time.time() * 1000)
                    self._offset = Offset(offset_ms, self._offset.sync + 1)
                    self._expires_at = time.monotonic() + self._ttl_s
                finally:
                    self._syncing = None

            self._syncing = asyncio.ensure_future(run())
        await asyncio.shield(self._syncing)
