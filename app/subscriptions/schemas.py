from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from app.core.schemas import MAX_QUOTE, PERCENT_PLACES, QUOTE_PLACES, Amount

# The intervals a decision can run on: Binance's, from one minute to one day.
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
Timeframe = Literal["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"]
_SYMBOL = re.compile(r"^[A-Z0-9]{5,20}$")


class Mode(StrEnum):
    paper = "paper"
    testnet = "testnet"
    live = "live"


class Status(StrEnum):
    active = "active"
    paused = "paused"
    cancelled = "cancelled"
    # ends_at has passed and the closing sale is not resolved yet; then `expired`.
    expiring = "expiring"
    expired = "expired"


class RiskOverrides(BaseModel):
    """Per-subscription limits; unset fields fall back to the bot's risk defaults."""

    model_config = ConfigDict(extra="forbid")

    max_trades_per_day: int | None = Field(default=None, ge=1, le=10_000)
    max_position_quote: Amount | None = Field(
        default=None, gt=0, le=MAX_QUOTE, decimal_places=QUOTE_PLACES
    )
    daily_loss_limit_quote: Amount | None = Field(
        default=None, gt=0, le=MAX_QUOTE, decimal_places=QUOTE_PLACES
    )
    max_drawdown_pct: Amount | None = Field(
        default=None, gt=0, le=100, decimal_places=PERCENT_PLACES
    )
    cooldown_minutes_after_loss: int | None = Field(default=None, ge=0, le=10_080)
    stop_loss_pct: Amount | None = Field(default=None, gt=0, le=100, decimal_places=PERCENT_PLACES)
    take_profit_pct: Amount | None = Field(
        default=None, gt=0, le=1000, decimal_places=PERCENT_PLACES
    )
    trailing_stop_pct: Amount | None = Field(
        default=None, gt=0, le=100, decimal_places=PERCENT_PLACES
    )


# Far enough for any rental, and far from datetime's end: 9999-12-31 at UTC-12 overflows
# when moved to UTC for storage.
_LAST_YEAR = 8999


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # Checked on the naive fields first: comparing would itself convert to UTC.
    if value.year > _LAST_YEAR:
        raise ValueError(f"must be before the year {_LAST_YEAR + 1}")
    if value <= datetime.now(value.tzinfo):
        raise ValueError("must be in the future")
    return value


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "bot_id": "<bot id>",
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "mode": "paper",
                    "quote_amount": "100",
                }
            ]
        },
    )

    bot_id: str = Field(min_length=1, max_length=32)
    symbol: str = Field(description="upper-case Binance symbol, e.g. BTCUSDT")
    timeframe: Timeframe
    mode: Mode
    quote_amount: Amount = Field(
        gt=0,
        le=MAX_QUOTE,
        decimal_places=QUOTE_PLACES,
        description="quote currency spent per buy, at most the service's MAX_QUOTE_AMOUNT",
    )
    risk: RiskOverrides = Field(default_factory=RiskOverrides)
    ends_at: AwareDatetime | None = None

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if not _SYMBOL.match(value):
            raise ValueError("must be 5-20 upper-case letters or digits, like BTCUSDT")
        return value

    _ends_in_future = field_validator("ends_at")(_future)


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[Status.active, Status.paused, Status.cancelled] | None = None
    risk: RiskOverrides | None = None
    ends_at: AwareDatetime | None = None

    _ends_in_future = field_validator("ends_at")(_future)


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    bot_id: str
    bot_version_id: str
    symbol: str
    timeframe: str
    mode: Mode
    quote_amount: Amount
    risk: dict[str, Any]
    status: Status
    status_reason: str | None
    ends_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TradeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    decision_id: str | None
    client_order_id: str
    mode: str
    symbol: str
    side: str
    status: str
    quantity: Amount | None
    price: Amount | None
    quote_quantity: Amount | None
    fee: Amount | None
    fee_asset: str | None
    reason: str | None
    created_at: datetime


class VoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    provider: str
    model: str
    weight: Amount
    action: str | None
    confidence: Amount | None
    reasoning: str | None
    cited_indicators: list[str]
    abstain_reason: str | None


class DecisionOut(BaseModel):
    id: str
    symbol: str
    timeframe: str
    candle_open_at: datetime
    action: str
    indicator_score: Amount
    combined_score: Amount
    indicators: dict[str, Any]
    rule_version: str
    rule_params: dict[str, Any]
    fallback_reason: str | None
    votes: list[VoteOut]


class PerformanceOut(BaseModel):
    equity: Amount
    realized_pnl: Amount
    unrealized_pnl: Amount
    win_rate: Amount | None
    max_drawdown_pct: Amount
    sharpe: Amount | None
    trade_count: int
    winning_trades: int
    losing_trades: int
