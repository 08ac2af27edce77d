"""The public track record's body: renters' results per mode as banded counts (small groups
suppressed), decisions, LLM spend and backtests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from app.core.schemas import Amount

_SUPPRESSED: dict[str, JsonValue] = {
    "suppressed": True,
    "renters": None,
    "return_pct": None,
    "max_drawdown_pct": None,
    "fills": None,
}

_CALLS: dict[str, JsonValue] = {
    "scored": 21,
    "hit_rate": "0.5714",
    "holds": 147,
    "directional_return_pct": "1.82",
}
_VERSION_WINDOW: dict[str, JsonValue] = {
    "decisions": 168,
    "abstention_rate": "0.0417",
    "agreement_rate": "0.8125",
    "ensemble": _CALLS,
    "indicators_only": {**_CALLS, "scored": 40, "hit_rate": "0.5", "holds": 128},
    "buy_and_hold_return_pct": "0.95",
}
_VOTER_WINDOW: dict[str, JsonValue] = {
    "decisions": 168,
    "abstention_rate": "0.0417",
    "agreement_rate": "0.8125",
    "calls": _CALLS,
}


class PercentBand(BaseModel):
    """How many renters' figure falls in [low, high), in %."""

    low: Amount | None = Field(description="inclusive; null: no lower bound")
    high: Amount | None = Field(description="exclusive; null: no upper bound")
    renters: int = Field(description="at least 3: a band with fewer is merged with the next")


class CountBand(BaseModel):
    """How many renters made a number of fills in [low, high)."""

    low: int = Field(description="inclusive")
    high: int | None = Field(description="exclusive; null: no upper bound")
    renters: int = Field(description="at least 3: a band with fewer is merged with the next")


class ModeRecord(BaseModel):
    """What the renters of the bot in one execution mode achieved, as counts of renters per
    band of fixed edges, never a value computed from one renter's figure: the body depends on
    each renter only through the band their figure falls in (docs/track-records.md). A renter
    counts once with at least one fill in the mode; their figures sum their subscriptions in
    it that have a fill. A mode with fewer than TRACK_RECORD_MIN_RENTERS such renters is
    suppressed: `suppressed` is true and every figure is null."""

    suppressed: bool = Field(
        description="true when fewer than TRACK_RECORD_MIN_RENTERS renters have a fill in this mode"
    )
    renters: int | None = Field(
        description="distinct principals with at least one fill in this mode, whatever their "
        "subscriptions' status"
    )
    return_pct: list[PercentBand] | None = Field(
        description="per renter: (latest hourly equity - starting capital) / starting capital "
        "x 100 over their subscriptions with a fill, the starting capital being the one equity "
        "is recorded from (quote_amount x the service's paper wallet multiple); a subscription "
        "without an equity point yet counts as its capital. Edges -25, -10, -5, 0, 5, 10, 25"
    )
    max_drawdown_pct: list[PercentBand] | None = Field(
        description="per renter: the largest fall from a peak of the equity of any of their "
        "subscriptions with a fill since it started, in %. Edges 0, 5, 10, 25, 50"
    )
    fills: list[CountBand] | None = Field(
        description="per renter: their filled orders in this mode. Edges 1, 5, 10, 25, 100"
    )


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


class Calls(BaseModel):
    """A signal's calls scored against the next candle's close: a BUY is right when it is
    higher than the decided candle's close, a SELL when lower; a HOLD is counted apart, and a
    call whose next candle is not stored is not scored."""

    scored: int = Field(description="BUY and SELL calls whose next candle is stored")
    hit_rate: Amount | None = Field(description="right calls / scored, 0 to 1; null: none")
    holds: int = Field(description="HOLD calls")
    directional_return_pct: Amount = Field(
        description="the next candle's return summed over the scored calls, + for a BUY and "
        "- for a SELL, in %"
    )


class VersionWindow(BaseModel):
    decisions: int
    abstention_rate: Amount | None = Field(
        description="abstained LLM votes / votes asked, 0 to 1; null: no vote asked"
    )
    agreement_rate: Amount | None = Field(
        description="LLM votes equal to the ensemble's action / votes answered; null: none"
    )
    ensemble: Calls = Field(description="the decisions' actions")
    indicators_only: Calls = Field(
        description="what the decision's ensemble rule makes of its recorded indicator score "
        "with no LLM vote, over the same candles"
    )
    buy_and_hold_return_pct: Amount = Field(
        description="the next candle's return summed over the same candles (those whose next "
        "candle is stored), in %"
    )


