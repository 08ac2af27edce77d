"""What trading tells the event outbox: a decision made, an order attempt's outcome and what
it did to the position, a protective exit triggered.

Each writer adds its event to the transaction that makes the change, so the event commits
with it or not at all (app/events/service.py). Data holds what a UI renders without another
call, and never a credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.events.service import record, record_for_subscription
from app.events.types import EventType
from app.integrations.binance.filters import SymbolRules
from app.models import Decision, LlmVote, Position, Subscription, Trade
from app.trading.fills import Side

_OUTCOMES = {
    "filled": EventType.trade_filled,
    "refused": EventType.trade_refused,
    "rejected": EventType.trade_failed,
}


def decision_made(
    session: AsyncSession,
    bot_id: str,
    decision: Decision,
    votes: Sequence[LlmVote],
) -> None:
    """A bot-level fact: every renter of the bot version shares the decision."""
    record(
        session,
        EventType.decision_made,
        bot_id=bot_id,
        data={
            "decision_id": decision.id,
            "bot_id": bot_id,
            "bot_version_id": decision.bot_version_id,
            "symbol": decision.symbol,
            "timeframe": decision.timeframe,
            "candle_open_at": decision.candle_open_at,
            "action": decision.action,
            "combined_score": decision.combined_score,
            "indicator_score": decision.indicator_score,
            "fallback_reason": decision.fallback_reason,
            "votes": [
                {
                    "provider": vote.provider,
                    "model": vote.model,
                    "action": vote.action,
                    "confidence": vote.confidence,
                    "abstain_reason": vote.abstain_reason,
                }
                for vote in votes
            ],
        },
    )


async def exit_triggered(session: AsyncSession, sub: Subscription, trade: Trade, exit: str) -> None:
    """A protective exit's sale was attempted: written with the attempt's row, which exists
    once per exit (its client order id is unique), so the exit is told once."""
    await record_for_subscription(
        session,
        EventType.exit_triggered,
        sub,
        {"reason": exit, "detail": trade.reason, **_order(trade)},
    )


async def attempt_resolved(
    session: AsyncSession,
    sub: Subscription,
    trade: Trade,
    position: Position | None = None,
    held_before: Decimal | None = None,
    rules: SymbolRules | None = None,
) -> None:
    """The attempt's outcome (filled, refused or failed); for a fill, `position` after it,
    `held_before` what it held before and `rules` its symbol's, to tell a position opened
    from nothing or closed down to dust."""
    type = _OUTCOMES[trade.status]
    if type is not EventType.trade_filled:
        await record_for_subscription(session, type, sub, {"reason": trade.reason, **_order(trade)})
        return
    assert position is not None and held_before is not None and rules is not None
    assert trade.price is not None
    fill = {
        **_order(trade),
        "quantity": trade.quantity,
        "price": trade.price,
        "fee": trade.fee,
        "fee_asset": trade.fee_asset,
        "quote_quantity": trade.quote_quantity,
        "realized_pnl": trade.realized_pnl,
    }
    await record_for_subscription(session, type, sub, fill)
    held = {"position_quantity": position.quantity, "average_cost": position.average_cost}
    if trade.side == Side.BUY and rules.is_dust(held_before, trade.price):
        await record_for_subscription(session, EventType.position_opened, sub, {**fill, **held})
    elif trade.side == Side.SELL and rules.is_dust(position.quantity, trade.price):
        closed = {**fill, **held, "position_realized_pnl": position.realized_pnl}
        await record_for_subscription(session, EventType.position_closed, sub, closed)


def _order(trade: Trade) -> dict[str, object]:
    return {
        "trade_id": trade.id,
        "client_order_id": trade.client_order_id,
        "decision_id": trade.decision_id,
        "symbol": trade.symbol,
        "side": trade.side,
        "mode": trade.mode,
    }
