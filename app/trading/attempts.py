"""An order attempt, as both execution paths (paper and exchange) share it.

An attempt is a `trades` row, written `pending` before anything is sent. Its client order id
derives from (subscription, intent), and unique constraints make a second attempt find the
first instead of sending again. This module owns what both paths do with that row: build it,
prove ownership and mark it sent, size the order, lock the position, and record the fill. A
subscription's sells serialise: each is sized on what is held minus what its sells in flight
have asked for.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import new_id, utcnow
from app.core.errors import NotFound
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import ExchangeError, TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.models import AuditLog, Position, Subscription, Trade
from app.subscriptions.rules import reference_capital
from app.trading import events, metrics, repository
from app.trading.fills import Fill, Side, apply_fill, buy_quantity

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"filled", "rejected", "refused"})


@dataclass(frozen=True)
class OrderIntent:
    subscription_id: str
    side: Side
    # What makes this order unique for the subscription: the decision's id, or the key of a
    # protective exit (stop-loss at a given candle, ...).
    intent_key: str
    decision_id: str | None
    reason: str
    # A decision's orders only: never sent at or after this instant.
    send_before: datetime | None = None
    # A protective exit's kind (stop_loss, take_profit, trailing_stop, expiry), told with
    # its attempt's row.
    exit: str | None = None


class AttemptInFlight(TemporaryError):
    """Another worker holds this order attempt and its lease has not run out: try again
    later, when it has finished or the reconciler has resolved it."""


class AttemptLost(Exception):
    """Another worker took this attempt over: what we were about to do is theirs now."""


class OrderRefused(Exception):
    """We decided not to send: nothing to sell, wallet empty, under the minimums, stale."""


def client_order_id(subscription_id: str, intent_key: str) -> str:
    """`[A-Za-z0-9_-]{1,36}`: python-binance signs unencoded values, so nothing else is safe."""
    digest = hashlib.sha256(f"{subscription_id}/{intent_key}".encode()).hexdigest()
    return f"bm-{digest[:33]}"


class Attempts:
    """The attempt rows' shared steps, over the worker's sessions, clients and clock."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clients = clients
        self.settings = settings
        self.clock = clock

    def lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.order_lease_s)

    async def subscription(self, sub_id: str) -> Subscription:
        async with self.sessionmaker() as session:
            sub = await session.get(Subscription, sub_id)
        if sub is None:
            raise NotFound("subscription")
        return sub

    def new(self, sub: Subscription, intent: OrderIntent) -> Trade:
        """The first attempt at an intent, owned (fence 1) for a lease from now."""
        return Trade(
            # Both known before the row is written: its audit row may come first, and the
            # attempt starts now, not when a batch of them is inserted.
            id=new_id(),
            created_at=utcnow(),
            subscription_id=sub.id,
            decision_id=intent.decision_id,
            client_order_id=client_order_id(sub.id, intent.intent_key),
            mode=sub.mode,
            symbol=sub.symbol,
            side=intent.side.value,
            status="pending",
            fence=1,
            lease_until=self.lease_end(self.clock()),
            send_before=intent.send_before,
            requested_quote=sub.quote_amount if intent.side is Side.BUY else None,
            reason=intent.reason,
        )

    async def commit_to_send(
        self, session: AsyncSession, trade: Trade, fence: int, **values: object
    ) -> None:
        """Prove we still own a fresh attempt and mark it sent (leased for as long as the
        exchange could still execute it), with `values` of the attempt."""
        now = self.clock()
        sent = await repository.fenced_update(
            session,
            trade.id,
            fence,
            send_by=now,
            sent_at=now,
            lease_until=self.lease_end(now),
            **values,
        )
        if not sent:
            row = await session.get(Trade, trade.id)
            assert row is not None
            if row.fence != fence or row.status in FINAL_STATUSES:
                raise AttemptLost()
            raise OrderRefused(stale(row.send_before))

    @staticmethod
    async def reserved(session: AsyncSession, trade: Trade) -> Decimal:
        """For a sell, what the subscription's other sells in flight may still sell."""
        if trade.side == Side.SELL:
            return await repository.reserved_by_others(session, trade)
        return Decimal(0)

    def size(
        self,
        trade: Trade,
        position: Position | None,
        reserved: Decimal,
        rules: SymbolRules,
        price: Decimal,
    ) -> Decimal:
        """`position`: locked, needed for a sell and a paper buy (whose wallet it holds);
        `reserved`: what the subscription's other sells in flight may still sell."""
        try:
            if trade.side == Side.BUY:
                assert trade.requested_quote is not None
                budget = trade.requested_quote
                if trade.mode == "paper":
                    assert position is not None
                    budget = min(budget, position.quote_balance)
                return buy_quantity(budget, price, self.settings.paper_slippage, rules)
            assert position is not None
            available = position.quantity - reserved
            if available <= 0:
                raise OrderRefused("no position to sell")
            return rules.size_market_sell(available, price)
        except ExchangeError as exc:  # sizing refuses before the exchange has to
            raise OrderRefused(str(exc)) from exc

    async def position(self, session: AsyncSession, trade: Trade) -> Position:
        """The attempt's position row, locked until the transaction ends (a new one if none)."""
        position = await repository.position_for_update(session, trade.subscription_id)
        if position is None:
            paper = None
            if trade.mode == "paper":
                paper = await session.get(Subscription, trade.subscription_id)
                assert paper is not None
            position = self.new_position(session, trade.subscription_id, trade.symbol, paper)
        return position

    def new_position(
        self, session: AsyncSession, subscription_id: str, symbol: str, paper: Subscription | None
    ) -> Position:
        """A new subscription's position is flat; a paper one's (`paper`: its subscription)
        holds the paper wallet, the reference capital; testnet and live have none. Inserted
        when the transaction commits."""
        position = Position(
            subscription_id=subscription_id,
            symbol=symbol,
            quantity=Decimal(0),
            average_cost=Decimal(0),
            realized_pnl=Decimal(0),
            quote_balance=(
                reference_capital(paper, self.settings) if paper is not None else Decimal(0)
            ),
        )
        session.add(position)
        return position

    async def record_fill(
        self,
        session: AsyncSession,
        trade: Trade,
        fence: int,
        position: Position,
        fill: Fill,
        rules: SymbolRules,
        sub: Subscription | None = None,
    ) -> Trade:
        """`sub`: the attempt's subscription, when the caller has it (see `settled`)."""
        held_before = position.quantity
        await repository.fenced_update(
            session, trade.id, fence, **filled(position, trade, fill, rules)
        )
        row = await session.get(Trade, trade.id, populate_existing=True)
        assert row is not None
        await settled(session, row, position, held_before, rules, sub)
        return row


