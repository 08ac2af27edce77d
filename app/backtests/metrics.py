"""The statistics of a backtest, from its equity curve and its trades.

Money in and out is Decimal (out as strings); returns and ratios are exact decimals too, except
Sharpe and Sortino, which are statistics of a sample (a mean over a standard deviation and a
square root of the year's periods) computed in float and reported rounded.

Annualisation: crypto trades every day of the year, so a timeframe has 365 * 24h / its
length periods a year (8760 for 1h, 365 for 1d); the risk-free rate is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def periods_per_year(timeframe: str) -> int:
    raise NotImplementedError


def period_returns(equity: Sequence[Decimal]) -> list[float]:
    """Simple returns between consecutive equity points."""
    raise NotImplementedError


def sharpe(returns: Sequence[float], periods: int) -> float | None:
    """mean / sample standard deviation * sqrt(periods); None when undefined (no variance)."""
    raise NotImplementedError


def sortino(returns: Sequence[float], periods: int) -> float | None:
    """mean / downside deviation * sqrt(periods), the downside deviation being the root mean
    square of the negative returns over all periods (target 0); None when undefined."""
    raise NotImplementedError


def max_drawdown(equity: Sequence[Decimal]) -> Decimal:
    """The largest fall from a running peak, as a fraction of that peak (0 to 1)."""
    raise NotImplementedError


@dataclass(frozen=True)
class Inputs:
    timeframe: str
    capital: Decimal  # the wallet at the start
    equity: Sequence[Decimal]  # at the start, then at every replayed candle's close
    first_open: Decimal  # the window's first open and last close: buy-and-hold
    last_close: Decimal
    closed_pnls: Sequence[Decimal]  # realized PnL of every filled sell
    trades: int  # fills, buys and sells
    fees_quote: Decimal  # every fee, valued in the quote asset at its fill price
    llm_cost_usd: Decimal
    candles_in_position: int
    candles: int


def summary(inputs: Inputs) -> dict[str, Any]:
    """The metrics of the result, JSON-ready: decimals as strings, ratios rounded."""
    raise NotImplementedError
