"""The TTL cache loads a missing key once for every caller waiting on it."""

from __future__ import annotations

import asyncio

import pytest

from app.core.cache import TtlCache


class Loads:
    """A loader that counts its calls and holds each until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        return self.calls


async def test_callers_of_a_missing_key_share_one_load() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60)
    load = Loads()
    waiting = [asyncio.create_task(cache.get("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    assert await cache.get("k", load) == 1 and load.calls == 1


async def test_an_expired_entry_is_loaded_again() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.01)
    load = Loads()
    load.release.set()
    assert await cache.get("k", load) == 1
    await asyncio.sleep(0.02)
    assert await cache.get("k", load) == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others_load() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60)
    load = Loads()
    leaving = asyncio.create_task(cache.get("k", load))
    staying = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    leaving.cancel()
    load.release.set()
    assert await staying == 1 and load.calls == 1


async def test_what_was_forgotten_while_it_loaded_is_not_kept() -> None:
    """A revocation that lands during a load: the load's answer may predate it."""
    cache: TtlCache[str, int] = TtlCache(ttl_s=60)
    load = Loads()
    pending = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    cache.forget("k")
    load.release.set()
    assert await pending == 1
    assert await cache.get("k", load) == 2


async def test_a_failed_load_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60)

    async def broken() -> int:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await cache.get("k", broken)
    load = Loads()
    load.release.set()
    assert await cache.get("k", load) == 1
