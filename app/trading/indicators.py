"""TA-Lib indicators turned into scale-free sub-signals in [-1, 1] and one weighted score.

No threshold is in price units: trend distances are divided by ATR, so the same strategy
reads BTC at 60 000 and an altcoin at 0.5 alike. Positive means "buy", negative "sell".
Indicator values are floats (TA-Lib computes in double); they are readings, not money.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import talib

from app.bots.strategy import Indicator, IndicatorName
from app.trading.candles import Candle

FloatArray = np.ndarray

SCORE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Series:
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    @classmethod
    def of(cls, candles: Sequence[Candle]) -> Series:
        def column(name: str) -> FloatArray:
            return np.array([float(getattr(c, name)) for c in candles], dtype=np.float64)

        return cls(*(column(name) for name in ("open", "high", "low", "close", "volume")))

    def window(self, start: int, stop: int) -> Series:
        """Candles [start, stop) of the series: a replay converts its candles once."""
        columns = (self.open, self.high, self.low, self.close, self.volume)
        return Series(*(column[start:stop] for column in columns))


@dataclass(frozen=True)
class Reading:
    value: float  # the indicator itself (RSI, %B, MACD histogram, ...)
    signal: float  # its vote in [-1, 1]


def _last(values: FloatArray) -> float:
    last = float(values[-1])
    if math.isnan(last):
        raise ValueError("not enough candles for this indicator")
    return last


def _atr(s: Series, period: int = 14) -> float:
    return _last(talib.ATR(s.high, s.low, s.close, timeperiod=period))


def _squash(x: float) -> float:
    return math.tanh(x)


def rsi(s: Series, period: int) -> Reading:
    # Mean reversion: RSI 30 reads +1 (oversold), 70 reads -1 (overbought).
    value = _last(talib.RSI(s.close, timeperiod=period))
    return Reading(value, max(-1.0, min(1.0, (50.0 - value) / 20.0)))


def macd(s: Series, period: int) -> Reading:
    _, _, histogram = talib.MACD(s.close, fastperiod=12, slowperiod=period, signalperiod=9)
    value = _last(histogram)
    return Reading(value, _squash(2.0 * value / _atr(s)))


def _cross(average: Callable[..., FloatArray], s: Series, slow: int) -> Reading:
    fast = max(2, slow // 2)
    gap = _last(average(s.close, timeperiod=fast)) - _last(average(s.close, timeperiod=slow))
    return Reading(gap, _squash(gap / _atr(s)))


def ema_cross(s: Series, period: int) -> Reading:
    return _cross(talib.EMA, s, period)


def sma_cross(s: Series, period: int) -> Reading:
    return _cross(talib.SMA, s, period)


def bbands(s: Series, period: int) -> Reading:
    upper, _, lower = talib.BBANDS(s.close, timeperiod=period, nbdevup=2, nbdevdn=2)
    width = _last(upper) - _last(lower)
    percent_b = 0.5 if width == 0 else (float(s.close[-1]) - _last(lower)) / width
    # Mean reversion: at the lower band (%B = 0) reads +1, at the upper band -1.
    return Reading(percent_b, max(-1.0, min(1.0, 1.0 - 2.0 * percent_b)))


def atr(s: Series, period: int) -> Reading:
    # Momentum in units of volatility: the move over `period` candles against ATR * sqrt(n).
    value = _atr(s, period)
    move = float(s.close[-1] - s.close[-1 - period])
    return Reading(value, _squash(move / (value * math.sqrt(period))) if value else 0.0)


def volume(s: Series, period: int) -> Reading:
    # Heavy volume confirms the candle's direction; light volume says little.
    average = _last(talib.SMA(s.volume, timeperiod=period))
    ratio = float(s.volume[-1]) / average if average else 1.0
    direction = float(np.sign(s.close[-1] - s.open[-1]))
    return Reading(ratio, direction * _squash(max(0.0, ratio - 1.0)))


INDICATORS: dict[IndicatorName, tuple[Callable[[Series, int], Reading], int]] = {
    "rsi": (rsi, 14),
    "macd": (macd, 26),
    "ema_cross": (ema_cross, 26),
    "sma_cross": (sma_cross, 50),
    "bbands": (bbands, 20),
    "atr": (atr, 14),
    "volume": (volume, 20),
}

# Enough history for the slowest default (SMA 50) plus MACD's signal line to settle.
MIN_CANDLES = 100


@dataclass(frozen=True)
class IndicatorResult:
    score: Decimal
    snapshot: dict[str, dict[str, object]]


def indicator_score(
    candles: Sequence[Candle], config: dict[IndicatorName, Indicator]
) -> IndicatorResult:
    """The weighted mean of the configured sub-signals, with each one's contribution."""
    return series_score(Series.of(candles), config)


def series_score(series: Series, config: dict[IndicatorName, Indicator]) -> IndicatorResult:
    """indicator_score of candles already converted to a Series."""
    readings: dict[str, tuple[Reading, Decimal, int]] = {}
    for name, settings in config.items():
        if settings.weight == 0:
            continue
        function, default_period = INDICATORS[name]
        period = settings.period or default_period
        readings[name] = (function(series, period), settings.weight, period)
    total_weight = sum((weight for _, weight, _ in readings.values()), Decimal(0))
    snapshot: dict[str, dict[str, object]] = {}
    score = Decimal(0)
    for label, (reading, weight, period) in readings.items():
        signal = Decimal(repr(round(reading.signal, 6) + 0.0))  # + 0.0 turns -0.0 into 0.0
        contribution = signal * weight / total_weight
        score += contribution
        snapshot[label] = {
            "period": period,
            "value": round(reading.value, 6),
            "signal": float(signal),
            "weight": str(weight),
            "contribution": float(contribution.quantize(Decimal("0.000001"))),
        }
    score = max(Decimal(-1), min(Decimal(1), score)).quantize(SCORE_PLACES)
    return IndicatorResult(score=score, snapshot=snapshot)
