"""A subscription's scheduled life: expiry when `ends_at` passes, and the pause a drawdown
breach imposes.

Expiry is safe to run twice: a subscription whose bot closes its position on expiry stays
`expiring` until that sale is resolved, and the reconciler finishes it from database state
alone (`finish_expiry`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bots.strategy import Strategy
from app.core.db import session_scope
from app.events.types import EventType
from app.integrations.binance.errors import TemporaryError
from app.models import BotVersion, Subscription
from app.subscriptions import repository
from app.subscriptions.events import status_changed
from app.trading.execution import FINAL_STATUSES, Executor, OrderIntent
from app.trading.fills import Side

log = logging.getLogger(__name__)


class SubscriptionFlows:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], executor: Executor) -> None:
        self._sessionmaker = sessionmaker
        self._executor = executor

    async def expire(self, now: datetime) -> list[str]:
        """Subscriptions past ends_at stop trading. Where the bot closes its position on
        expiry, the subscription stays `expiring` until that sale is resolved (the reconciler
        tries again after a failure), then becomes `expired`."""
        finished = []
        async with session_scope(self._sessionmaker) as session:
            due = await repository.due_to_expire(session, now)
            for sub in due:
                sub.status, sub.status_reason = "expiring", "ends_at passed"
                await status_changed(session, sub)
        for sub in due:
            if await self.finish_expiry(sub.id):
                finished.append(sub.id)
        return finished

    async def finish_expiry(self, sub_id: str) -> bool:
        """Close an `expiring` subscription; False while its sale is unresolved."""
        try:
            return await self._close_on_expiry(sub_id)
        except TemporaryError as exc:
            log.warning(
                "expiry sale unresolved; the reconciler will try again",
                extra={"subscription_id": sub_id, "error": str(exc)},
            )
            return False

    async def _close_on_expiry(self, sub_id: str) -> bool:
        async with self._sessionmaker() as session:
            sub = await session.get(Subscription, sub_id)
            assert sub is not None
            version = await session.get(BotVersion, sub.bot_version_id)
            assert version is not None
            close = Strategy.model_validate(version.strategy).close_position_on_expiry
            position = await repository.position_of(session, sub.id)
        if close and position is not None and position.quantity > 0:
            sale = await self._executor.execute(
                OrderIntent(
                    sub.id, Side.SELL, "expiry", None, "subscription expired", exit="expiry"
                )
            )
            if sale.status not in FINAL_STATUSES:
                return False
        async with session_scope(self._sessionmaker) as session:
            row = await session.get(Subscription, sub_id, with_for_update=True)
            assert row is not None
            if row.status == "expiring":
                row.status = "expired"
                await status_changed(session, row)
        return True

    async def pause(self, sub_id: str, limit: str, reason: str) -> None:
        """Stop an active subscription's trading because a risk `limit` was breached (a
        drawdown), saying why."""
        async with session_scope(self._sessionmaker) as session:
            # Locked: a renter's cancel committed meanwhile must not be turned back to paused.
            sub = await session.get(Subscription, sub_id, with_for_update=True)
            if sub is not None and sub.status == "active":
                sub.status, sub.status_reason = "paused", reason
                await status_changed(session, sub, EventType.risk_paused, limit=limit)
