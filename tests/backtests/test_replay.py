"""The replay engine on the sandbox's deterministic market: live fills, exits, filters and risk,
determinism, and a chunked replay that equals one in one go."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from app.backtests.replay import (
    IndicatorsOnly,
    ReplayState,
    advance,
    end_index,
    warmup_candles,
)
from app.bots.strategy import RiskDefaults, Strategy
from app.trading.candles import Candle
from app.trading.decide import history_needed
from app.trading.ensemble import Action
from app.trading.fills import Side, paper_fill
from tests.backtests.engine import (
    START,
    Recording,
    Scripted,
    dumped,
    market_candles,
    rules,
    run,
    scripted_strategy,
    spec,
)

HOUR = timedelta(hours=1)
# A lower threshold than the default so that a short window trades often.
ACTIVE = Strategy(
    voters=[],
    ensemble={"threshold": "0.1"},  # type: ignore[arg-type]
    risk={"stop_loss_pct": "2", "take_profit_pct": "4", "trailing_stop_pct": "1.5"},  # type: ignore[arg-type]
)


def filled(state: ReplayState) -> list[dict]:
    return [t for t in state.trades if t["status"] == "filled"]


async def test_a_replay_in_chunks_with_a_json_round_trip_equals_one_in_one_go() -> None:
    replay = spec(ACTIVE, candles=300)
    candles = market_candles(replay)
    whole = await run(replay, candles)
    assert len(filled(whole)) >= 4  # the window trades, so the chunks carry positions across

    state = ReplayState.initial(replay, candles)
    last = end_index(replay, candles)
    while state.next_index < last:
        state = await advance(
            replay, candles, state, IndicatorsOnly(), until_index=state.next_index + 37
        )
        state = ReplayState.from_json(json.loads(json.dumps(state.to_json())))
    assert dumped(replay, candles, state) == dumped(replay, candles, whole)


async def test_the_same_inputs_give_byte_identical_results() -> None:
    replay = spec(ACTIVE, candles=200)
    first = dumped(replay, market_candles(replay), await run(replay, market_candles(replay)))
    second = dumped(replay, market_candles(replay), await run(replay, market_candles(replay)))
    assert first == second
    assert json.loads(first)["metrics"]["trades"] > 0


async def test_a_chunk_leaves_the_state_it_was_given_untouched() -> None:
    replay = spec(ACTIVE, candles=50)
    candles = market_candles(replay)
    state = ReplayState.initial(replay, candles)
    before = json.dumps(state.to_json())
    advanced = await advance(replay, candles, state, IndicatorsOnly(), until_index=10**6)
    assert json.dumps(state.to_json()) == before
    assert advanced.next_index == end_index(replay, candles) == state.next_index + 50


async def test_each_decision_reads_the_live_window_of_closed_candles() -> None:
    replay = spec(candles=5)
    candles = market_candles(replay)
    recording = Recording()
    await run(replay, candles, recording)
    assert [when for when, _, _ in recording.seen] == [START + n * HOUR for n in range(5)]
    for when, _, closes in recording.seen:
        assert len(closes) == history_needed(replay.strategy)
        assert closes[-1].open_time == when  # the decided candle is the last one read


async def test_decisions_fill_at_the_next_open_with_the_live_paper_fill() -> None:
    # No protective exits: the decisions' sells have something to sell.
    replay = spec(ACTIVE.model_copy(update={"risk": RiskDefaults()}), candles=300)
    candles = market_candles(replay)
    state = await run(replay, candles)
    by_decision = [d for d in state.decisions if d["outcome"] == "filled"]
    assert {d["action"] for d in by_decision} == {"BUY", "SELL"}
    for decision in by_decision:
        trade = state.trades[decision["trade"]]
        assert trade["index"] == decision["index"] + 1
        quantity = Decimal(trade["quantity"])
        fill = paper_fill(
            Side(trade["side"]), quantity, candles[trade["index"]].open, replay.slippage, rules()
        )
        assert (Decimal(trade["price"]), Decimal(trade["quote_quantity"])) == (
            fill.price,
            fill.quote_quantity,
        )
        assert (Decimal(trade["fee"]), trade["fee_asset"]) == (fill.fee, fill.fee_asset)
        assert replay.rules.floor_quantity(quantity) == quantity
        assert fill.quote_quantity >= replay.rules.min_notional
    fees = sum((Decimal(t["fee_quote"]) for t in filled(state)), Decimal(0))
    assert Decimal(
        json.loads(dumped(replay, candles, state))["metrics"]["fees_quote"]
    ) == fees.quantize(Decimal("0.00000001"))


def reshaped(candle: Candle, high: str, low: str) -> Candle:
    """The candle with its high and low moved to these multiples of its open."""
    return replace(
        candle,
        high=(candle.open * Decimal(high)).quantize(Decimal("0.01")),
        low=(candle.open * Decimal(low)).quantize(Decimal("0.01")),
    )


async def exit_on_a_reshaped_entry_candle(high: str, low: str) -> tuple[dict, dict]:
    """Buy at START's close, fill at the next open, then let that candle reach `high`/`low`."""
    replay = spec(scripted_strategy(stop_loss_pct="2", take_profit_pct="3"), candles=4)
    candles = market_candles(replay)
    entry = warmup_candles(replay.strategy) + 1
    candles[entry] = reshaped(candles[entry], high, low)
    state = await run(replay, candles, Scripted({START: Action.BUY}))
    buy, sell = filled(state)
    assert buy["index"] == sell["index"] == entry
    return buy, sell