class VoterWindow(BaseModel):
    decisions: int = Field(description="decisions the voter was asked on")
    abstention_rate: Amount | None
    agreement_rate: Amount | None = Field(
        description="its answers equal to the ensemble's action / its answers"
    )
    calls: Calls = Field(description="its own answers")


class VersionQuality(BaseModel):
    version: int
    last_30_days: VersionWindow
    since_listing: VersionWindow


class VoterQuality(BaseModel):
    provider: str
    model: str
    last_30_days: VoterWindow
    since_listing: VoterWindow


class DecisionQuality(BaseModel):
    """How good the bot's calls were. `last_30_days`: decisions on candles of the 30 UTC days
    that end on the day of its latest decision; `since_listing`: on candles from its first
    listing on (every decision, for a bot never listed)."""

    versions: list[VersionQuality] = Field(description="by version")
    voters: list[VoterQuality] = Field(description="by provider, then model, over all versions")


class QuantileBand(BaseModel):
    """The band of fixed edges a quantile (nearest rank) falls in: low inclusive, high
    exclusive, null unbounded."""

    low: Amount | None
    high: Amount | None


class GapFigure(BaseModel):
    median: QuantileBand
    p90: QuantileBand


class PaperToLiveGap(BaseModel):
    """For decisions filled both in paper and in testnet or live: each testnet or live fill
    against the median paper fill of the same decision. Built from renters' fills, so shown
    only with TRACK_RECORD_MIN_RENTERS distinct testnet or live renters among them, and only as
    the band each quantile falls in (docs/track-records.md)."""

    suppressed: bool
    price_bps: GapFigure | None = Field(
        description="how much worse the fill price was than paper, in basis points (higher "
        "for a BUY, lower for a SELL is positive). Edges -50, -25, -10, -5, 0, 5, 10, 25, 50"
    )
    fee_bps: GapFigure | None = Field(
        description="the fee in basis points of the fill's value, minus paper's; fills whose "
        "fee is in neither of the symbol's assets are left out. Edges -10, -5, 0, 5, 10, 25"
    )


class TrackRecordOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bot_id": "019a1b2c3d4e5f60718293a4b5c6d7e8",
                    "modes": {
                        "paper": {
                            "suppressed": False,
                            "renters": 12,
                            "return_pct": [
                                {"low": None, "high": "-5", "renters": 3},
                                {"low": "-5", "high": "5", "renters": 6},
                                {"low": "5", "high": None, "renters": 3},
                            ],
                            "max_drawdown_pct": [
                                {"low": "0", "high": "5", "renters": 5},
                                {"low": "5", "high": "10", "renters": 4},
                                {"low": "10", "high": None, "renters": 3},
                            ],
                            "fills": [
                                {"low": 1, "high": 10, "renters": 7},
                                {"low": 10, "high": None, "renters": 5},
                            ],
                        },
                        "testnet": _SUPPRESSED,
                        "live": _SUPPRESSED,
                    },
                    "decisions": {"BUY": 12, "SELL": 9, "HOLD": 147},
                    "quality": {
                        "versions": [
                            {
                                "version": 1,
                                "last_30_days": _VERSION_WINDOW,
                                "since_listing": _VERSION_WINDOW,
                            }
                        ],
                        "voters": [
                            {
                                "provider": "openai",
                                "model": "gpt-4o-mini",
                                "last_30_days": _VOTER_WINDOW,
                                "since_listing": _VOTER_WINDOW,
                            }
                        ],
                    },
                    "paper_to_live": {
                        "suppressed": False,
                        "price_bps": {
                            "median": {"low": "0", "high": "5"},
                            "p90": {"low": "10", "high": "25"},
                        },
                        "fee_bps": {
                            "median": {"low": "0", "high": "5"},
                            "p90": {"low": "0", "high": "5"},
                        },
                    },
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
    quality: DecisionQuality
    paper_to_live: PaperToLiveGap
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
