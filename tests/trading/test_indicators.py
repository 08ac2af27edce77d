"""Indicators come from TA-Lib and equal values computed without it (published worked
examples, a hand-computed series, textbook definitions in numpy); sub-signals are scale-free
and bounded."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import talib

from app.bots.strategy import Indicator, Strategy
from app.trading.candles import Candle
from app.trading.indicators import MIN_CANDLES, Series, atr, bbands, indicator_score, rsi


def random_walk(seed: int, n: int = MIN_CANDLES + 50, scale: Decimal = Decimal(1)) -> list[Candle]:
    rng = random.Random(seed)
    price = 100.0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    candles = []
    for i in range(n):
        close = max(1.0, price * math.exp(rng.gauss(0, 0.01)))
        high = max(price, close) * (1 + abs(rng.gauss(0, 0.003)))
        low = min(price, close) * (1 - abs(rng.gauss(0, 0.003)))
        candles.append(
            Candle(
                open_time=start + timedelta(hours=i),
                open=Decimal(f"{price:.2f}") * scale,
                high=Decimal(f"{high:.2f}") * scale,
                low=Decimal(f"{low:.2f}") * scale,
                close=Decimal(f"{close:.2f}") * scale,
                volume=Decimal(f"{rng.uniform(10, 100):.3f}"),
                close_time=start + timedelta(hours=i + 1) - timedelta(milliseconds=1),
            )
        )
        price = close
    return candles


def test_values_equal_talib_on_the_same_input() -> None:
    candles = random_walk(7)
    s = Series.of(candles)
    snapshot = indicator_score(candles, Strategy().indicators).snapshot
    assert snapshot["rsi"]["value"] == round(float(talib.RSI(s.close, 14)[-1]), 6)
    hist = talib.MACD(s.close, fastperiod=12, slowperiod=26, signalperiod=9)[2][-1]
    assert snapshot["macd"]["value"] == round(float(hist), 6)
    upper, _, lower = talib.BBANDS(s.close, timeperiod=20, nbdevup=2, nbdevdn=2)
    percent_b = (s.close[-1] - lower[-1]) / (upper[-1] - lower[-1])
    assert snapshot["bbands"]["value"] == round(float(percent_b), 6)
    assert snapshot["atr"]["value"] == round(float(talib.ATR(s.high, s.low, s.close, 14)[-1]), 6)
    gap = talib.EMA(s.close, 13)[-1] - talib.EMA(s.close, 26)[-1]
    assert snapshot["ema_cross"]["value"] == round(float(gap), 6)
    ratio = s.volume[-1] / talib.SMA(s.volume, 20)[-1]
    assert snapshot["volume"]["value"] == round(float(ratio), 6)


# StockCharts ChartSchool's worked examples (the spreadsheets cs-rsi.xls, cs-atr.xls and
# cs-bbands.xls of its RSI, ATR and Bollinger Bands pages): the inputs and the indicator
# columns as published there, to 4-6 decimals.
RSI_CLOSE = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.614, 46.282, 46.282, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
]  # fmt: skip
RSI_14 = [  # from the 15th close on
    70.5328, 66.3186, 66.5498, 69.4063, 66.3552, 57.9749, 62.9296, 63.2571, 56.0593, 62.3771,
    54.7076, 50.4228, 39.9898, 41.4605, 41.8689, 45.4632, 37.304, 33.0795, 37.773,
]  # fmt: skip
ATR_HIGH = [
    48.7, 48.72, 48.9, 48.87, 48.82, 49.05, 49.2, 49.35, 49.92, 50.19, 50.12, 49.66, 49.88,
    50.19, 50.36, 50.57, 50.65, 50.43, 49.63, 50.33, 50.29, 50.17, 49.32, 48.5, 48.3201, 46.8,
    47.8, 48.39, 48.66, 48.79,
]  # fmt: skip
ATR_LOW = [
    47.79, 48.14, 48.39, 48.37, 48.24, 48.635, 48.94, 48.86, 49.5, 49.87, 49.2, 48.9, 49.43,
    49.725, 49.26, 50.09, 50.3, 49.21, 48.98, 49.61, 49.2, 49.43, 48.08, 47.64, 41.55, 44.2833,
    47.31, 47.2, 47.9, 47.7301,
]  # fmt: skip
ATR_CLOSE = [
    48.16, 48.61, 48.75, 48.63, 48.74, 49.03, 49.07, 49.32, 49.91, 50.13, 49.53, 49.5, 49.75,
    50.03, 50.31, 50.52, 50.41, 49.34, 49.37, 50.23, 49.2375, 49.93, 48.43, 48.18, 46.57,
    45.41, 47.77, 47.72, 48.62, 47.85,
]  # fmt: skip
ATR_14 = [  # from the 14th bar on
    0.555, 0.593929, 0.585791, 0.568949, 0.615452, 0.61792, 0.642354, 0.674329, 0.69277,
    0.775429, 0.78147, 1.209229, 1.30262, 1.38029, 1.366698, 1.336219, 1.316482,
]  # fmt: skip
BB_CLOSE = [
    86.1557, 89.0867, 88.7829, 90.3228, 89.0671, 91.1453, 89.4397, 89.175, 86.9302, 87.6752,
    86.9596, 89.4299, 89.3221, 88.7241, 87.4497, 87.2634, 89.4985, 87.9006, 89.126, 90.7043,
    92.9001, 92.9784, 91.8021, 92.6647, 92.6843, 92.3021, 92.7725, 92.5373, 92.949, 93.2039,
    91.0669, 89.8318, 89.7435, 90.3994, 90.7387, 88.0177, 88.0867, 88.8439, 90.7781, 90.5416,
    91.3894, 90.65,
]  # fmt: skip
BB_UPPER = [  # from the 20th close on
    91.291862, 91.949268, 92.612595, 92.9342, 93.31195, 93.72845, 93.899592, 94.266255,
    94.565096, 94.786912, 95.043001, 94.907605, 94.902912, 94.89532, 94.861013, 94.673629,
    94.556593, 94.678752, 94.575786, 94.534271, 94.532306, 94.369251, 94.148503,
]  # fmt: skip
BB_LOWER = [
    86.124018, 86.141052, 85.866895, 85.84721, 85.70365, 85.64887, 85.593408, 85.560025,
    85.597414, 85.977478, 86.274259, 86.820385, 86.865268, 86.915, 87.116837, 87.633121,
    87.825587, 87.562248, 87.759544, 87.966269, 87.951964, 87.963949, 87.951857,
]  # fmt: skip


def series(
    close: list[float], high: list[float] | None = None, low: list[float] | None = None
) -> Series:
    columns = [close, high or close, low or close, close, [1.0] * len(close)]
    return Series(*(np.array(column, dtype=np.float64) for column in columns))


def test_rsi_equals_the_published_worked_example() -> None:
    s = series(RSI_CLOSE)
    for end, published in enumerate(RSI_14, start=15):
        assert rsi(s.window(0, end), 14).value == pytest.approx(published, abs=1e-4), end


def test_atr_equals_the_published_worked_example() -> None:
    # The spreadsheet's first True Range is high - low (it has no close before it); TA-Lib
    # starts from the second bar. A bar before the example, closing where its first bar
    # closes, makes that first True Range high - low here too.
    s = series([ATR_CLOSE[0], *ATR_CLOSE], [ATR_CLOSE[0], *ATR_HIGH], [ATR_CLOSE[0], *ATR_LOW])
    for end, published in enumerate(ATR_14, start=15):
        assert atr(s.window(0, end), 14).value == pytest.approx(published, abs=1e-6), end


def test_percent_b_equals_the_published_bands() -> None:
    s = series(BB_CLOSE)
    for end, (upper, lower) in enumerate(zip(BB_UPPER, BB_LOWER, strict=True), start=20):
        percent_b = (BB_CLOSE[end - 1] - lower) / (upper - lower)
        assert bbands(s.window(0, end), 20).value == pytest.approx(percent_b, abs=1e-5), end


def test_values_on_a_straight_line_are_the_hand_computed_ones() -> None:
    """Closes 100, 101, 102, ...; every candle opens 1 below its close, spans 1 either side of
    it, and trades 10 except the last (20). On a line an average lags by (period - 1) / 2,
    an SMA-seeded EMA too; the True Range is 2 throughout; no candle falls."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    candles = [
        Candle(
            open_time=start + timedelta(hours=i),
            open=Decimal(99 + i),
            high=Decimal(101 + i),
            low=Decimal(99 + i),
            close=Decimal(100 + i),
            volume=Decimal(20 if i == MIN_CANDLES - 1 else 10),
            close_time=start + timedelta(hours=i + 1) - timedelta(milliseconds=1),
        )
        for i in range(MIN_CANDLES)
    ]
    values = {
        name: reading["value"]
        for name, reading in indicator_score(candles, Strategy().indicators).snapshot.items()
    }
    deviation = math.sqrt((20**2 - 1) / 12)  # population deviation of 20 consecutive closes
    assert values == pytest.approx(
        {
            "rsi": 100.0,  # no loss at all
            "macd": 0.0,  # MACD 12-26 is 12.5 - 5.5 = 7 throughout, so is its signal line
            "ema_cross": 12.5 - 6.0,  # EMA 13 lags 6, EMA 26 lags 12.5
            "sma_cross": 24.5 - 12.0,  # SMA 25 lags 12, SMA 50 lags 24.5
            "bbands": (9.5 + 2 * deviation) / (4 * deviation),  # the close is 9.5 over SMA 20
            "atr": 2.0,
            "volume": 20 / ((19 * 10 + 20) / 20),
        },
        abs=1e-6,
    )


