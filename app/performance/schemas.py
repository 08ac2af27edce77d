"""The API body of a subscription's performance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from app.core.schemas import Amount


class PerformanceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "equity": "1012.35",
                    "realized_pnl": "9.8",
                    "unrealized_pnl": "2.55",
                    "win_rate": "0.6",
                    "max_drawdown_pct": "1.9",
                    "sharpe": "1.42",
                    "trade_count": 10,
                    "winning_trades": 3,
                    "losing_trades": 2,
                }
            ]
        }
    )

    equity: Amount
    realized_pnl: Amount
    unrealized_pnl: Amount
    win_rate: Amount | None
    max_drawdown_pct: Amount
    sharpe: Amount | None
    trade_count: int
    winning_trades: int
    losing_trades: int
