"""One interface for every mode: an order intent becomes a recorded trade, at most once.

`Executor` is what the trading flows call. It composes the two paths an attempt can take:
paper orders fill inside the process, a batch of renters in one transaction
(app/trading/paper.py); testnet and live orders, and a paper attempt that exists already, go
the fenced way (app/trading/orders.py). What both share, the attempt's identity, sizing,
positions and the recording of fills, is app/trading/attempts.py, whose names the flows
import from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.crypto import Keyring
from app.core.db import utcnow
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.models import Subscription, Trade
from app.trading import attempts
from app.trading.attempts import (
    FINAL_STATUSES,
    AttemptInFlight,
    OrderIntent,
    client_order_id,
)
from app.trading.orders import FencedOrders
from app.trading.paper import PaperFills

# The interface: callers import these from here, not from the modules behind it.
__all__ = [
    "FINAL_STATUSES",
    "AttemptInFlight",
    "Executor",
    "OrderIntent",
    "client_order_id",
]


class Executor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        keyring: Keyring,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._attempts = attempts.Attempts(sessionmaker, clients, settings, clock)
        self._paper = PaperFills(self._attempts)
        self._orders = FencedOrders(self._attempts, self._paper, keyring)

    async def execute(
        self,
        intent: OrderIntent,
        price: Decimal | None = None,
        subscription: Subscription | None = None,
    ) -> Trade:
        """`price`: the symbol's price as the caller read it for a whole batch of renters
        (one ticker read per symbol and job, not one per renter: Binance weight is per IP);
        None reads it here. `subscription`: the intent's, when the caller has read it."""
        sub = subscription or await self._attempts.subscription(intent.subscription_id)
        if sub.mode == "paper":
            done = await self._paper.fill([(sub, intent)], price)
            if done is not None:
                return done[0]
        return await self._orders.place(sub, intent, price)

    async def refuse(self, sub: Subscription, intent: OrderIntent, reason: str) -> Trade:
        """Record that this intent was not sent (a risk limit), exactly once like an order."""
        return await self._orders.refuse(sub, intent, reason)

    async def resume(self, trade_id: str) -> Trade | None:
        """See through an unresolved attempt whose lease has run out (the reconciler's job);
        None when another worker holds it."""
        return await self._orders.resume(trade_id)

    async def fill_paper(
        self, orders: Sequence[tuple[Subscription, OrderIntent]], price: Decimal | None = None
    ) -> list[Trade] | None:
        """Paper orders on one symbol, in one transaction: see PaperFills.fill."""
        return await self._paper.fill(orders, price)
