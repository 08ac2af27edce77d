"""One decision per (bot version, symbol, timeframe, closed candle), shared by every renter.

Whoever first inserts the decision's claim row makes it; every other attempt, in this process
or another, polls for the finished decision in fresh transactions and, after a bound, leaves
it to the task's retry. A claim is a lease with a fencing token (`attempt`): the claim of an
owner that died is taken over once its lease has run out, and only the current attempt may
store the decision. The unique constraint on decisions stays the last word.

Before asking the LLMs the owner reserves on its claim the most the round can cost, and asks
only if the bot's spend for the candle's UTC day, plus what its other rounds in flight have
reserved, plus this reservation stays within its daily budget. The transaction that stores
the decision and its votes (with their real cost) deletes the claim, so a round is counted
once at every moment: reserved, or spent.

A decision holds everything needed to recompute it: the candle window it saw (its open times
and their SHA-256), the indicator snapshot, every vote or abstention with its reason, the
prompt's SHA-256 and the model's raw answer, the rule version and parameters, the combined
score and the action. The transaction that stores it also appends it to its bot's hash chain
(app/verification/service.py), so it never changes afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bots import budget
from app.bots.strategy import Strategy
from app.bots.strategy import Voter as VoterConfig
from app.core.db import session_scope, utcnow
from app.core.errors import NotFound
from app.core.settings import Settings
from app.core.signing import SigningKeyring
from app.integrations.binance.errors import TemporaryError
from app.integrations.llm.base import ModelPrice, Vote, VotePrompt, Voter, VoteResult
from app.integrations.llm.prompt import PROMPT_VERSION, render
from app.integrations.llm.registry import VoterPool
from app.models import BotVersion, Decision, DecisionPrompt, LlmVote
from app.trading import events, metrics, repository
from app.trading.candles import Candle
from app.trading.ensemble import RULE_VERSION, Action, Ballot, apply_rule
from app.trading.indicators import MIN_CANDLES, indicator_score
from app.trading.market_data import MarketData, interval_ms, last_closed_open_ms
from app.verification import service as chain
from app.verification.canonical import candles_digest, prompt_digest

log = logging.getLogger(__name__)

CONFIDENCE_PLACES = Decimal("0.0001")
_PROMPT_CLOSES = 24
_POLL_S = 0.1

# A configured voter, the client that asks it (None: the service has no key for its
# provider) and its price (None: unpriced, so never asked).
PanelSeat = tuple[VoterConfig, Voter | None, ModelPrice | None]


class DecisionInFlight(TemporaryError):
    """Another process is making this decision: the task retries, and then finds it."""


class _ClaimLost(Exception):
    """Our lease ran out and another process took the decision over."""


@dataclass(frozen=True)
class DecisionKey:
    bot_version_id: str
    symbol: str
    timeframe: str
    candle: datetime


@dataclass(frozen=True)
class Claim:
    id: str
    attempt: int


def _candle_open(timeframe: str, now: datetime) -> datetime:
    return datetime.fromtimestamp(last_closed_open_ms(timeframe, now) / 1000, UTC)


def history_needed(strategy: Strategy) -> int:
    periods = [i.period for i in strategy.indicators.values() if i.period]
    return min(1000, max([MIN_CANDLES, *(3 * p for p in periods)]))


def _confidence(vote: Vote) -> Decimal:
    return Decimal(repr(vote.confidence)).quantize(CONFIDENCE_PLACES)


def ballots(results: list[tuple[Decimal, VoteResult]]) -> list[Ballot]:
    return [
        Ballot(
            weight,
            Action(r.vote.action) if r.vote else None,
            _confidence(r.vote) if r.vote else Decimal(0),
        )
        for weight, r in results
    ]


def panel_of(
    strategy: Strategy, voters: VoterPool, prices: Mapping[str, Mapping[str, Decimal]]
) -> list[PanelSeat]:
    return [(c, voters.get(c.provider, c.model), c.price_in(prices)) for c in strategy.voters or []]


def prompt_for(
    symbol: str,
    timeframe: str,
    candle: datetime,
    snapshot: dict[str, dict[str, object]],
    candles: Sequence[Candle],
) -> VotePrompt:
    return render(
        symbol, timeframe, candle, snapshot, [str(c.close) for c in candles[-_PROMPT_CLOSES:]]
    )


def most_for(panel: list[PanelSeat], prompt: VotePrompt) -> Decimal | None:
    """The most asking `panel` can cost (what a round reserves); None when no seat can be
    asked (unpriced, or its provider not configured), so nothing is spent."""
    most = [p.most_for(prompt) for _, v, p in panel if v is not None and p is not None]
    return sum(most, Decimal(0)) if most else None


async def ask_panel(panel: list[PanelSeat], prompt: VotePrompt) -> list[tuple[Decimal, VoteResult]]:
    """Every seat's vote or abstention with its weight; a seat that cannot be asked abstains."""

    async def one(config: VoterConfig, voter: Voter | None, price: ModelPrice | None) -> VoteResult:
        if voter is None:  # configured on the bot, but the service has no key for it
            return VoteResult(config.provider, config.model, None, "provider not configured")
        if price is None:  # a version saved before prices were required
            return VoteResult(config.provider, config.model, None, "model has no price")
        return await voter.vote(prompt, price)

    outcomes = await asyncio.gather(*(one(*seat) for seat in panel))
    return [(config.weight, r) for (config, _, _), r in zip(panel, outcomes, strict=True)]


