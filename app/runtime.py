"""What one API process holds for its lifetime: engine, Redis, keyring, caches, metrics, and
the live events' doorbell and hub."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.api_keys.authenticator import ApiKeyAuthenticator
from app.bots.catalogue import catalogue
from app.console.sessions import ConsoleSessions
from app.core.cache import TtlCache
from app.core.crypto import Keyring
from app.core.db import create_engine, create_sessionmaker
from app.core.jobs import JobQueue
from app.core.metrics import ApiMetrics
from app.core.page_cache import PageCache
from app.core.principal_assertions import AssertionVerifier
from app.core.ratelimit import RateLimiter, rate_limiter
from app.core.reads import RowReader, create_read_sessionmaker
from app.core.redis_clients import broker_tls, open_redis
from app.core.settings import Settings
from app.core.signing import SigningKeyring
from app.events import feed
from app.events.doorbell import Doorbell
from app.events.hub import Hub


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    read_engine: AsyncEngine
    read_sessionmaker: async_sessionmaker[AsyncSession]
    # The hot GETs' rows, through the database driver (app/core/reads.py).
    rows: RowReader
    redis: Redis | None
    keyring: Keyring
    # Signs decision-chain heads in the workers; the API publishes its public keys.
    signing: SigningKeyring
    authenticator: ApiKeyAuthenticator
    console_sessions: ConsoleSessions
    catalogue: PageCache
    # The feed's bodies for a replica window (app/events/feed.py); an erasure evicts them.
    feed_pages: PageCache
    assertion_verifier: AssertionVerifier
    rate_limiter: RateLimiter
    # (marketplace id, principal) -> user id. A renter's row and id never change (the erasure
    # keeps the row), so an entry cannot go wrong; the TTL only bounds the memory of renters
    # gone quiet.
    renter_ids: TtlCache[tuple[str, str], str]
    metrics: ApiMetrics
    jobs: JobQueue
    doorbell: Doorbell
    hub: Hub

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.database_url)
        sessionmaker = create_sessionmaker(engine)
        read_engine = create_engine(settings.database_url, autocommit=True)
        redis = open_redis(settings)
        read_sessionmaker = create_read_sessionmaker(read_engine)
        metrics = ApiMetrics()
        doorbell = Doorbell(settings)
        doorbell.serve(sessionmaker)
        hub = Hub(
            sessionmaker,
            read_sessionmaker,
            doorbell,
            # With Redis every process hears the rings and reads the table now and then in
            # case it missed one; without, the timer is how it learns of a worker's events.
            poll_s=settings.stream_safety_poll_s if redis is not None else settings.stream_poll_s,
            capacity=settings.stream_queue_size,
            metrics=metrics,
            revocation_check_s=settings.api_key_cache_ttl_s,
        )
        rows = RowReader(read_engine)
        authenticator = ApiKeyAuthenticator(
            sessionmaker,
            rows,
            ttl_s=settings.api_key_cache_ttl_s,
            database_url=settings.database_url,
            redis=redis,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            read_engine=read_engine,
            read_sessionmaker=read_sessionmaker,
            rows=rows,
            redis=redis,
            keyring=Keyring.parse(settings.fernet_keyring_text()),
            signing=SigningKeyring.parse(settings.signing_keyring_text()),
            authenticator=authenticator,
            console_sessions=ConsoleSessions(
                sessionmaker,
                authenticator,
                ttl_s=settings.api_key_cache_ttl_s,
                database_url=settings.database_url,
                redis=redis,
            ),
            catalogue=catalogue(redis, settings.database_url),
            feed_pages=feed.page_cache(redis, settings),
            assertion_verifier=AssertionVerifier(),
            rate_limiter=rate_limiter(redis, settings.rate_limit_per_minute),
            renter_ids=TtlCache(ttl_s=60.0),
            metrics=metrics,
            jobs=JobQueue(settings.broker_url, broker_tls(settings)),
            doorbell=doorbell,
            hub=hub,
        )

    async def close(self) -> None:
        await self.jobs.drain()
        self.jobs.close()
        self.doorbell.close()
        await self.authenticator.flush_last_used()
        if self.redis is not None:
            await self.redis.aclose()
        await self.rows.close()
        await self.engine.dispose()
        await self.read_engine.dispose()
