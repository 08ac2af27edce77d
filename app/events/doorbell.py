"""The doorbell: how every API process's live hub hears that events were committed.

The outbox is the truth; a ring only says "look". A session that recorded events rings once its
transaction has committed (never before: a hub must find the rows it was told of), and beat's
sequencer rings when it numbers events nobody rang for. Between processes the ring is a Redis
pub/sub message, so a worker's commit reaches every API process; without Redis (embedded, one
process) it wakes this process's hub only, which also polls. A lost ring (Redis restarting, a
publish failing) costs latency only: every hub also reads the table on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.core.evictions import channel_of
from app.core.redis_clients import tls_options
from app.core.settings import Settings

log = logging.getLogger(__name__)

_SESSION_INFO = "botmarket.events.doorbell"
_RECORDED = "botmarket.events.recorded"
# The longest the listener reads before it looks whether it should stop.
_LISTEN_POLL_S = 1.0


class Doorbell:
    def __init__(self, settings: Settings) -> None:
        self.channel = channel_of(settings.database_url, "events")
        url = settings.redis_url
        self._publisher = (
            SyncRedis.from_url(url, **tls_options(url, settings.redis_ssl_ca_certs))
            if url
            else None
        )
        # A publish blocks on the network: in a thread of its own, so that it neither holds
        # the loop nor waits for that loop to run again (a worker's loop stops between tasks).
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorbell")
        self._publish_pending = False
        self._stopping = asyncio.Event()
        # Set by a ring this process hears; the hub waits on it.
        self.rung = asyncio.Event()

    def serve(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Ring after each commit of this sessionmaker's sessions that recorded events."""
        sessionmaker.configure(info={_SESSION_INFO: self})

    def ring(self) -> None:
        if self._publisher is None:
            self.rung.set()
            return
        # Rings while a publish waits are one publish: it is sent after them.
        if not self._publish_pending:
            self._publish_pending = True
            self._sender.submit(self._publish)

    def _publish(self) -> None:
        assert self._publisher is not None
        self._publish_pending = False
        try:
            self._publisher.publish(self.channel, b"")
        except RedisError:  # the hubs' own reads of the table catch up
            log.warning("could not ring the events doorbell", extra={"channel": self.channel})

    def ring_after_commit(self, session: AsyncSession) -> None:
        """Ring once this transaction of `session` commits; a rollback rings nothing."""
        sync = session.sync_session
        if sync.info.get(_RECORDED):
            return
        sync.info[_RECORDED] = True
        event.listen(sync, "after_commit", self._after_commit, once=True)
        event.listen(sync, "after_rollback", _forget, once=True)

    def _after_commit(self, sync: Session) -> None:
        # A listener left from an earlier transaction (registered once per recording
        # transaction) rings only if this one recorded events too.
        if sync.info.pop(_RECORDED, False):
            self.ring()

    async def listen(self, redis: Redis | None, retry_s: float = 1.0) -> None:
        """Set `rung` on every ring from any process, until stop(); nothing without Redis,
        where the rings are this process's own. A lost Redis connection is retried."""
        if redis is None:
            return
        while not self._stopping.is_set():
            try:
                await self._listen(redis)
            except RedisError as exc:
                log.warning("events doorbell lost redis; retrying", extra={"error": str(exc)})
                await asyncio.sleep(retry_s)

    async def _listen(self, redis: Redis) -> None:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Rings while nobody here listened are lost: look at the table now.
            self.rung.set()
            while not self._stopping.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_LISTEN_POLL_S
                )
                if message is not None:
                    self.rung.set()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        if self._publisher is not None:
            self._publisher.close()


def ring_after_commit(session: AsyncSession) -> None:
    """Have the session's doorbell, if its sessionmaker has one (Doorbell.serve), ring once
    this transaction commits."""
    doorbell: Doorbell | None = session.info.get(_SESSION_INFO)
    if doorbell is not None:
        doorbell.ring_after_commit(session)


def _forget(sync: Session) -> None:
    sync.info.pop(_RECORDED, None)
