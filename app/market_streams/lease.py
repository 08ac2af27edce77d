"""The market streams' lease: one stream process acts at a time, in the database (every
deployment has one, the embedded default included).

A holder renews its lease every third of `ttl_s`; a standby takes it over once it has
expired, under the next fencing token. A holder that was paused past its lease (a long GC, a
frozen VM) finds the token moved on at its next renewal, or at the check it makes before
sending any job, and stops.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope, utcnow
from app.market_streams import repository
from app.models import ProcessLease

log = logging.getLogger(__name__)
STREAM_LEASE = "market-streams"


class Lease:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        holder: str,
        ttl_s: float,
        name: str = STREAM_LEASE,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.holder = holder
        self.name = name
        self._ttl = timedelta(seconds=ttl_s)
        self.token: int | None = None

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired; whether this holder holds it now."""
        now = utcnow()
        try:
            async with session_scope(self._sessionmaker) as session:
                held = await repository.lease_of(session, self.name)
                if held is None:
                    session.add(
                        ProcessLease(
                            name=self.name, holder=self.holder, token=1, expires_at=now + self._ttl
                        )
                    )
                    await session.flush()
                    token = 1
                elif held.holder == self.holder and held.token == self.token:
                    return await self.renew()
                else:
                    # Read before the update, which refreshes `held` in the session.
                    token = held.token + 1
                    if not await repository.take_lease(
                        session, self.name, self.holder, held.token, now, now + self._ttl
                    ):
                        return False
        except IntegrityError:  # another process inserted it first
            return False
        self.token = token
        log.info("took the market streams' lease", extra={"holder": self.holder, "token": token})
        return True

    async def renew(self) -> bool:
        """Extend the lease; False once another holder has taken it."""
        if self.token is None:
            return False
        async with session_scope(self._sessionmaker) as session:
            renewed = await repository.renew_lease(
                session, self.name, self.holder, self.token, utcnow() + self._ttl
            )
        if not renewed:
            log.warning("lost the market streams' lease", extra={"holder": self.holder})
            self.token = None
        return renewed

    async def holds(self) -> bool:
        """Whether this holder's token is still the lease's and unexpired: checked right
        before a job is sent."""
        if self.token is None:
            return False
        async with self._sessionmaker() as session:
            held = await repository.lease_of(session, self.name)
        return (
            held is not None
            and held.token == self.token
            and held.holder == self.holder
            and held.expires_at > utcnow()
        )
