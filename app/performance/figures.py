"""The figures of an equity curve, each defined once for live subscriptions, backtests and track
records: simple returns, maximum drawdown, the Sharpe and Sortino ratios, and the periods of a
year that annualise them.

Returns and drawdown are exact decimals. Sharpe is one formula over either arithmetic: live
performance computes it from Decimal returns, a backtest from float returns (its statistics are
sample estimates reported rounded); each caller rounds the result for presentation.

Annualisation: crypto trades every day of the year, so a timeframe has 365 * 24h / its length
periods a year (8760 for 1h, 365 for 1d); the risk-free rate is 0.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

from app.trading.market_data import interval_ms

# Live and track-record figures are shown to 4 places.
FIGURE_PLACES = Decimal("0.0001")
_YEAR_MS = 365 * 24 * 3600 * 1000

Number = TypeVar("Number", float, Decimal)


def periods_per_year(timeframe: str) -> int:
    return _YEAR_MS // interval_ms(timeframe)


def simple_returns(equity: Sequence[Decimal]) -> list[Decimal]:
    """The return between consecutive equity points; a point at or below zero starts none."""
    return [(b - a) / a for a, b in itertools.pairwise(equity) if a > 0]


def period_returns(equity: Sequence[Decimal]) -> list[float]:
    """The simple returns as floats, for the sample statistics of a backtest."""
    return [float(r) for r in simple_returns(equity)]


def max_drawdown(equity: Sequence[Decimal]) -> Decimal:
    """The largest fall from a running peak, as an exact fraction of that peak (0 to 1)."""
    peak, worst = Decimal(0), Decimal(0)
    for point in equity:
        peak = max(peak, point)
        if peak > 0:
            worst = max(worst, (peak - point) / peak)
    return worst


def drawdown_percent(equity: Sequence[float]) -> list[float]:
    """How far below its running peak each point of a curve to draw is, in percent (0 or
    negative): floats, for a picture, not money."""
    peak, drawdown = float("-inf"), []
    for value in equity:
        peak = max(peak, value)
        drawdown.append((value / peak - 1) * 100 if peak > 0 else 0.0)
    return drawdown


def max_drawdown_pct(equity: Sequence[Decimal]) -> Decimal:
    """The maximum drawdown in percent, to 4 places."""
    return (max_drawdown(equity) * 100).quantize(FIGURE_PLACES)


def sharpe(returns: Sequence[Number], periods: int) -> Number | None:
    """mean / sample standard deviation * sqrt(periods), in the returns' own arithmetic; None
    when undefined (under two returns, or no variance)."""
    if len(returns) < 2:
        return None
    deviation = statistics.stdev(returns)
    if deviation == 0:
        return None
    mean = statistics.mean(returns)
    if isinstance(deviation, Decimal):
        return mean / deviation * Decimal(periods).sqrt()
    return mean / deviation * math.sqrt(periods)


def sortino(returns: Sequence[float], periods: int) -> float | None:
    """mean / downside deviation * sqrt(periods), the downside deviation being the root mean
    square of the negative returns over all periods (target 0); None when undefined."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside == 0:
        return None
    return statistics.fmean(returns) / downside * math.sqrt(periods)
