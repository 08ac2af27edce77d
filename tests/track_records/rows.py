"""Rows a track record is built from, written straight to the database: a renter's equity
points and orders, and a bot's decisions with their votes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi import FastAPI
from sqlalchemy import delete

from app.models import Decision, LlmVote, PerformanceLog, Subscription, Trade

DAY = datetime(2026, 11, 20, tzinfo=UTC)


async def add(app: FastAPI, *rows: object) -> None:
    async with app.state.runtime.sessionmaker() as session:
        session.add_all(rows)
        await session.commit()


async def subscription(app: FastAPI, sub_id: str) -> Subscription:
    async with app.state.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, sub_id)
        assert sub is not None
        return sub


def equity_points(sub: Subscription, capital: Decimal, multiples: list[str]) -> list[object]:
    return [
        PerformanceLog(
            subscription_id=sub.id,
            recorded_at=DAY + timedelta(hours=hour),
            equity=capital * Decimal(multiple),
            realized_pnl=Decimal(0),
            unrealized_pnl=Decimal(0),
        )
        for hour, multiple in enumerate(multiples)
    ]


def trade(sub: Subscription, status: str = "filled", **fields: object) -> Trade:
    return Trade(
        subscription_id=sub.id,
        client_order_id=f"t{secrets.token_hex(8)}",
        mode=sub.mode,
        symbol=sub.symbol,
        side="BUY",
        status=status,
        quantity=Decimal("0.001"),
        price=Decimal(50000),
        **fields,
    )


async def set_results(
    app: FastAPI, sub: Subscription, capital: Decimal, multiples: list[str], fills: int
) -> None:
    """Replace the subscription's equity and orders: its results become these."""
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(
            delete(PerformanceLog).where(PerformanceLog.subscription_id == sub.id)
        )
        await session.execute(delete(Trade).where(Trade.subscription_id == sub.id))
        session.add_all(equity_points(sub, capital, multiples))
        session.add_all(trade(sub) for _ in range(fills))
        await session.commit()


def decision(version_id: str, candle: datetime, action: str, *costs: str) -> list[object]:
    row = Decision(
        bot_version_id=version_id,
        symbol="BTCUSDT",
        timeframe="1h",
        candle_open_at=candle,
        indicators={},
        indicator_score=Decimal(0),
        combined_score=Decimal(0),
        action=action,
        rule_version="test",
        rule_params={},
    )
    row.id = secrets.token_hex(16)
    votes = [
        LlmVote(
            decision_id=row.id,
            provider=f"provider{i}",
            model="m",
            weight=Decimal(1),
            action=action,
            cost_usd=Decimal(cost),
        )
        for i, cost in enumerate(costs)
    ]
    return [row, *votes]
