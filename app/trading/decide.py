"""One decision per (bot version, symbol, timeframe, closed candle), shared by every renter.

Concurrent attempts at the same key queue on a named lock and find the first one's record;
the unique constraint on the key is the last word. A decision holds everything a renter needs
to see why their bot traded: the indicator snapshot, every vote or abstention with its
reason, the rule version and parameters, the combined score and the action.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bots.strategy import Strategy
from app.bots.strategy import Voter as VoterConfig
from app.core.db import session_scope
from app.core.errors import NotFound
from app.core.locks import NamedLocks
from app.integrations.llm.base import VotePrompt, VoteResult
from app.integrations.llm.prompt import PROMPT_VERSION, render
from app.integrations.llm.registry import VoterPool
from app.models import BotVersion, Decision, LlmVote
from app.trading import metrics, repository
from app.trading.ensemble import RULE_VERSION, Action, Ballot, combine
from app.trading.indicators import MIN_CANDLES, indicator_score
from app.trading.market_data import MarketData, interval_ms, last_closed_open_ms

log = logging.getLogger(__name__)

CONFIDENCE_PLACES = Decimal("0.0001")
_PROMPT_CLOSES = 24


def _candle_open(timeframe: str, now: datetime) -> datetime:
    return datetime.fromtimestamp(last_closed_open_ms(timeframe, now) / 1000, UTC)


def _history_needed(strategy: Strategy) -> int:
    periods = [i.period for i in strategy.indicators.values() if i.period]
    return min(1000, max([MIN_CANDLES, *(3 * p for p in periods)]))


class DecisionMaker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        market: MarketData,
        voters: VoterPool,
        locks: NamedLocks,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._market = market
        self._voters = voters
        self._locks = locks

    async def decide(
        self, bot_version_id: str, symbol: str, timeframe: str, now: datetime | None = None
    ) -> Decision:
        candle = _candle_open(timeframe, now or datetime.now(UTC))
        key = (bot_version_id, symbol, timeframe, candle)
        if (existing := await self._existing(*key)) is not None:
            return existing
        async with self._locks.hold(f"decision:{bot_version_id}:{symbol}:{timeframe}:{candle}"):
            if (existing := await self._existing(*key)) is not None:
                return existing
            return await self._make(*key)

    async def _existing(
        self, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
    ) -> Decision | None:
        async with self._sessionmaker() as session:
            return await repository.decision_for(session, bot_version_id, symbol, timeframe, candle)

    async def _make(
        self, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
    ) -> Decision:
        async with self._sessionmaker() as session:
            version = await session.get(BotVersion, bot_version_id)
            if version is None:
                raise NotFound("bot version")
            start_of_day = candle.replace(hour=0, minute=0, second=0, microsecond=0)
            # The budget's day is the candle's UTC day, so a replayed or late decision is
            # charged to the day it decides.
            spent = await repository.llm_spend_between(
                session, version.bot_id, start_of_day, start_of_day + timedelta(days=1)
            )
        strategy = Strategy.model_validate(version.strategy)
        step = interval_ms(timeframe)
        candles = await self._market.closed_candles(
            symbol,
            timeframe,
            _history_needed(strategy),
            now=datetime.fromtimestamp((candle.timestamp() * 1000 + step) / 1000, UTC),
        )
        indicators = indicator_score(candles, strategy.indicators)
        voters = strategy.voters or []
        reason = None
        results: list[tuple[Decimal, VoteResult]] = []
        if not voters:
            reason = "no LLM voter configured for this bot: indicators only"
        elif spent >= strategy.llm_daily_budget_usd:
            reason = (
                f"daily LLM budget of {strategy.llm_daily_budget_usd} USD spent "
                f"({spent.quantize(Decimal('0.0001'))} USD): indicators only until 00:00 UTC"
            )
            voters = []
        else:
            prompt = render(
                symbol,
                timeframe,
                candle,
                indicators.snapshot,
                [str(c.close) for c in candles[-_PROMPT_CLOSES:]],
            )
            results = await self._ask(voters, prompt)
        ballots = [
            Ballot(
                weight,
                Action(r.vote.action) if r.vote else None,
                Decimal(repr(r.vote.confidence)).quantize(CONFIDENCE_PLACES)
                if r.vote
                else Decimal(0),
            )
            for weight, r in results
        ]
        outcome = combine(indicators.score, ballots, strategy.ensemble, len(voters))
        decision = Decision(
            bot_version_id=bot_version_id,
            symbol=symbol,
            timeframe=timeframe,
            candle_open_at=candle,
            indicators=indicators.snapshot,
            indicator_score=indicators.score,
            combined_score=outcome.score,
            action=outcome.action.value,
            rule_version=RULE_VERSION,
            rule_params={
                **strategy.ensemble.model_dump(mode="json"),
                "prompt_version": PROMPT_VERSION,
                "voters_configured": len(strategy.voters or []),
            },
            fallback_reason="; ".join(r for r in (reason, outcome.reason) if r) or None,
        )
        return await self._store(decision, results)

    async def _ask(
        self, voters: list[VoterConfig], prompt: VotePrompt
    ) -> list[tuple[Decimal, VoteResult]]:
        asked = [(config, self._voters.get(config.provider, config.model)) for config in voters]
        outcomes = await asyncio.gather(
            *(voter.vote(prompt) for _, voter in asked if voter is not None)
        )
        answered = iter(outcomes)
        results = []
        for config, voter in asked:
            if voter is None:  # configured on the bot, but the service has no key for it
                result = VoteResult(config.provider, config.model, None, "provider not configured")
            else:
                result = next(answered)
            results.append((config.weight, result))
        return results

    async def _store(
        self, decision: Decision, results: list[tuple[Decimal, VoteResult]]
    ) -> Decision:
        try:
            async with session_scope(self._sessionmaker) as session:
                session.add(decision)
                await session.flush()
                for weight, r in results:
                    session.add(
                        LlmVote(
                            decision_id=decision.id,
                            provider=r.provider,
                            model=r.model,
                            weight=weight,
                            action=r.vote.action if r.vote else None,
                            confidence=Decimal(repr(r.vote.confidence)).quantize(CONFIDENCE_PLACES)
                            if r.vote
                            else None,
                            reasoning=r.vote.reasoning if r.vote else None,
                            cited_indicators=r.vote.cited_indicators if r.vote else [],
                            abstain_reason=r.abstain_reason,
                            tokens_in=r.tokens_in,
                            tokens_out=r.tokens_out,
                            latency_ms=r.latency_ms,
                            cost_usd=r.cost_usd,
                        )
                    )
        except IntegrityError:
            # Another process won the race without our lock (no Redis): theirs stands.
            existing = await self._existing(
                decision.bot_version_id,
                decision.symbol,
                decision.timeframe,
                decision.candle_open_at,
            )
            assert existing is not None
            log.info("decision already made elsewhere", extra={"decision_id": existing.id})
            return existing
        log.info(
            "decision",
            extra={
                "decision_id": decision.id,
                "action": decision.action,
                "score": str(decision.combined_score),
            },
        )
        metrics.DECISIONS.labels(decision.action).inc()
        for _, r in results:
            metrics.VOTES.labels(r.provider, "vote" if r.vote else "abstain").inc()
            metrics.LLM_LATENCY.labels(r.provider).observe(r.latency_ms / 1000)
            metrics.LLM_COST.labels(r.provider).inc(float(r.cost_usd))
        return decision
