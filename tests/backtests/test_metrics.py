"""The backtest's statistics agree with empyrical (empyrical-reloaded) on the same equity curve;
the trade statistics are checked on figures worked out by hand."""

from __future__ import annotations

import json
from decimal import Decimal

import empyrical
import pandas as pd
import pytest

from app.backtests import metrics
from app.bots.strategy import Strategy
from app.performance import figures
from tests.backtests.engine import dumped, market_candles, run, spec

# Sharpe and Sortino are float statistics: agreement to 1e-9 relative before rounding, and
# to the reported 6 decimals after. Max drawdown is exact decimal here, float there.
RELATIVE = 1e-9
REPORTED = 5e-7


def empyrical_returns(equity: list[Decimal]) -> pd.Series:
    values = pd.Series([float(e) for e in equity])
    return values.pct_change().dropna()


async def replayed_equity() -> tuple[list[Decimal], dict]:
    replay = spec(
        Strategy(
            voters=[],
            ensemble={"threshold": "0.1"},  # type: ignore[arg-type]
            risk={"stop_loss_pct": "2", "take_profit_pct": "4"},  # type: ignore[arg-type]
        ),
        candles=400,
    )
    candles = market_candles(replay)
    state = await run(replay, candles)
    return [Decimal(e) for _, e in state.equity], json.loads(dumped(replay, candles, state))


async def test_sharpe_sortino_and_drawdown_agree_with_empyrical() -> None:
    equity, result = await replayed_equity()
    returns = empyrical_returns(equity)
    periods = figures.periods_per_year("1h")
    assert periods == 8760
    mine = figures.period_returns(equity)
    assert mine == pytest.approx(list(returns), rel=RELATIVE)

    expected_sharpe = empyrical.sharpe_ratio(returns, annualization=periods)
    expected_sortino = empyrical.sortino_ratio(returns, annualization=periods)
    expected_drawdown = -empyrical.max_drawdown(returns)
    assert expected_drawdown > 0.01  # the curve has a real drawdown to compare
    assert figures.sharpe(mine, periods) == pytest.approx(expected_sharpe, rel=RELATIVE)
    assert figures.sortino(mine, periods) == pytest.approx(expected_sortino, rel=RELATIVE)
    assert float(figures.max_drawdown(equity)) == pytest.approx(expected_drawdown, abs=1e-8)

    reported = result["metrics"]
    assert reported["sharpe"] == pytest.approx(expected_sharpe, abs=REPORTED)
    assert reported["sortino"] == pytest.approx(expected_sortino, abs=REPORTED)
    assert float(reported["max_drawdown"]) == pytest.approx(expected_drawdown, abs=1e-8)
    total = float(equity[-1] / equity[0] - 1)
    assert float(reported["total_return"]) == pytest.approx(
        empyrical.cum_returns_final(returns), abs=1e-8
    )
    assert float(reported["total_return"]) == pytest.approx(total, abs=1e-8)


@pytest.mark.parametrize(("timeframe", "periods"), [("1d", 365), ("4h", 2190), ("15m", 35040)])
def test_annualisation_counts_every_period_of_a_365_day_year(timeframe: str, periods: int) -> None:
    assert figures.periods_per_year(timeframe) == periods


def test_trade_statistics_by_hand() -> None:
    d = Decimal
    summary = metrics.summary(
        metrics.Inputs(
            timeframe="1h",
            capital=d(1000),
            equity=[d(1000), d(1100), d(990), d(1045)],
            first_open=d(100),
            last_close=d(125),
            closed_pnls=[d(30), d(-10), d(50), d(-20)],
            trades=8,
            fees_quote=d("4.123456789"),
            llm_cost_usd=d("0.0312"),
            candles_in_position=2,
            candles=3,
        )
    )
    assert summary["total_return"] == "0.04500000"
    assert summary["buy_and_hold_return"] == "0.25000000"
    assert summary["max_drawdown"] == "0.10000000"  # 1100 -> 990
    assert summary["win_rate"] == "0.50000000"
    assert summary["profit_factor"] == "2.66666667"  # 80 won over 30 lost
    assert summary["exposure"] == "0.66666667"
    assert summary["fees_quote"] == "4.12345679"
    assert (summary["trades"], summary["closed_trades"]) == (8, 4)
    assert summary["llm_cost_usd"] == "0.0312"


def test_undefined_ratios_are_none() -> None:
    d = Decimal
    summary = metrics.summary(
        metrics.Inputs(
            timeframe="1h",
            capital=d(1000),
            equity=[d(1000), d(1000), d(1000)],
            first_open=d(100),
            last_close=d(100),
            closed_pnls=[d(5)],
            trades=2,
            fees_quote=d(0),
            llm_cost_usd=d(0),
            candles_in_position=0,
            candles=2,
        )
    )
    assert (summary["sharpe"], summary["sortino"], summary["profit_factor"]) == (None, None, None)