class DecisionMaker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        market: MarketData,
        voters: VoterPool,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._market = market
        self._voters = voters
        self._prices = settings.llm_prices
        self._lease = timedelta(seconds=settings.decision_lease_s)
        self._wait_s = settings.decision_wait_s
        self._signer = SigningKeyring.parse(settings.signing_keyring_text())

    async def decide(
        self, bot_version_id: str, symbol: str, timeframe: str, now: datetime | None = None
    ) -> Decision:
        candle = _candle_open(timeframe, now or datetime.now(UTC))
        key = DecisionKey(bot_version_id, symbol, timeframe, candle)
        give_up_at = time.monotonic() + self._wait_s
        while True:
            if (existing := await self._existing(key)) is not None:
                return existing
            claim = await self._claim(key)
            if claim is not None:
                if (existing := await self._existing(key)) is not None:
                    # Stored, and its claim deleted, between our first look and our claim.
                    await self._release(claim)
                    return existing
                try:
                    return await self._make(key, claim)
                except _ClaimLost:
                    log.warning("decision taken over while being made", extra={"key": str(key)})
            elif time.monotonic() >= give_up_at:
                raise DecisionInFlight(f"another process is making the decision {key}")
            else:
                await asyncio.sleep(_POLL_S)

    async def _existing(self, key: DecisionKey) -> Decision | None:
        async with self._sessionmaker() as session:
            return await repository.decision_for(session, *astuple(key))

    async def _claim(self, key: DecisionKey) -> Claim | None:
        """This attempt's claim on the decision, or None while another attempt holds it."""
        now = utcnow()
        try:
            async with session_scope(self._sessionmaker) as session:
                held = await repository.claim_of(session, *astuple(key))
                if held is None:
                    claim = await repository.add_claim(
                        session,
                        key.bot_version_id,
                        key.symbol,
                        key.timeframe,
                        key.candle,
                        now + self._lease,
                    )
                    return Claim(claim.id, claim.attempt)
                if held.expires_at > now:
                    return None
                attempt = held.attempt
                if not await repository.take_over_claim(
                    session, held.id, attempt, now, now + self._lease
                ):
                    return None
                log.warning("took over an expired decision claim", extra={"key": str(key)})
                return Claim(held.id, attempt + 1)
        except IntegrityError:  # another attempt inserted its claim first
            return None

    async def _release(self, claim: Claim) -> None:
        async with session_scope(self._sessionmaker) as session:
            await repository.release_claim(session, claim.id, claim.attempt)

    async def _make(self, key: DecisionKey, claim: Claim) -> Decision:
        try:
            async with self._sessionmaker() as session:
                version = await session.get(BotVersion, key.bot_version_id)
            if version is None:
                raise NotFound("bot version")
            strategy = Strategy.model_validate(version.strategy)
            candles = await self._market.closed_candles(
                key.symbol,
                key.timeframe,
                history_needed(strategy),
                now=key.candle + timedelta(milliseconds=interval_ms(key.timeframe)),
            )
            indicators = indicator_score(candles, strategy.indicators)
            panel = panel_of(strategy, self._voters, self._prices)
            reason, over_budget = None, False
            prompt: VotePrompt | None = None
            if not panel:
                reason = "no LLM voter configured for this bot: indicators only"
            else:
                prompt = prompt_for(
                    key.symbol, key.timeframe, key.candle, indicators.snapshot, candles
                )
                most = most_for(panel, prompt)
                if most is not None:
                    reason = await self._reserve(
                        version.bot_id, key, claim, strategy.llm_daily_budget_usd, most
                    )
                    over_budget = reason is not None
        except Exception:
            # Nothing was asked yet: the next attempt may start now rather than after the lease.
            await self._release(claim)
            raise
        asked = prompt if panel and reason is None else None
        results = await ask_panel(panel, asked) if asked else []
        outcome = apply_rule(RULE_VERSION, strategy.ensemble, indicators.score, ballots(results))
        decision = Decision(
            bot_version_id=key.bot_version_id,
            symbol=key.symbol,
            timeframe=key.timeframe,
            candle_open_at=key.candle,
            indicators=indicators.snapshot,
            indicator_score=indicators.score,
            combined_score=outcome.score,
            action=outcome.action.value,
            rule_version=RULE_VERSION,
            rule_params={
                **strategy.ensemble.model_dump(mode="json"),
                "prompt_version": PROMPT_VERSION,
                "voters_configured": len(panel),
            },
            fallback_reason="; ".join(r for r in (reason, outcome.reason) if r) or None,
            candle_count=len(candles),
            candles_first_open_at=candles[0].open_time,
            candles_sha256=candles_digest(candles),
        )
        return await self._store(
            decision, _Round(asked, results), version.bot_id, claim, over_budget
        )

    async def _reserve(
        self, bot_id: str, key: DecisionKey, claim: Claim, daily_usd: Decimal, most: Decimal
    ) -> str | None:
        """Reserve what the round may cost; the reason it may not be asked, or None."""
        now = utcnow()
        async with self._sessionmaker() as session:
            await budget.lock(session, bot_id)
            # On SQLite this write begins the transaction, so no other writer can change the
            # sums below before it commits. The lease restarts: the round begins now.
            if not await repository.reserve(
                session, claim.id, claim.attempt, most, now + self._lease
            ):
                raise _ClaimLost
            # The budget's day is the candle's UTC day, so a replayed or late decision is
            # charged to the day it decides.
            over = await budget.overdraft(
                session, bot_id, key.candle, now, most, daily_usd, excluding_claim_id=claim.id
            )
            if over is not None:
                await session.rollback()
                return (
                    f"daily LLM budget of {daily_usd} USD reached: "
                    f"{over.spent.quantize(budget.USD_PLACES)} spent, "
                    f"{over.reserved.quantize(budget.USD_PLACES)} reserved by rounds in flight, "
                    f"up to {most.quantize(budget.USD_PLACES)} for this one: indicators only"
                )
            await session.commit()
        return None

    async def _store(
        self, decision: Decision, round_: _Round, bot_id: str, claim: Claim, over_budget: bool
    ) -> Decision:
        """Store the decision with its votes and prompt, chain it and delete the claim, in one
        transaction; the decision stored first when another process stored one without
        claiming it."""
        try:
            async with session_scope(self._sessionmaker) as session:
                await budget.lock(session, bot_id)
                # The fencing check, and the reservation released where its real cost lands.
                if not await repository.release_claim(session, claim.id, claim.attempt):
                    raise _ClaimLost
                session.add(decision)
                await session.flush()
                votes = _vote_rows(decision.id, round_)
                session.add_all(votes)
                if round_.prompt is not None:
                    session.add(_prompt_row(decision, round_.prompt))
                await session.flush()
                await chain.append(session, self._signer, bot_id, decision, votes, utcnow())
                events.decision_made(session, bot_id, decision, votes)
                if over_budget:
                    await budget.record_exhausted(session, bot_id, decision)
        except IntegrityError:
            return await self._stored_elsewhere(decision, claim)
        _log_and_count(decision, round_.results, bot_id)
        return decision

    async def _stored_elsewhere(self, decision: Decision, claim: Claim) -> Decision:
        # Stored by something that did not claim it (a process of an older release): theirs
        # stands, and our claim goes.
        await self._release(claim)
        existing = await self._existing(
            DecisionKey(
                decision.bot_version_id,
                decision.symbol,
                decision.timeframe,
                decision.candle_open_at,
            )
        )
        assert existing is not None
        log.info("decision already made elsewhere", extra={"decision_id": existing.id})
        return existing