def average_cost(buy: dict) -> Decimal:
    """apply_fill's: what was paid over what was received after the fee in base asset."""
    received = Decimal(buy["quantity"]) - Decimal(buy["fee"])
    return (Decimal(buy["quote_quantity"]) / received).quantize(Decimal("1e-18"))


async def test_a_candle_touching_stop_and_take_profit_exits_at_the_stop() -> None:
    buy, sell = await exit_on_a_reshaped_entry_candle(high="1.10", low="0.90")
    stop = average_cost(buy) * Decimal("0.98")
    assert sell["reason"] == f"stop-loss 2% at {stop}"
    fill = paper_fill(Side.SELL, Decimal(sell["quantity"]), stop, Decimal("0.0005"), rules())
    assert Decimal(sell["price"]) == fill.price
    assert Decimal(sell["realized_pnl"]) < 0


async def test_a_candle_touching_only_the_take_profit_exits_there() -> None:
    buy, sell = await exit_on_a_reshaped_entry_candle(high="1.10", low="0.999")
    take = average_cost(buy) * Decimal("1.03")
    assert sell["reason"] == f"take-profit 3% at {take}"
    assert Decimal(sell["realized_pnl"]) > 0


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"quote_amount": Decimal(4)}, "under the minimum notional 5"),
        (
            {"rules": replace(rules(), min_qty=Decimal(1), min_notional=Decimal(0))},
            "under the minimum quantity 1",
        ),
    ],
)
async def test_an_order_under_the_filters_is_not_traded(changes: dict, refusal: str) -> None:
    replay = spec(scripted_strategy(), candles=3, **changes)
    state = await run(replay, market_candles(replay), Scripted({START: Action.BUY}))
    [decision] = state.decisions
    assert decision["outcome"] == "refused"
    assert refusal in state.trades[decision["trade"]]["reason"]
    assert filled(state) == []
    assert {Decimal(e) for _, e in state.equity} == {replay.quote_amount}


async def test_the_live_risk_limits_refuse_orders() -> None:
    replay = spec(scripted_strategy(max_trades_per_day=3), candles=48)
    every_hour = {START + n * HOUR: [Action.BUY, Action.SELL][n % 2] for n in range(48)}
    state = await run(replay, market_candles(replay), Scripted(every_hour))
    per_day = Counter(t["time"][:10] for t in filled(state))
    assert per_day == {"2026-09-01": 3, "2026-09-02": 3}
    refusals = [t["reason"] for t in state.trades if t["status"] == "refused"]
    assert refusals and set(refusals) == {"risk: max trades per day reached (3)"}


async def test_a_window_without_its_warm_up_is_refused() -> None:
    replay = spec(candles=3)
    candles = market_candles(replay)
    with pytest.raises(ValueError, match="candles are needed before the start"):
        ReplayState.initial(replay, candles[1:])


async def test_a_drawdown_breach_stops_the_replayed_subscription_as_live_pauses_it() -> None:
    # A round trip costs its fees and slippage: far more than a drawdown limit of 0.01%.
    replay = spec(scripted_strategy(max_drawdown_pct="0.01"), candles=12)
    every_hour = {START + n * HOUR: [Action.BUY, Action.SELL][n % 2] for n in range(12)}
    state = await run(replay, market_candles(replay), Scripted(every_hour))
    assert [t["side"] for t in filled(state)] == ["BUY", "SELL"]
    refused = state.decisions[2]
    assert refused["outcome"] == "refused"
    assert state.trades[refused["trade"]]["reason"].startswith("risk: max drawdown of 0.01%")
    assert state.paused is not None and state.paused.startswith("max drawdown of 0.01%")
    later = {d["outcome"] for d in state.decisions[3:-1]}
    assert later == {f"not sent: the subscription is paused ({state.paused})"}
