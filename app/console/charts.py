"""Server-side SVG charts of a backtest's equity and drawdown, and of renters' median equity:
polylines whose points, and the
data-* attributes beside them, carry the values drawn (a browser test reads them back)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.performance.figures import drawdown_percent

WIDTH, HEIGHT, MARGIN = 560, 200, 30
# Beyond this many points a line looks the same: every n-th point is drawn (and the last).
MAX_POINTS = 500


@dataclass(frozen=True)
class Chart:
    """One line, ready for the template: `points` is the polyline's attribute."""

    label: str
    points: str
    count: int
    first: float
    last: float
    low: float
    high: float
    start: str
    end: str


def _thinned(series: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    if len(series) <= MAX_POINTS:
        return series
    step = -(-len(series) // MAX_POINTS)
    drawn = series[::step]
    if drawn[-1] is not series[-1]:
        drawn.append(series[-1])
    return drawn


def _chart(label: str, series: list[tuple[datetime, float]]) -> Chart | None:
    if not series:
        return None
    drawn = _thinned(series)
    values = [v for _, v in drawn]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    last = max(len(drawn) - 1, 1)
    points = " ".join(
        f"{MARGIN + (WIDTH - 2 * MARGIN) * i / last:.1f},"
        f"{HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (v - low) / span:.1f}"
        for i, v in enumerate(values)
    )
    return Chart(
        label=label,
        points=points,
        count=len(drawn),
        first=values[0],
        last=values[-1],
        low=low,
        high=high,
        start=drawn[0][0].isoformat(),
        end=drawn[-1][0].isoformat(),
    )


def equity_and_drawdown(result: dict[str, Any]) -> tuple[Chart | None, Chart | None]:
    """The equity curve (quote) and its drawdown (%) of a backtest's result."""
    times = [datetime.fromisoformat(t) for t, _ in result.get("equity", [])]
    equity = [float(Decimal(e)) for _, e in result.get("equity", [])]  # a picture, not money
    return (
        _chart("equity (quote)", list(zip(times, equity, strict=True))),
        _chart("drawdown (%)", list(zip(times, drawdown_percent(equity), strict=True))),
    )


def median_equity(mode: str, series: list[tuple[datetime, Decimal]]) -> Chart | None:
    """A mode's renters' median equity over time, in percent of their starting capital."""
    return _chart(
        f"{mode} renters' median equity (% of starting capital)",
        [(at, float(value)) for at, value in series],  # a picture, not money
    )
