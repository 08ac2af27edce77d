"""Indicators come from TA-Lib, sub-signals are scale-free and bounded."""

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
from app.trading.indicators import MIN_CANDLES, Series, indicator_score


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
