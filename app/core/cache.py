"""A small in-process cache with a time to live that loads a missing key once, however many
requests ask for it at the same moment.

Without the single load, every request in flight when a hot entry expires would run its own
load: under load that is dozens of identical queries at once, every TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 50_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        # key -> (value, monotonic expiry)
        self._entries: dict[K, tuple[V, float]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        task = self._loading.get(key)
        if task is None:
            # A task of its own: a caller that goes away (a client disconnect cancels its
            # request) does not cancel the load the others are waiting for.
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            task.add_done_callback(partial(self._loaded, key))
        return await asyncio.shield(task)

    def _loaded(self, key: K, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is not task:
            return  # forgotten while it loaded: what it read may already be out of date
        del self._loading[key]
        if task.cancelled() or task.exception() is not None:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (task.result(), time.monotonic() + self._ttl_s)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
        self._loading.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._loading.clear()