@dataclass(frozen=True)
class _Round:
    """The panel's round: the prompt it was asked (None: not asked) and every seat's result."""

    prompt: VotePrompt | None
    results: list[tuple[Decimal, VoteResult]]


def _prompt_row(decision: Decision, prompt: VotePrompt) -> DecisionPrompt:
    return DecisionPrompt(
        decision_id=decision.id,
        sha256=prompt_digest(prompt.system, prompt.user),
        system=prompt.system,
        user=prompt.user,
        created_at=decision.created_at,
    )


def _vote_rows(decision_id: str, round_: _Round) -> list[LlmVote]:
    """Every seat's vote or abstention as the decision stores it, in seat order, with the
    prompt's digest, the raw answer and what asking cost."""
    digest = prompt_digest(round_.prompt.system, round_.prompt.user) if round_.prompt else None
    return [
        LlmVote(
            decision_id=decision_id,
            seat=seat,
            prompt_sha256=digest,
            response_text=r.response_text,
            provider=r.provider,
            model=r.model,
            weight=weight,
            action=r.vote.action if r.vote else None,
            confidence=_confidence(r.vote) if r.vote else None,
            reasoning=r.vote.reasoning if r.vote else None,
            cited_indicators=r.vote.cited_indicators if r.vote else [],
            abstain_reason=r.abstain_reason,
            tokens_in=r.tokens_in,
            tokens_out=r.tokens_out,
            latency_ms=r.latency_ms,
            cost_usd=r.cost_usd,
        )
        for seat, (weight, r) in enumerate(round_.results)
    ]


def _log_and_count(
    decision: Decision, results: list[tuple[Decimal, VoteResult]], bot_id: str
) -> None:
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
        metrics.LLM_COST.labels(r.provider, bot_id).inc(float(r.cost_usd))
