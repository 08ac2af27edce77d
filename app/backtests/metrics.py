"""The summary of a backtest, from its equity curve and its trades.

Money in and out is Decimal (out as strings); returns and ratios are exact decimals too, except
Sharpe and Sortino, which are statistics of a sample computed in float and reported rounded.
The curve's figures (returns, drawdown, Sharpe, Sortino, annualisation) are those of
app/performance/figures.py; this module owns what only a backtest reports and how.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.performance import figures

MONEY_PLACES = Decimal("0.00000001")
RATIO_PLACES = Decimal("0.00000001")
STAT_DIGITS = 6


def text(value: Decimal) -> str:
    """A decimal as JSON carries it: fixed-point, never "0E-8"."""
    return format(value, "f")


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    """An exact fraction to RATIO_PLACES; 0 over nothing."""
    return (numerator / denominator).quantize(RATIO_PLACES) if denominator else Decimal(0)


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


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, STAT_DIGITS)


def summary(inputs: Inputs) -> dict[str, Any]:
    """The metrics of the result, JSON-ready: decimals as strings, ratios rounded."""
    periods = figures.periods_per_year(inputs.timeframe)
    returns = figures.period_returns(inputs.equity)
    wins = [p for p in inputs.closed_pnls if p > 0]
    losses = [p for p in inputs.closed_pnls if p < 0]
    gross_win, gross_loss = sum(wins, Decimal(0)), -sum(losses, Decimal(0))
    final = inputs.equity[-1] if inputs.equity else inputs.capital
    price_change = inputs.last_close - inputs.first_open
    return {
        "final_equity": text(final.quantize(MONEY_PLACES)),
        "total_return": text(ratio(final - inputs.capital, inputs.capital)),
        # The asset's price change over the window, first open to last close, without fees.
        "buy_and_hold_return": text(ratio(price_change, inputs.first_open)),
        "max_drawdown": text(figures.max_drawdown(inputs.equity).quantize(RATIO_PLACES)),
        "sharpe": _rounded(figures.sharpe(returns, periods)),
        "sortino": _rounded(figures.sortino(returns, periods)),
        "annualisation": {
            "periods_per_year": periods,
            "basis": f"{inputs.timeframe} returns of the equity at each close, 365 days a year",
            "risk_free_rate": "0",
        },
        "win_rate": text(ratio(Decimal(len(wins)), Decimal(len(inputs.closed_pnls)))),
        # None when nothing was lost: the ratio is unbounded.
        "profit_factor": text(ratio(gross_win, gross_loss)) if gross_loss else None,
        "trades": inputs.trades,
        "closed_trades": len(inputs.closed_pnls),
        "exposure": text(ratio(Decimal(inputs.candles_in_position), Decimal(inputs.candles))),
        "fees_quote": text(inputs.fees_quote.quantize(MONEY_PLACES)),
        "llm_cost_usd": text(inputs.llm_cost_usd),
    }
