"""The public track record's body: per-mode aggregates of renters' results, decisions, LLM
spend and backtests, with small groups suppressed."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from app.core.schemas import Amount

_SUPPRESSED: dict[str, JsonValue] = {
    "suppressed": True,
    "renters": None,
    "return_pct": None,
    "max_drawdown_pct_median": None,
    "trade_count": None,
}


class ReturnQuartiles(BaseModel):
    """Quartiles of the returns of the mode's subscriptions (a renter with two counts twice),
    in %, by linear interpolation between the closest ranks (Python's
    `statistics.quantiles(method="inclusive")`, numpy's default)."""

    p25: Amount
    median: Amount
    p75: Amount


class ModeRecord(BaseModel):
    """What the bot's subscriptions in one execution mode achieved. A mode with fewer than 3
    renters (none included) is suppressed: `suppressed` is true and every figure is null, so
    no single renter's result can be read from it."""

    suppressed: bool = Field(description="true when fewer than 3 renters use this mode")
    renters: int | None = Field(
        description="distinct principals with a subscription to the bot in this mode, "
        "whatever its status"
    )
    return_pct: ReturnQuartiles | None = Field(
        description="per subscription: (latest hourly equity - starting capital) / starting "
        "capital x 100, the starting capital being the one its equity is recorded from "
        "(quote_amount x the service's paper wallet multiple); a subscription without an "
        "equity point yet counts as 0"
    )
    max_drawdown_pct_median: Amount | None = Field(
        description="median over the subscriptions of each one's largest fall from a peak of "
        "its equity since it started (starting capital, then its hourly equity points), in %"
    )
    trade_count: int | None = Field(description="filled orders of these subscriptions")


class ModeRecords(BaseModel):
    paper: ModeRecord
    testnet: ModeRecord
    live: ModeRecord


class DecisionCounts(BaseModel):
    """The bot's decisions across all its versions, symbols and timeframes, by action."""

    BUY: int
    SELL: int
    HOLD: int


class DailyLlmCost(BaseModel):
    day: date = Field(description="UTC day of the candles decided")
    cost_usd: Amount = Field(description="what the LLM votes on those decisions cost")


class BacktestSummary(BaseModel):
    """The latest succeeded backtest of one bot version: its window, and the metrics of its
    result (GET /api/v1/backtests/{id} gives the whole result to whoever started it)."""

    version: int = Field(description="the bot version replayed")
    symbol: str
    timeframe: str
    start: datetime = Field(description="the window's first candle opens at or after it")
    end: datetime = Field(description="exclusive")
    llm: Literal["recorded", "indicators", "ask"] = Field(
        description="where the LLM votes came from"
    )
    total_return: Amount = Field(description="final equity / starting capital - 1, a fraction")
    buy_and_hold_return: Amount = Field(
        description="the symbol's price change over the window, first open to last close, "
        "a fraction"
    )
    max_drawdown: Amount = Field(
        description="the equity's largest fall from a running peak, a fraction of that peak"
    )
    sharpe: float | None = Field(
        description="annualised over 365 days of the timeframe's periods, risk-free rate 0; "
        "null when undefined (fewer than two returns, or no variance)"
    )
    trades: int = Field(description="fills, buys and sells")


class TrackRecordOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bot_id": "019a1b2c3d4e5f60718293a4b5c6d7e8",
                    "modes": {
                        "paper": {
                            "suppressed": False,
                            "renters": 5,
                            "return_pct": {"p25": "-1.5", "median": "2", "p75": "4.25"},
                            "max_drawdown_pct_median": "3.1",
                            "trade_count": 42,
                        },
                        "testnet": _SUPPRESSED,
                        "live": _SUPPRESSED,
                    },
                    "decisions": {"BUY": 12, "SELL": 9, "HOLD": 147},
                    "llm_cost_per_day": [
                        {"day": "2026-11-19", "cost_usd": "0.0421"},
                        {"day": "2026-11-20", "cost_usd": "0.0388"},
                    ],
                    "backtests": [
                        {
                            "version": 1,
                            "symbol": "BTCUSDT",
                            "timeframe": "1h",
                            "start": "2026-01-01T00:00:00Z",
                            "end": "2026-03-01T00:00:00Z",
                            "llm": "recorded",
                            "total_return": "0.0412",
                            "buy_and_hold_return": "0.0735",
                            "max_drawdown": "0.0521",
                            "sharpe": 1.384211,
                            "trades": 18,
                        }
                    ],
                }
            ]
        }
    )

    bot_id: str
    modes: ModeRecords
    decisions: DecisionCounts
    llm_cost_per_day: list[DailyLlmCost] = Field(
        description="the bot's LLM spend per day, oldest first, over the 30 days that end on "
        "the day of its latest decision; days without a decision are left out"
    )
    backtests: list[BacktestSummary] = Field(
        description="per bot version with one, by version: the latest succeeded backtest "
        "(the last to finish) started by the bot's developer, an admin or an operator from "
        "the command line. A renter's backtest is not shown: what a renter tried is theirs, "
        "and the record is what the bot's maker and the service stand behind"
    )
