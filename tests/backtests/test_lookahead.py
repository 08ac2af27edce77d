"""No look-ahead, proven two ways: changing the future changes nothing up to the present
(freqtrade's lookahead analysis), and a replayed decision equals the live decision made on
the same closed candles through the sandbox and the LLM fakes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI

from app.backtests.replay import CandleVotes, ReplayState, warmup_candles
from app.bots.strategy import Strategy
from app.trading.candles import Candle
from app.trading.decide import DecisionMaker
from app.trading.ensemble import Action, Ballot
from tests.backtests.engine import Recording, market_candles, run, spec
from tests.trading import test_decide

# The live decision's fixtures, as tests/trading/test_decide.py wires them.
maker = test_decide.maker
llm_settings = test_decide.llm_settings

ACTIVE = Strategy(
    voters=[],
    ensemble={"threshold": "0.1"},  # type: ignore[arg-type]
    risk={"stop_loss_pct": "2", "take_profit_pct": "4", "trailing_stop_pct": "1.5"},  # type: ignore[arg-type]
)


def future_changed(candles: list[Candle], after: int) -> list[Candle]:
    """Every candle after index `after` with other prices and volumes: each scaled by its own
    factor between 0.8 and 1.2 (so high >= open, close >= low still holds)."""

    def changed(n: int, candle: Candle) -> Candle:
        factor = Decimal(repr(1 + 0.2 * math.sin(n * 1.7)))

        def scaled(price: Decimal) -> Decimal:
            return (price * factor).quantize(Decimal("0.01"))

        return replace(
            candle,
            open=scaled(candle.open),
            high=scaled(candle.high),
            low=scaled(candle.low),
            close=scaled(candle.close),
            volume=candle.volume * (2 + n % 3),
        )

    return [c if n <= after else changed(n, c) for n, c in enumerate(candles)]


def until(state: ReplayState, first: int, index: int) -> dict[str, Any]:
    """What the replay knew and did up to candle `index`'s close."""
    decisions = [d for d in state.decisions if d["index"] <= index]
    if decisions and decisions[-1]["index"] == index:
        # Its order fills at the next open, which is the future.
        decisions[-1] = {**decisions[-1], "outcome": None, "trade": None}
    return {
        "decisions": decisions,
        "trades": [t for t in state.trades if t["index"] <= index],
        "equity": state.equity[: index - first + 2],
    }


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8])
async def test_changing_every_candle_after_t_changes_nothing_up_to_t(cut: float) -> None:
    replay = spec(ACTIVE, candles=400)
    candles = market_candles(replay)
    first = warmup_candles(replay.strategy)
    t = first + int(400 * cut)
    seen, seen_changed = Recording(), Recording()
    original = await run(replay, candles, seen)
    changed = await run(replay, future_changed(candles, t), seen_changed)

    asked = len([s for s in seen.seen if s[0] <= candles[t].open_time])
    assert seen_changed.seen[:asked] == seen.seen[:asked]  # every snapshot and window up to t
    assert until(changed, first, t) == until(original, first, t)
    assert until(original, first, t)["trades"]  # the compared past holds trades
    # The future did change, so the equality above is not vacuous.
    assert seen_changed.seen[asked:] != seen.seen[asked:]
    assert changed.trades != original.trades


@dataclass
class Replayed:
    """The live decisions' own votes, handed to the replay for their candles."""

    votes_by_candle: dict[datetime, CandleVotes]

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        return self.votes_by_candle[candle_open]


async def test_a_replayed_decision_equals_the_live_decide_on_the_same_candles(
    app: FastAPI, maker: DecisionMaker
) -> None:
    version = await test_decide.bot_version(app)
    hours_back = (3, 2, 1, 0)
    live = [
        await maker.decide(version.id, "BTCUSDT", "1h", now=test_decide.NOW - timedelta(hours=h))
        for h in hours_back
    ]
    # Each decides the candle that closed last before its `now`.
    closed = test_decide.NOW.replace(minute=0, second=0) - timedelta(hours=1)
    assert [d.candle_open_at for d in live] == [closed - timedelta(hours=h) for h in hours_back]
    votes = {}
    for decision in live:
        rows = (await test_decide.votes_of(app, decision)).values()
        ballots = [
            Ballot(v.weight, Action(v.action) if v.action else None, v.confidence or Decimal(0))
            for v in rows
        ]
        votes[decision.candle_open_at] = CandleVotes(ballots, Decimal(0), "recorded")

    replay = spec(
        Strategy.model_validate(version.strategy),
        start=live[0].candle_open_at,
        candles=4,
    )
    recording = Recording(Replayed(votes))
    state = await run(replay, market_candles(replay), recording)

    assert [snapshot for _, snapshot, _ in recording.seen] == [d.indicators for d in live]
    replayed = {d["time"]: d for d in state.decisions}
    # The fakes' panel votes BUY; on a loaded machine a voter may time out and a decision
    # hold, which the replay must reproduce as well. One BUY keeps the comparison non-trivial.
    assert "BUY" in {d.action for d in live}
    for decision in live:
        mine = replayed[decision.candle_open_at.isoformat()]
        assert (mine["action"], Decimal(mine["indicator_score"]), Decimal(mine["score"])) == (
            decision.action,
            decision.indicator_score,
            decision.combined_score,
        )
