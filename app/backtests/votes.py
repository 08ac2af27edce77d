"""Where a backtest's LLM votes come from: `recorded`, `indicators` or `ask`.

`recorded` replays what the live decision of the same bot version stored for that candle:
its votes in seat order, abstentions as abstentions, combined by the decision's own ensemble
rule version and parameters. It asks nobody where there was no live decision, nor where the
live decision saw other candles than the replay reads (its candle digest differs): those votes
answered other data, so they are left out and counted.

`indicators` asks nobody. `ask` puts each candle's prompt to the bot's voters now, through the
same panel as live, within a cost the request capped up front: the estimate is the most the
widest prompt the strategy can render costs, per candle and voter, so the real cost never
passes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository
from app.backtests.replay import CandleVotes, IndicatorsOnly
from app.bots.strategy import Strategy
from app.core.settings import Settings
from app.models import Decision, LlmVote
from app.trading.candles import Candle
from app.trading.decide import PanelSeat, ask_panel, ballots, most_for, prompt_for
from app.trading.ensemble import Action, Ballot, ensemble_of
from app.trading.indicators import MIN_CANDLES
from app.verification.canonical import candles_digest, decimal_text

ASK_WARNING = (
    "LLM votes were asked now about past candles: a model may know what happened after its "
    "training data, so this result can be better than the bot would have done live"
)
# Longer than any number a prompt can carry: a float's repr, or a price with 8 decimals.
_WIDEST_NUMBER = -1.2345678901234567e-300
_WIDEST_PRICE = Decimal("-123456789012345.12345678")


def _ballot(vote: LlmVote) -> Ballot:
    return Ballot(
        vote.weight,
        Action(vote.action) if vote.action else None,
        vote.confidence if vote.confidence is not None else Decimal(0),
    )


def _provenance(vote: LlmVote) -> dict[str, Any]:
    return {
        "seat": vote.seat,
        "provider": vote.provider,
        "model": vote.model,
        "prompt_sha256": vote.prompt_sha256,
        "abstain_reason": vote.abstain_reason,
        "cost_usd": decimal_text(vote.cost_usd),
    }


class RecordedVotes:
    """The live decision's stored round for the candle; none where no live decision was made
    or where it saw other candles."""

    def __init__(self, rounds: dict[datetime, tuple[Decision, list[LlmVote]]]) -> None:
        self._rounds = rounds
        self._elsewhere = IndicatorsOnly()

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        bot_version_id: str,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
    ) -> RecordedVotes:
        return cls(
            await repository.recorded_rounds(session, bot_version_id, symbol, timeframe, start, end)
        )

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        recorded = self._rounds.get(candle_open)
        if recorded is None:
            return await self._elsewhere.votes(candle_open, snapshot, closes)
        decision, votes = recorded
        # Decisions made before windows were recorded have no digest to compare.
        if decision.candles_sha256 not in (None, candles_digest(closes)):
            return CandleVotes(
                [],
                Decimal(0),
                "none",
                f"the live decision {decision.id} saw other candles than this backtest "
                "(its candle digest differs): indicators only",
                other_candles=True,
            )
        # As live combined them: every stored result, abstentions included (none when that
        # decision asked nobody, e.g. its budget was spent), by its own rule.
        return CandleVotes(
            ballots=[_ballot(v) for v in votes],
            cost_usd=Decimal(0),
            source="recorded",
            rule_version=decision.rule_version,
            ensemble=ensemble_of(decision.rule_params),
            provenance=[_provenance(v) for v in votes],
            live_decision_id=decision.id,
        )


class AskedVotes:
    """Asks the bot's voters now, as live does, until what it spent would pass `cap`."""

    def __init__(
        self, symbol: str, timeframe: str, panel: list[PanelSeat], cap: Decimal, spent: Decimal
    ) -> None:
        self._symbol = symbol
        self._timeframe = timeframe
        self._panel = panel
        self._cap = cap
        self.spent = spent

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        if not self._panel:
            return CandleVotes(
                [], Decimal(0), "none", "no LLM voter configured for this bot: indicators only"
            )
        prompt = prompt_for(self._symbol, self._timeframe, candle_open, snapshot, closes)
        most = most_for(self._panel, prompt)
        if most is not None and self.spent + most > self._cap:
            return CandleVotes(
                [],
                Decimal(0),
                "none",
                f"the backtest's LLM cost cap of {self._cap} USD is reached: indicators only",
            )
        results = await ask_panel(self._panel, prompt)
        cost = sum((r.cost_usd for _, r in results), Decimal(0))
        self.spent += cost
        return CandleVotes(ballots(results), cost, "asked")


def _widest_prompt_snapshot(strategy: Strategy) -> dict[str, dict[str, object]]:
    return {
        name: {
            "period": 500,
            "value": _WIDEST_NUMBER,
            "signal": _WIDEST_NUMBER,
            "weight": "100.0000",
            "contribution": _WIDEST_NUMBER,
        }
        for name, indicator in strategy.indicators.items()
        if indicator.weight != 0
    }


def estimate_usd(
    strategy: Strategy, settings: Settings, symbol: str, timeframe: str, candles: int
) -> Decimal:
    """The most an `ask` backtest of `candles` decisions can cost: each voter the service can
    ask, at its price, for the widest prompt the strategy renders and a full answer."""
    widest = _WIDEST_PRICE
    closes = [Candle(datetime.max, widest, widest, widest, widest, widest, datetime.max)]
    prompt = prompt_for(
        symbol, timeframe, datetime.max, _widest_prompt_snapshot(strategy), closes * MIN_CANDLES
    )
    configured = set(settings.configured_llm_providers())
    prices = [
        price
        for voter in strategy.voters or []
        if voter.provider in configured and (price := voter.price_in(settings.llm_prices))
    ]
    per_candle = sum((price.most_for(prompt) for price in prices), Decimal(0))
    return per_candle * candles
