"""Request and response bodies of backtests, with the limits a request must respect."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.schemas import MAX_QUOTE, QUOTE_PLACES, Amount
from app.subscriptions.schemas import Timeframe

_SYMBOL = re.compile(r"^[A-Z0-9]{5,20}$")
# The most candles one backtest replays: eleven years of 1h candles, 70 days of 1m ones.
MAX_CANDLES = 100_000
MAX_LLM_COST_USD = Decimal(10_000)


class Status(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class BacktestCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "start": "2026-01-01T00:00:00Z",
                    "end": "2026-03-01T00:00:00Z",
                    "quote_amount": "1000",
                    "llm": "recorded",
                }
            ]
        },
    )

    version: int | None = Field(
        default=None, ge=1, description="the bot version to replay; default: its latest"
    )
    symbol: str = Field(description="upper-case Binance symbol, e.g. BTCUSDT")
    timeframe: Timeframe
    start: AwareDatetime = Field(description="the first candle to decide on opens at or after it")
    end: AwareDatetime = Field(description="exclusive; not in the future")
    quote_amount: Amount = Field(
        gt=0,
        le=MAX_QUOTE,
        decimal_places=QUOTE_PLACES,
        description="starting capital in the quote currency, at most MAX_QUOTE_AMOUNT",
    )
    llm: Literal["recorded", "indicators", "ask"] = Field(
        default="recorded",
        description="recorded: the votes live decisions stored for each candle, indicators "
        "elsewhere; indicators: no LLM; ask: ask the bot's LLMs now (charged to its budget), "
        "for the bot's owner or an admin only: a renter's ask is a 403",
    )
    max_llm_cost_usd: Amount = Field(
        default=Decimal(0),
        ge=0,
        le=MAX_LLM_COST_USD,
        decimal_places=QUOTE_PLACES,
        description="llm=ask: refused when 0, or when the up-front estimate is above it",
    )

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if not _SYMBOL.match(value):
            raise ValueError("must be 5-20 upper-case letters or digits, like BTCUSDT")
        return value

    @model_validator(mode="after")
    def _window(self) -> BacktestCreate:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        if self.end > datetime.now(self.end.tzinfo):
            raise ValueError("end must not be in the future: only closed candles are replayed")
        return self


class Progress(BaseModel):
    candles_done: int
    candles_total: int
    percent: Amount


class BacktestOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0193b6d2e3f405162738495a6b7c8d9e",
                    "bot_id": "0193b6c8a1f27c3e9d4b5a6f7e8d9c0b",
                    "version": 1,
                    "symbol": "BTCUSDT",
                    "timeframe": "1h",
                    "start": "2026-01-01T00:00:00Z",
                    "end": "2026-03-01T00:00:00Z",
                    "quote_amount": "1000",
                    "llm": "recorded",
                    "max_llm_cost_usd": "0",
                    "llm_estimate_usd": "0",
                    "llm_cost_usd": "0",
                    "status": "running",
                    "progress": {"candles_done": 512, "candles_total": 1416, "percent": "36.16"},
                    "result": None,
                    "error": None,
                    "created_at": "2026-03-02T08:00:00Z",
                }
            ]
        }
    )

    id: str
    bot_id: str
    version: int
    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    quote_amount: Amount
    llm: str
    max_llm_cost_usd: Amount
    llm_estimate_usd: Amount
    llm_cost_usd: Amount
    status: Status
    progress: Progress
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