def textbook_ema(values: np.ndarray, period: int) -> np.ndarray:
    """The EMA as StockCharts defines it: seeded with the SMA of the first `period` values."""
    out = np.full(len(values), np.nan)
    out[period - 1] = values[:period].mean()
    k = 2 / (period + 1)
    for i in range(period, len(values)):
        out[i] = out[i - 1] + k * (values[i] - out[i - 1])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_macd_histogram_equals_the_textbook_definition(seed: int) -> None:
    candles = random_walk(seed)
    close = Series.of(candles).close
    line = textbook_ema(close, 12) - textbook_ema(close, 26)
    signal = textbook_ema(line[25:], 9)  # the MACD line exists from the 26th close on
    snapshot = indicator_score(candles, Strategy().indicators).snapshot
    assert snapshot["macd"]["value"] == pytest.approx(line[-1] - signal[-1], abs=1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_signals_are_bounded_and_scale_free(seed: int) -> None:
    config = Strategy().indicators
    small = indicator_score(random_walk(seed), config)
    large = indicator_score(random_walk(seed, scale=Decimal(1000)), config)
    assert Decimal(-1) <= small.score <= Decimal(1)
    for name, reading in small.snapshot.items():
        assert -1 <= reading["signal"] <= 1
        assert str(reading["signal"]) != "-0.0"  # renters should not read a "negative zero"
        # The same market at 1000x the price reads the same (up to rounding of the inputs).
        assert np.isclose(reading["signal"], large.snapshot[name]["signal"], atol=1e-3), name
    contributions = sum(Decimal(str(r["contribution"])) for r in small.snapshot.values())
    assert abs(contributions - small.score) <= Decimal("0.0001") * len(small.snapshot)


def test_weights_and_periods_come_from_the_strategy() -> None:
    config = {"rsi": Indicator(weight=Decimal(3), period=7), "bbands": Indicator(weight=Decimal(0))}
    result = indicator_score(random_walk(1), config)  # type: ignore[arg-type]
    assert set(result.snapshot) == {"rsi"} and result.snapshot["rsi"]["period"] == 7
    assert result.score == Decimal(str(result.snapshot["rsi"]["signal"])).quantize(
        Decimal("0.0001")
    )


def test_too_little_history_is_an_error() -> None:
    with pytest.raises(ValueError, match="not enough candles"):
        indicator_score(random_walk(1, n=10), Strategy().indicators)
