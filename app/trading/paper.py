"""Paper orders: simulated fills at the market price, against the paper wallet.

Paper orders never leave the process, so they need no fence: attempt, check, size, fill and
position change are one transaction, for a batch of renters at once (flows.PAPER_BATCH). Only
an attempt that exists already goes the fenced way (app/trading/orders.py), which fills it
here too (`fill_fenced`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import session_scope
from app.integrations.binance.filters import SymbolRules
from app.models import Position, Subscription, Trade
from app.trading import events, repository
from app.trading.attempts import (
    Attempts,
    OrderIntent,
    OrderRefused,
    audit_all,
    filled,
    resolved,
    stale,
    with_reason,
)
from app.trading.fills import Fill, Side, paper_fill


class PaperFills:
    """Paper attempts filled in the process, at the market price with the paper slippage."""

    def __init__(self, attempts: Attempts) -> None:
        self._attempts = attempts

    async def fill(
        self, orders: Sequence[tuple[Subscription, OrderIntent]], price: Decimal | None = None
    ) -> list[Trade] | None:
        """Paper orders on one symbol, e.g. a decision's for a chunk of renters, in the order
        given. A paper order never leaves the process, so there is nothing to fence against:
        every attempt, its fill (or refusal), the positions and the audit rows commit
        together in one transaction, or not at all. None when that cannot be: one of these
        intents has an attempt already (an earlier run's or a racing one's), or a new
        position raced into existence; `execute`, renter by renter, resolves those."""
        (symbol,) = {sub.symbol for sub, _ in orders}
        assert all(sub.mode == "paper" for sub, _ in orders)
        rules, price = await self._market(symbol, price)
        trades = [self._attempts.new(sub, intent) for sub, intent in orders]
        try:
            async with session_scope(self._attempts.sessionmaker) as session:
                # The first write: on SQLite it serialises this transaction with other
                # writers before anything is read.
                await audit_all(session, [(trade, "order.attempt") for trade in trades])
                positions = await self._positions(session, [sub for sub, _ in orders])
                sellers = [t.subscription_id for t in trades if t.side == Side.SELL]
                reserved = await repository.reserved_by_sells(session, sellers)
                # Referenced until the commit: the session keeps only what is, and each
                # order's events find their renter there instead of by a query each.
                _renters = await repository.users_of(session, {sub.user_id for sub, _ in orders})
                now = self._attempts.clock()
                for (sub, intent), trade in zip(orders, trades, strict=True):
                    reserve = reserved.get(trade.subscription_id, Decimal(0))
                    position = positions[trade.subscription_id]
                    held_before = position.quantity
                    # Told before settling, as an exit's first attempt is elsewhere: with
                    # the order, not its outcome (which the attempt's own event tells).
                    if intent.exit:
                        await events.exit_triggered(session, sub, trade, intent.exit)
                    self._settle(trade, position, reserve, rules, price, now)
                    # Told as `settled` tells one attempt; audited below, all at once.
                    await events.attempt_resolved(session, sub, trade, position, held_before, rules)
                await audit_all(session, [(trade, f"order.{trade.status}") for trade in trades])
                # Inserted resolved: a unique client order id already there stops them all.
                session.add_all(trades)
        except IntegrityError:
            return None
        return [resolved(trade) for trade in trades]

    def _settle(
        self,
        trade: Trade,
        position: Position,
        reserve: Decimal,
        rules: SymbolRules,
        price: Decimal,
        now: datetime,
    ) -> None:
        """A new attempt of the batch, filled against its (locked) position or refused."""
        try:
            if trade.send_before is not None and trade.send_before <= now:
                raise OrderRefused(stale(trade.send_before))
            quantity = self._attempts.size(trade, position, reserve, rules, price)
        except OrderRefused as exc:
            trade.status = "refused"
            trade.reason = with_reason(trade.reason, str(exc))
        else:
            trade.sent_at = now
            fill = self._fill(trade, quantity, price, rules)
            for column, value in filled(position, trade, fill, rules).items():
                setattr(trade, column, value)

    async def fill_fenced(self, trade: Trade, fence: int, price: Decimal | None) -> Trade:
        """An attempt that already existed, filled once we prove we still own it."""
        rules, price = await self._market(trade.symbol, price)
        async with session_scope(self._attempts.sessionmaker) as session:
            await self._attempts.commit_to_send(session, trade, fence)
            position = await self._attempts.position(session, trade)
            reserve = await self._attempts.reserved(session, trade)
            quantity = self._attempts.size(trade, position, reserve, rules, price)
            fill = self._fill(trade, quantity, price, rules)
            row = await self._attempts.record_fill(session, trade, fence, position, fill, rules)
        return resolved(row)

    def _fill(self, trade: Trade, quantity: Decimal, price: Decimal, rules: SymbolRules) -> Fill:
        return paper_fill(
            Side(trade.side), quantity, price, self._attempts.settings.paper_slippage, rules
        )

    async def _market(self, symbol: str, price: Decimal | None) -> tuple[SymbolRules, Decimal]:
        """The symbol's rules, and its price unless the caller has read it."""
        clients = self._attempts.clients
        rules = await clients.rules(symbol)
        if price is None:
            price = await (await clients.public()).price(symbol)
        return rules, price

    async def _positions(
        self, session: AsyncSession, subs: Sequence[Subscription]
    ) -> dict[str, Position]:
        """The positions of many paper subscriptions, locked, by subscription."""
        positions = await repository.positions_of(session, [s.id for s in subs], lock=True)
        for sub in subs:
            if sub.id not in positions:
                positions[sub.id] = self._attempts.new_position(session, sub.id, sub.symbol, sub)
        return positions