async def settled(
    session: AsyncSession,
    row: Trade,
    position: Position | None = None,
    held_before: Decimal | None = None,
    rules: SymbolRules | None = None,
    sub: Subscription | None = None,
) -> None:
    """Audit and tell an attempt's outcome in its transaction (see events.attempt_resolved);
    `sub`: the attempt's subscription, when the caller has it."""
    audit(session, row, f"order.{row.status}")
    sub = sub or await session.get(Subscription, row.subscription_id)
    assert sub is not None
    await events.attempt_resolved(session, sub, row, position, held_before, rules)


def resolved(row: Trade) -> Trade:
    """Count and log an attempt that has its outcome."""
    metrics.ORDERS.labels(row.mode, row.status).inc()
    log.info(f"order {row.status}", extra={**ids(row), "reason": row.reason})
    return row


def ids(trade: Trade) -> dict[str, object]:
    return {
        "trade_id": trade.id,
        "subscription_id": trade.subscription_id,
        "decision_id": trade.decision_id,
        "client_order_id": trade.client_order_id,
    }


def audit(session: AsyncSession, trade: Trade, action: str) -> None:
    session.add(AuditLog(**_audit_row(trade, action)))


async def audit_all(session: AsyncSession, actions: Sequence[tuple[Trade, str]]) -> None:
    """Audit rows of many attempts, e.g. a paper batch's, written now by one multi-row
    INSERT: on the connection, as a Core statement, not an ORM object each (whose
    construction and flush cost more than the row)."""
    if actions:
        connection = await session.connection()
        await connection.execute(
            insert(AuditLog), [_audit_row(trade, action) for trade, action in actions]
        )


def _audit_row(trade: Trade, action: str) -> dict[str, object]:
    return {
        "action": action,
        "resource_type": "trade",
        "resource_id": trade.id,
        "outcome": trade.status,
    }


def stale(send_before: datetime | None) -> str:
    """The reason of a stale refusal; every one is made with it, so it is counted here."""
    metrics.STALE_REFUSALS.inc()
    return f"stale: this decision's orders had to be sent before {send_before}; nothing was sent"


def with_reason(reason: str | None, more: str) -> str:
    return f"{reason}; {more}" if reason else more


def filled(position: Position, trade: Trade, fill: Fill, rules: SymbolRules) -> dict[str, Any]:
    """Apply the fill to the (locked) position; the trade's columns that record it."""
    return {
        "status": "filled",
        "realized_pnl": apply_fill(position, Side(trade.side), fill, rules),
        "quantity": fill.quantity,
        "price": fill.price,
        "quote_quantity": fill.quote_quantity,
        "fee": fill.fee,
        "fee_asset": fill.fee_asset,
        "exchange_order_id": fill.exchange_order_id,
    }
