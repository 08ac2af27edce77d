"""What the engine's tests replay: the sandbox's deterministic market, read without a server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from app.backtests.replay import (
    CandleVotes,
    IndicatorsOnly,
    ReplaySpec,
    ReplayState,
    VoteSource,
    advance,
    end_index,
    result,
    warmup_candles,
)
from app.bots.strategy import Strategy
from app.integrations.binance.filters import SymbolRules
from app.sandbox.market import Market
from app.sandbox.server import symbol_info
from app.trading.candles import Candle
from app.trading.ensemble import Action, Ballot
from app.trading.market_data import interval_ms

START = datetime(2026, 9, 1, tzinfo=UTC)
SANDBOX_SEED = 7  # the seed the sandbox server trades on


def rules(symbol: str = "BTCUSDT") -> SymbolRules:
    return SymbolRules.from_exchange_info(symbol_info(symbol))


def spec(
    strategy: Strategy | None = None,
    *,
    candles: int = 300,
    timeframe: str = "1h",
    start: datetime = START,
    **changes: Any,
) -> ReplaySpec:
    base = ReplaySpec(
        strategy=strategy or Strategy(voters=[]),
        symbol="BTCUSDT",
        timeframe=timeframe,
        rules=rules(),
        quote_amount=Decimal(1000),
        slippage=Decimal("0.0005"),
        start=start,
        end=start + candles * timedelta(milliseconds=interval_ms(timeframe)),
    )
    return replace(base, **changes)


def market_candles(replay: ReplaySpec, seed: int = SANDBOX_SEED) -> list[Candle]:
    """Every closed candle the replay reads: its warm-up, then its window."""
    step = interval_ms(replay.timeframe)
    first = int(replay.start.timestamp() * 1000) - warmup_candles(replay.strategy) * step
    end = int(replay.end.timestamp() * 1000)
    return list(_candles(seed, replay.symbol, replay.timeframe, first, end))


@lru_cache(maxsize=32)
def _candles(seed: int, symbol: str, timeframe: str, first: int, end: int) -> tuple[Candle, ...]:
    step = interval_ms(timeframe)
    market = Market(seed)
    return tuple(
        Candle.from_kline(market.candle(symbol, timeframe, t, end + step))
        for t in range(first, end, step)
    )


@dataclass
class Recording:
    """Passes every question to `inner` and keeps what the engine showed it."""

    inner: VoteSource = field(default_factory=IndicatorsOnly)
    seen: list[tuple[datetime, dict[str, Any], list[Candle]]] = field(default_factory=list)

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        self.seen.append((candle_open, snapshot, list(closes)))
        return await self.inner.votes(candle_open, snapshot, closes)


@dataclass
class Scripted:
    """One voter whose action per candle is given (HOLD elsewhere): with the indicators
    weighed 0, the decision is that action."""

    actions: dict[datetime, Action]

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        action = self.actions.get(candle_open, Action.HOLD)
        return CandleVotes([Ballot(Decimal(1), action, Decimal(1))], Decimal(0), "recorded")


def scripted_strategy(**risk: Any) -> Strategy:
    return Strategy(voters=[], ensemble={"indicator_weight": "0", "quorum": 1}, risk=risk)  # type: ignore[arg-type]


async def run(
    replay: ReplaySpec, candles: Sequence[Candle], votes: VoteSource | None = None
) -> ReplayState:
    state = ReplayState.initial(replay, candles)
    return await advance(
        replay, candles, state, votes or IndicatorsOnly(), until_index=end_index(replay, candles)
    )


def dumped(replay: ReplaySpec, candles: Sequence[Candle], state: ReplayState) -> str:
    return json.dumps(result(replay, candles, state), sort_keys=True)
