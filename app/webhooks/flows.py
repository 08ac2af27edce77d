"""Dispatching and delivering webhooks, each step its own transaction.

Dispatch matches newly numbered events to endpoints as delivery rows, then sends delivery
jobs. A delivery job claims its due deliveries with a lease and POSTs them all at once, each
with its own timeout, so one slow endpoint holds up no other; the outcomes are recorded as
they come, those that came together in one transaction. A worker that dies mid-delivery leaves
its claims to run out: beat's retry sweep sends them again with every retry that has come due.
At least once: a receiver may see an event twice (the same `webhook-id`), never not at all
while the schedule lasts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import new_id, session_scope, utcnow
from app.core.settings import Settings
from app.webhooks import metrics, repository, service
from app.webhooks.service import Outbound, Outcome
from app.webhooks.targets import TargetPolicy

Enqueue = Callable[[str, dict[str, Any]], Awaitable[object]]
DELIVER_TASK = "webhooks.deliver"
# How long one dispatch goes on matching a backlog, batch after batch; the next goes on.
DISPATCH_BUDGET = timedelta(seconds=5)
# Delivery jobs one retry sweep sends at most; the next sweep sends on.
SWEEP_JOBS = 20
MAX_ERROR_LENGTH = 500


def delivery_jobs(delivery_ids: Sequence[str], size: int) -> Iterator[dict[str, Any]]:
    """The keyword arguments of the delivery jobs for these deliveries, `size` a job."""
    for start in range(0, len(delivery_ids), size):
        yield {"delivery_ids": list(delivery_ids[start : start + size])}


class WebhookFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        settings: Settings,
        enqueue: Enqueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._settings = settings
        self._enqueue = enqueue
        # Schedules retries, leases and attempts; tests move it. `webhook-timestamp` is
        # always the real time: the receiver checks it against its own clock.
        self._clock = clock
        self._policy = TargetPolicy.of(settings)
        # Made at the first delivery, on the loop that runs the jobs, and kept for all: its
        # connections stay open between jobs (keep-alive), and loading the CA bundle for a
        # client of each job cost 25 ms a job, a quarter of a millisecond a delivery.
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._policy.transport(),
                timeout=self._settings.webhook_timeout_s,
                # Straight to the checked address: no proxy from the environment, no redirect.
                trust_env=False,
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connections kept open for the next jobs."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def dispatch(self, budget: timedelta = DISPATCH_BUDGET) -> int:
        """Owe each endpoint its new events and send their delivery jobs; returns how many
        deliveries were made."""
        deadline = time.monotonic() + budget.total_seconds()
        made = 0
        while True:
            owed, caught_up = await self._dispatch_batch()
            await self.send_jobs(owed)
            made += len(owed)
            if caught_up or time.monotonic() >= deadline:
                return made

    async def _dispatch_batch(self) -> tuple[list[str], bool]:
        try:
            async with session_scope(self._sessionmaker) as session:
                return await service.match_new_events(session, self._clock())
        except IntegrityError:
            # Another first run made the dispatcher's row meanwhile: it is there now.
            async with session_scope(self._sessionmaker) as session:
                return await service.match_new_events(session, self._clock())

    async def retry(self) -> int:
        """Send jobs for the deliveries due: retries whose time has come, claims that ran out
        (their worker died) and deliveries whose job was lost. Returns how many."""
        async with self._sessionmaker() as session:
            due = await repository.due(
                session, self._clock(), self._settings.webhook_batch_size * SWEEP_JOBS
            )
        await self.send_jobs(due)
        return len(due)

    async def send_jobs(self, delivery_ids: Sequence[str]) -> None:
        for kwargs in delivery_jobs(delivery_ids, self._settings.webhook_batch_size):
            await self._enqueue(DELIVER_TASK, kwargs)

    async def deliver(self, delivery_ids: Sequence[str]) -> int:
        """Claim those of the deliveries still due and POST them concurrently; returns how
        many were delivered. A delivery claimed elsewhere, settled or not yet due is skipped."""
        lease_id = new_id()
        claimed = await self._claim(delivery_ids, lease_id)
        if not claimed:
            return 0
        done: asyncio.Queue[tuple[Outbound, Outcome]] = asyncio.Queue()

        async def send(sent: Outbound) -> None:
            done.put_nowait((sent, await self._post(client, sent)))

        client = self._http()
        async with asyncio.TaskGroup() as sending:
            for sent in claimed:
                sending.create_task(send(sent))
            return await self._record_as_they_come(done, len(claimed), lease_id)

    async def _claim(self, delivery_ids: Sequence[str], lease_id: str) -> list[Outbound]:
        now = self._clock()
        until = now + timedelta(seconds=self._settings.webhook_lease_s)
        async with session_scope(self._sessionmaker) as session:
            rows = await repository.claim(session, delivery_ids, lease_id, now, until)
            return service.outbounds(rows, self._keyring, utcnow())

    async def _record_as_they_come(
        self, done: asyncio.Queue[tuple[Outbound, Outcome]], count: int, lease_id: str
    ) -> int:
        """Record the outcomes in one transaction for all those that came in meanwhile, until
        `count` are; returns how many were delivered. What came while one transaction ran goes
        into the next: a slow endpoint delays no other's record, and a fast batch costs a
        transaction or a few, not one each."""
        delivered = 0
        while count:
            results = [await done.get()]
            while not done.empty():
                results.append(done.get_nowait())
            async with session_scope(self._sessionmaker) as session:
                await service.record_attempts(session, lease_id, results, self._settings)
            count -= len(results)
            delivered += sum(outcome.delivered for _, outcome in results)
        return delivered

    async def _post(self, client: httpx.AsyncClient, sent: Outbound) -> Outcome:
        attempted_at = self._clock()
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        timeout = self._settings.webhook_timeout_s
        try:
            # The client's timeout bounds each read; this bounds the whole exchange (a
            # receiver trickling its answer).
            async with asyncio.timeout(timeout):
                async with client.stream(
                    "POST", sent.url, content=sent.body, headers=sent.headers
                ) as response:
                    status_code = response.status_code  # the body is not read
            if not 200 <= status_code < 300:
                error = f"answered {status_code}"
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        except (httpx.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        duration_ms = round((time.monotonic() - started) * 1000)
        return metrics.counted(Outcome(attempted_at, duration_ms, status_code, error))
