"""The hourly equity points of active subscriptions, which their performance is drawn from.

One point per subscription and hour: the unique (subscription, hour) key makes a second run
of the same hour write nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.models import PerformanceLog
from app.subscriptions import repository as subscriptions
from app.subscriptions.rules import reference_capital
from app.trading.market_data import latest_prices


class PerformanceFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clients = clients
        self._settings = settings

    async def snapshot(self, now: datetime) -> int:
        """One equity point per active subscription per hour."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        written = 0
        async with self._sessionmaker() as session:
            subs = await subscriptions.subscriptions_with(session, ("active",))
        prices = await latest_prices(self._clients, {sub.symbol for sub in subs})
        for sub in subs:
            price = prices[sub.symbol]
            async with self._sessionmaker() as session:
                position = await subscriptions.position_of(session, sub.id)
                held = position.quantity if position else Decimal(0)
                cost = position.average_cost if position else Decimal(0)
                realized = position.realized_pnl if position else Decimal(0)
                unrealized = held * (price - cost)
                session.add(
                    PerformanceLog(
                        subscription_id=sub.id,
                        recorded_at=hour,
                        equity=reference_capital(sub, self._settings) + realized + unrealized,
                        realized_pnl=realized,
                        unrealized_pnl=unrealized,
                    )
                )
                try:
                    await session.commit()
                    written += 1
                except IntegrityError:
                    await session.rollback()  # this hour's point exists: run twice, kept once
        return written
