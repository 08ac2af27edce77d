"""The API bodies of subscriptions (creating and updating one, what a renter reads of it, its
trades and its decisions) and their vocabulary: modes, statuses, timeframes, symbols."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import JsonDict

from app.core.schemas import (
    MAX_QUOTE,
    QUOTE_PLACES,
    Amount,
    PositiveGainPercent,
    PositivePercent,
    PositiveQuote,
)
from app.verification.schemas import CandleWindow

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
    max_position_quote: PositiveQuote | None = None
    daily_loss_limit_quote: PositiveQuote | None = None
    max_drawdown_pct: PositivePercent | None = None
    cooldown_minutes_after_loss: int | None = Field(default=None, ge=0, le=10_080)
    stop_loss_pct: PositivePercent | None = None
    take_profit_pct: PositiveGainPercent | None = None
    trailing_stop_pct: PositivePercent | None = None


_EXAMPLE_SUBSCRIPTION_ID = "0193b6c8c3d4e5f60718293a4b5c6d7e"
_EXAMPLE_DECISION_ID = "0193b6cfe0f1a2b3c4d5e6f708192a3b"
_EXAMPLE_VOTE: JsonDict = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "weight": "1",
    "action": "BUY",
    "confidence": "0.7",
    "reasoning": "RSI recovering from oversold while price holds above the 50 EMA.",
    "cited_indicators": ["rsi", "ema_cross"],
    "abstain_reason": None,
    "seat": 0,
    "prompt_sha256": "5d1f" + "0" * 60,
    "response_text": '{"action":"BUY","confidence":0.7,"reasoning":"RSI recovering from '
    'oversold while price holds above the 50 EMA.","cited_indicators":["rsi","ema_cross"]}',
    "tokens_in": 512,
    "tokens_out": 40,
    "cost_usd": "0.0001008",
    "latency_ms": 830,
}

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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "paused"},
                {"risk": {"stop_loss_pct": "5", "max_trades_per_day": 6}},
            ]
        },
    )

    status: Literal[Status.active, Status.paused, Status.cancelled] | None = None
    risk: RiskOverrides | None = None
    ends_at: AwareDatetime | None = None

    _ends_in_future = field_validator("ends_at")(_future)


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": _EXAMPLE_SUBSCRIPTION_ID,
                    "bot_id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
                    "bot_version_id": "0193b6c8a1f37d4e5f6a7b8c9d0e1f2a",
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "mode": "paper",
                    "quote_amount": "100",
                    "risk": {"stop_loss_pct": "5"},
                    "status": "active",
                    "status_reason": None,
                    "ends_at": None,
                    "created_at": "2026-01-15T10:00:00Z",
                    "updated_at": "2026-01-15T10:00:00Z",
                }
            ]
        },
    )

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
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0193b6d0c4e5f60718293a4b5c6d7e8f",
                    "decision_id": _EXAMPLE_DECISION_ID,
                    "client_order_id": "bm-0193b6d0c4e5f60718293a4b5c6d7e8f",
                    "mode": "paper",
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "status": "filled",
                    "quantity": "0.00105",
                    "price": "95120.5",
                    "quote_quantity": "99.876525",
                    "fee": "0.00000105",
                    "fee_asset": "BTC",
                    "reason": None,
                    "created_at": "2026-01-15T11:00:02Z",
                }
            ]
        },
    )

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
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE_VOTE]})

    provider: str
    model: str
    weight: Amount
    action: str | None
    confidence: Amount | None
    reasoning: str | None
    cited_indicators: list[str]
    abstain_reason: str | None
    seat: int
    prompt_sha256: str | None
    response_text: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: Amount
    latency_ms: int


class DecisionOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _EXAMPLE_DECISION_ID,
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "candle_open_at": "2026-01-15T10:00:00Z",
                    "action": "BUY",
                    "indicator_score": "0.41",
                    "combined_score": "0.5525",
                    "indicators": {
                        "rsi": {
                            "period": 14,
                            "value": 38.2,
                            "signal": 0.41,
                            "weight": "1",
                            "contribution": 0.41,
                        }
                    },
                    "rule_version": "ensemble-v1",
                    "rule_params": {"threshold": "0.25", "quorum": None, "fallback": "hold"},
                    "fallback_reason": None,
                    "decided_at": "2026-01-15T11:00:01.204512Z",
                    "candles": {
                        "count": 100,
                        "first_open_at": "2026-01-11T07:00:00Z",
                        "last_open_at": "2026-01-15T10:00:00Z",
                        "sha256": "77ab" + "0" * 60,
                    },
                    "votes": [_EXAMPLE_VOTE],
                }
            ]
        }
    )

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
    decided_at: datetime
    # None on decisions made before their candle window was recorded.
    candles: CandleWindow | None
    votes: list[VoteOut]
