"""A bot version replayed over closed candles on the code that trades live.

Per candle i of the window, in this order:
  1. the order decided at candle i-1 is risk-checked and paper-filled at candle i's open
     (live: the execute job runs as the candle closes, at the ticker price, which is then the
     next candle's open);
  2. the protective exits (stop-loss, take-profit, trailing stop) are checked against candle
     i's low and high, the stops first: when one candle touches both a stop and the
     take-profit, the replay takes the stop (pessimistic, as nobody knows which came first);
  3. the equity is marked at candle i's close;
  4. the decision at candle i's close sees candles[:i+1] only (point in time), through the
     last `history_needed` of them, exactly the window the live decision reads.

Money is Decimal throughout; the state serialises to JSON (Decimals as strings) so a replay
split into chunks, with the state stored between them, is the same replay as one in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from app.bots.strategy import Strategy
from app.integrations.binance.filters import SymbolRules
from app.trading.candles import Candle
from app.trading.ensemble import Ballot

LlmMode = Literal["recorded", "indicators", "ask"]
VoteOrigin = Literal["recorded", "asked", "none"]


@dataclass(frozen=True)
class CandleVotes:
    ballots: list[Ballot]  # as the live decision combines them
    voters_asked: int  # what `combine` gets as the number of results
    cost_usd: Decimal  # LLM cost of these votes (0 for recorded or none)
    source: VoteOrigin
    reason: str | None = None  # why there are no votes, as a live decision's fallback reason


class VoteSource(Protocol):
    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        """The LLM votes for the decision at `candle_open`: `snapshot` is its indicator
        snapshot and `closes` the candles the live decision reads (oldest first, the decided
        candle last; a prompt takes the last closes of them as live does)."""
        ...


class IndicatorsOnly:
    """A VoteSource that asks nobody: every decision is the indicator score alone."""

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        raise NotImplementedError


@dataclass(frozen=True)
class ReplaySpec:
    strategy: Strategy  # the bot version's strategy
    symbol: str
    timeframe: str
    rules: SymbolRules  # exchange filters, as live paper fills use them
    # Starting capital in quote asset: the paper wallet, and what each buy asks to spend
    # (a subscription whose quote_amount is its whole wallet). Fees are Binance's rate, as
    # live paper fills charge them (app.trading.fills).
    quote_amount: Decimal
    slippage: Decimal  # as the live paper fill takes it from settings (paper_slippage)
    start: datetime  # first candle open to decide on (UTC)
    end: datetime  # exclusive


@dataclass
class ReplayState:
    """Everything needed to resume after a crash."""

    next_index: int  # index into `candles` of the next candle to replay
    quote_balance: Decimal
    quantity: Decimal
    average_cost: Decimal
    realized_pnl: Decimal
    peak_price: Decimal | None  # highest price seen while holding (trailing stop)
    entries: int  # buys filled: one protective exit per entry, as live
    exits_tried: int  # `entries` at the last protective exit attempt
    pending: dict[str, Any] | None  # the decision whose order fills at the next open
    paused: str | None  # why the replayed subscription stopped trading (max drawdown)
    equity_peak: Decimal
    equity: list[list[str]]  # [close time ISO, equity] per replayed candle
    candles_in_position: int
    decisions: list[dict[str, Any]]  # every BUY/SELL decision and what became of its order
    holds: int  # HOLD decisions (counted, not kept)
    trades: list[dict[str, Any]]  # every fill, oldest first
    llm_cost_usd: Decimal
    vote_sources: dict[str, int]  # decisions per vote source: recorded, asked, none

    def to_json(self) -> dict[str, Any]:
        """Only str/int/list/dict/None; Decimals as strings."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayState:
        raise NotImplementedError

    @classmethod
    def initial(cls, spec: ReplaySpec, candles: Sequence[Candle]) -> ReplayState:
        """Flat, with the whole capital in the wallet, at the first candle opening at or after
        `spec.start`; ValueError when `candles` lacks the warm-up before it."""
        raise NotImplementedError


def warmup_candles(strategy: Strategy) -> int:
    """Closed candles needed before `start`: the first decision reads the same number of
    candles as live (`history_needed`), itself the last of them."""
    raise NotImplementedError


async def advance(
    spec: ReplaySpec,
    candles: Sequence[Candle],
    state: ReplayState,
    votes: VoteSource,
    *,
    until_index: int,
) -> ReplayState:
    """Replays candles[state.next_index:until_index]; `candles` holds every closed candle from
    start - warmup to end, oldest first. The decision at index i sees candles[:i+1] only
    (point in time); its order fills at candles[i+1].open; exits are checked on each candle's
    high/low (pessimistic when both stop and take-profit are touched)."""
    raise NotImplementedError


def end_index(spec: ReplaySpec, candles: Sequence[Candle]) -> int:
    """One past the last candle that opens before `spec.end`: `until_index` of a whole run."""
    raise NotImplementedError


def result(spec: ReplaySpec, candles: Sequence[Candle], state: ReplayState) -> dict[str, Any]:
    """The finished backtest as JSON-ready data, deterministic (same inputs -> byte-identical when
    dumped with sort_keys): metrics (total return, buy-and-hold return, max drawdown, Sharpe and
    Sortino with stated annualisation, win rate, profit factor, trades, exposure, fees, LLM cost,
    LLM coverage), the equity curve, every trade with the decision (index, time, action,
    indicator snapshot, votes, reason) that caused it."""
    raise NotImplementedError
