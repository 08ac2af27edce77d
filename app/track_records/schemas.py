from __future__ import annotations

from datetime import date

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
