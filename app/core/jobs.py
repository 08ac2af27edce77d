"""Background jobs sent by task name, and only once the request's transaction has committed.

A job sent before the commit could run before its data exists; one sent from a transaction
that then rolls back would act on nothing. So jobs wait in the session until after_commit and
are dropped on rollback. app/ never imports the workers: a name is all the broker needs.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_PENDING = "botmarket.jobs"
# A decide task spends most of its time waiting for its batch's LLM rounds, holding a worker
# process; on a queue of their own, decisions do not hold up the orders of the decisions
# already made: a worker takes from its queues in turn. A worker consumes both unless told
# otherwise (`botmarket worker -Q trading.decide` for a pool of deciders, `-Q celery` for the
# rest). Every sender routes by these, the workers' app and the other processes' producers.
DECIDE_QUEUE = "trading.decide"
TASK_ROUTES = {"trading.decide": {"queue": DECIDE_QUEUE}}
# Every queue a worker takes from ("celery": Celery's default, the rest's).
QUEUES = ("celery", DECIDE_QUEUE)


class JobQueue:
    def __init__(self, broker_url: str, broker_tls: dict[str, Any] | None = None) -> None:
        # Only Redis of the brokers we run on broadcasts (kombu's SQLAlchemy transport has no
        # fanout) and keeps its queues where their depth is a cheap read.
        self._on_redis = broker_url.startswith(("redis://", "rediss://"))
        self._producer = Celery("botmarket-api", broker=broker_url)
        self._producer.conf.broker_connection_retry_on_startup = True
        self._producer.conf.broker_use_ssl = broker_tls or None
        self._producer.conf.task_routes = TASK_ROUTES
        # kombu's publish blocks on the network: it runs here, never on the event loop.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs")
        self._sending: set[asyncio.Future[None]] = set()

    def send_after_commit(self, session: AsyncSession, name: str, **kwargs: Any) -> None:
        sync = session.sync_session
        pending: list[tuple[str, dict[str, Any]]] | None = sync.info.get(_PENDING)
        if pending is None:
            pending = sync.info[_PENDING] = []
            event.listen(sync, "after_commit", self._send, once=True)
            event.listen(sync, "after_rollback", _drop, once=True)
        pending.append((name, kwargs))

    async def send(self, name: str, kwargs: dict[str, Any]) -> None:
        """Send a job now, outside any transaction (a process that commits nothing of it)."""
        await asyncio.get_running_loop().run_in_executor(
            self._sender, self._publish, [(name, kwargs)]
        )

    async def drain(self) -> None:
        """Wait until every job handed over so far has reached the broker (or failed to)."""
        await asyncio.gather(*self._sending)

    async def workers_answering(self, timeout_s: float) -> list[str] | None:
        """The names of the workers that answered a ping within `timeout_s`; None where the
        broker cannot broadcast. The ping blocks for the whole timeout: in a thread."""
        if not self._on_redis:
            return None
        replies = await asyncio.to_thread(self._producer.control.ping, timeout=timeout_s)
        return sorted(name for reply in replies for name in reply)

    async def queue_depths(self, queues: tuple[str, ...]) -> dict[str, int] | None:
        """The messages waiting in each queue (not those a worker holds); None off Redis."""
        if not self._on_redis:
            return None
        return await asyncio.to_thread(self._depths, queues)

    def _depths(self, queues: tuple[str, ...]) -> dict[str, int]:
        return queue_depths(self._producer, queues)

    def close(self) -> None:
        self._sender.shutdown(wait=True)

    def _send(self, sync: Session) -> None:
        jobs = sync.info.pop(_PENDING, [])
        # The commit hook runs on the loop that committed (a greenlet of it).
        sending = asyncio.get_running_loop().run_in_executor(self._sender, self._publish, jobs)
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    def _publish(self, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        for name, kwargs in jobs:
            try:
                self._producer.send_task(name, kwargs=kwargs)
            except Exception:  # the schedule catches up; a request must not fail over it
                log.warning("could not send job", extra={"job": name}, exc_info=True)


def queue_depths(app: Celery, queues: tuple[str, ...]) -> dict[str, int]:
    """The messages waiting in each of the broker's `queues`; blocking. Meant for Redis, where
    a queue's depth is the length of its lists."""
    depths: dict[str, int] = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                # Passive: reads the lengths of the queue's lists, every priority's.
                depths[queue] = channel.queue_declare(queue, passive=True).message_count
            except ChannelError:  # Redis keeps no empty list: an empty queue is absent
                depths[queue] = 0
    return depths


def _drop(sync: Session) -> None:
    dropped = sync.info.pop(_PENDING, [])
    if dropped:
        log.info("jobs dropped with the rolled back transaction", extra={"jobs": len(dropped)})
