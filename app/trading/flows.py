"""The trading work, as service coroutines the Celery tasks call with ids.

dispatch -> decide (once per group and candle, groups in batches) -> execute (per
subscription, in chunks), plus the protective exits and the reconciler (which finishes
unfinished expiries through app/subscriptions/flows.py). Everything here is safe to run
twice: decisions are unique per candle, orders at most once per (subscription, intent). Jobs
are handed to `enqueue` by name; this module knows nothing of Celery.

Nothing that moves money depends on a job being delivered: the reconciler works from the
database alone, so a job lost between a commit and the broker, or held by a dead worker
until the broker's visibility timeout, costs at most one lease and one sweep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bots.strategy import RiskDefaults, Strategy
from app.core.db import session_scope
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.market_streams.prices import PriceBook
from app.models import Decision, Position, Subscription, Trade
from app.subscriptions import repository as subscriptions
from app.subscriptions.flows import SubscriptionFlows
from app.subscriptions.rules import reference_capital
from app.trading import metrics, repository, risk
from app.trading.decide import DecisionMaker
from app.trading.execution import Executor, OrderIntent
from app.trading.fills import Side
from app.trading.market_data import interval_ms, last_closed_open_ms, latest_prices

log = logging.getLogger(__name__)

Enqueue = Callable[[str, dict[str, Any]], Awaitable[None]]
EXECUTE_CONCURRENCY = 10
# Groups per decide task, all decided at once on the task's event loop: their LLM rounds
# (most of a decision's time) overlap instead of holding a process each. A decision holds at
# most one database connection at a time and none while its LLMs answer, so a child deciding
# a batch opens no more connections than one executing a chunk (EXECUTE_CONCURRENCY + 1),
# well within its pool (20, no overflow) and, over ten children, MariaDB's default
# max_connections (151).
DECIDE_BATCH = 10
# Paper orders filled in one transaction. Each order's attempt lives as long as its batch's
# transaction, which holds the batch's positions locked: a whole chunk to a transaction makes
# every order wait for the slowest; a commit per 25 costs little next to the orders' writes.
PAPER_BATCH = 25
RECONCILE_BATCH = 200
# Open positions read (and their peaks written) in one transaction by the polling exit pass.
PROTECT_BATCH = 500


@dataclass(frozen=True)
class Reconciled:
    attempts_resolved: int
    expiries_finished: int
    orders_recovered: int


@dataclass(frozen=True)
class DueGroup:
    """A (bot version, symbol, timeframe) group and the close ("as of") its decision is due
    for, as a decide job carries it."""

    bot_version_id: str
    symbol: str
    timeframe: str
    as_of: datetime

    def job(self) -> dict[str, str]:
        return {**vars(self), "as_of": self.as_of.isoformat()}

    @classmethod
    def from_job(cls, job: Mapping[str, str]) -> DueGroup:
        return cls(
            job["bot_version_id"],
            job["symbol"],
            job["timeframe"],
            datetime.fromisoformat(job["as_of"]),
        )


@dataclass
class Decided:
    """What a decide batch came to, group by group."""

    decisions: list[Decision] = field(default_factory=list)
    # Failed for a while (the exchange, a decision another process is making): to be tried
    # again alone, without the groups decided.
    retry: dict[DueGroup, TemporaryError] = field(default_factory=dict)
    # Failed otherwise: logged; the next dispatch sends an undecided group again, and the
    # reconciler places the orders of a decision whose execute jobs were not sent.
    failed: dict[DueGroup, Exception] = field(default_factory=dict)


def candle_close(timeframe: str, now: datetime) -> datetime:
    """When the latest closed candle closed: decisions are made "as of" that instant."""
    closed_open = last_closed_open_ms(timeframe, now)
    return datetime.fromtimestamp((closed_open + interval_ms(timeframe)) / 1000, UTC)


async def due_groups(
    session: AsyncSession, now: datetime, market: tuple[str, str] | None = None
) -> list[DueGroup]:
    """The groups (of one (symbol, timeframe) `market`, or all) whose latest candle closed at
    `now` has no decision yet: what beat's dispatch and the stream's closed klines send."""
    due = []
    for version_id, symbol, timeframe in await subscriptions.active_groups(session, market):
        candle = datetime.fromtimestamp(last_closed_open_ms(timeframe, now) / 1000, UTC)
        if await repository.decision_for(session, version_id, symbol, timeframe, candle) is None:
            due.append(DueGroup(version_id, symbol, timeframe, candle_close(timeframe, now)))
    return due


async def send_decide_jobs(enqueue: Enqueue, groups: Sequence[DueGroup], batch: int) -> None:
    for start in range(0, len(groups), batch):
        chunk = groups[start : start + batch]
        await enqueue("trading.decide", {"groups": [g.job() for g in chunk]})


def send_deadline(decision: Decision, settings: Settings) -> datetime:
    """The instant a decision's orders go stale: when the next candle closes, unless the
    timeframe has a window of its own; never later than the cap after the decided close."""
    step = timedelta(milliseconds=interval_ms(decision.timeframe))
    window = settings.order_freshness_s.get(decision.timeframe, step.total_seconds())
    window = min(window, settings.order_freshness_cap_s)
    return decision.candle_open_at + step + timedelta(seconds=window)


async def _risk_limits(
    session: AsyncSession, subs: Sequence[Subscription]
) -> dict[str, RiskDefaults]:
    """Each subscription's risk limits: its bot version's defaults under its own overrides."""
    versions = await repository.bot_versions(session, {s.bot_version_id for s in subs})
    defaults = {
        version_id: Strategy.model_validate(version.strategy).risk
        for version_id, version in versions.items()
    }
    return {sub.id: risk.limits_for(defaults[sub.bot_version_id], sub.risk) for sub in subs}


async def _risk_facts(
    session: AsyncSession,
    subs: Sequence[Subscription],
    positions: Mapping[str, Position],
    limits: Mapping[str, RiskDefaults],
    side: Side,
    now: datetime,
) -> dict[str, risk.RiskFacts]:
    """What the subscriptions' orders are checked against, read in two queries for all of
    them (a chunk of renters of one decision), not per renter."""
    ids = [sub.id for sub in subs]
    since = risk.facts_since(limits.values(), side, now)
    filled = await repository.filled_trades_since(session, ids, since)
    equity = await repository.equity_of(session, ids) if side is Side.BUY else {}
    return risk.facts(ids, filled, equity, positions, limits, side, now)


class TradingFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        decisions: DecisionMaker,
        executor: Executor,
        subscription_flows: SubscriptionFlows,
        clients: BinanceClients,
        settings: Settings,
        enqueue: Enqueue,
        prices: PriceBook,
        chunk_size: int = 100,
        decide_batch: int = DECIDE_BATCH,
        paper_batch: int = PAPER_BATCH,
        protect_batch: int = PROTECT_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._decisions = decisions
        self._executor = executor
        self._subscription_flows = subscription_flows
        self._clients = clients
        self._settings = settings
        self._enqueue = enqueue
        self._prices = prices
        self._chunk_size = chunk_size
        self._decide_batch = decide_batch
        self._paper_batch = paper_batch
        self._protect_batch = protect_batch

    async def dispatch(self, now: datetime) -> list[DueGroup]:
        """Enqueue, in batches of `decide_batch`, the groups whose latest closed candle has no
        decision yet."""
        async with self._sessionmaker() as session:
            due = await due_groups(session, now)
        await send_decide_jobs(self._enqueue, due, self._decide_batch)
        return due

    async def decide(self, groups: Sequence[DueGroup]) -> Decided:
        """Decide the groups concurrently (`decide_batch` at a time), each decision's execute
        jobs sent as soon as it is made. One group's failure stops none of the others."""
        bound = asyncio.Semaphore(self._decide_batch)

        async def one(group: DueGroup) -> Decision:
            async with bound:
                return await self._decide_one(group)

        outcomes = await asyncio.gather(*(one(g) for g in groups), return_exceptions=True)
        decided = Decided()
        for group, outcome in zip(groups, outcomes, strict=True):
            ids = group.job()
            if isinstance(outcome, Decision):
                decided.decisions.append(outcome)
            elif isinstance(outcome, TemporaryError):
                extra = {**ids, "error": str(outcome)}
                log.warning("decision deferred; its group is retried alone", extra=extra)
                decided.retry[group] = outcome
            elif isinstance(outcome, Exception):
                log.error("decision failed", extra=ids, exc_info=outcome)
                decided.failed[group] = outcome
            else:
                raise outcome  # cancelled, or the process is stopping: not one group's failure
        return decided

    async def _decide_one(self, group: DueGroup) -> Decision:
        decision = await self._decisions.decide(
            group.bot_version_id, group.symbol, group.timeframe, now=group.as_of
        )
        if decision.action != "HOLD":
            async with self._sessionmaker() as session:
                ids = await subscriptions.active_subscription_ids(
                    session, group.bot_version_id, group.symbol, group.timeframe
                )
            for start in range(0, len(ids), self._chunk_size):
                await self._enqueue(
                    "trading.execute",
                    {
                        "decision_id": decision.id,
                        "subscription_ids": ids[start : start + self._chunk_size],
                    },
                )
        return decision

    async def execute(self, decision_id: str, subscription_ids: list[str]) -> list[Trade | None]:
        async with self._sessionmaker() as session:
            decision = await session.get(Decision, decision_id)
        if decision is None or decision.action == "HOLD":
            return []
        side = Side(decision.action)
        # One market for the whole chunk: its price and rules are read once, not per renter.
        price = (await self._latest_prices({decision.symbol}))[decision.symbol]
        rules = await self._clients.rules(decision.symbol)
        verdicts = await self._verdicts(side, subscription_ids, price, rules)
        intents = {sub_id: self._intent(decision, side, sub_id) for sub_id in verdicts}
        # The chunk's allowed paper orders, `paper_batch` to a transaction; a batch that
        # cannot be filled so (an attempt exists already) goes renter by renter like the rest.
        paper = [
            (sub, intents[sub.id])
            for sub, verdict in verdicts.values()
            if sub.mode == "paper" and verdict.allowed
        ]
        done: dict[str, Trade] = {}
        for start in range(0, len(paper), self._paper_batch):
            batch = paper[start : start + self._paper_batch]
            filled = await self._executor.fill_paper(batch, price)
            done.update((trade.subscription_id, trade) for trade in filled or [])
        bound = asyncio.Semaphore(EXECUTE_CONCURRENCY)

        async def one(sub_id: str) -> Trade | None:
            if sub_id in done or sub_id not in verdicts:
                return done.get(sub_id)
            sub, verdict = verdicts[sub_id]
            async with bound:
                return await self._execute_one(intents[sub_id], sub, verdict, price)

        # Every subscription of the chunk gets its turn before a failure is raised (for the
        # task to retry the chunk); the ones that succeeded are no-ops on the retry.
        outcomes = await asyncio.gather(*(one(s) for s in subscription_ids), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]
        return [o for o in outcomes if not isinstance(o, BaseException)]

    async def _latest_prices(self, symbols: set[str]) -> dict[str, Decimal]:
        return await latest_prices(
            self._clients, symbols, self._prices, self._settings.stream_price_max_age_s
        )

    def _intent(self, decision: Decision, side: Side, sub_id: str) -> OrderIntent:
        return OrderIntent(
            sub_id,
            side,
            decision.id,
            decision.id,
            f"decision {decision.action}",
            send_before=send_deadline(decision, self._settings),
        )

    async def _verdicts(
        self, side: Side, sub_ids: list[str], price: Decimal, rules: SymbolRules
    ) -> dict[str, tuple[Subscription, risk.RiskVerdict]]:
        """The chunk's subscriptions that have an order to place, each with its risk verdict:
        read once for the whole chunk (a handful of queries), not once per renter. Inactive
        ones, and for a sell those holding nothing to sell, are left out."""
        now = datetime.now(UTC)
        async with self._sessionmaker() as session:
            subs = await subscriptions.active_subscriptions(session, sub_ids)
            positions = await repository.positions_of(session, sub_ids)
            if side is Side.SELL:
                subs = [
                    sub
                    for sub in subs
                    if sub.id in positions and not rules.is_dust(positions[sub.id].quantity, price)
                ]
            limits = await _risk_limits(session, subs)
            facts = await _risk_facts(session, subs, positions, limits, side, now)
        return {
            sub.id: (
                sub,
                risk.verdict(
                    limits[sub.id],
                    side,
                    price,
                    sub.quote_amount,
                    facts[sub.id].today,
                    facts[sub.id].buy,
                    reference_capital(sub, self._settings),
                    now,
                ),
            )
            for sub in subs
        }

    async def _execute_one(
        self, intent: OrderIntent, sub: Subscription, verdict: risk.RiskVerdict, price: Decimal
    ) -> Trade:
        if not verdict.allowed:
            assert verdict.reason is not None and verdict.limit is not None
            metrics.RISK_REFUSALS.labels(verdict.limit).inc()
            if verdict.pause_subscription:
                await self._subscription_flows.pause(sub.id, verdict.limit, verdict.reason)
            return await self._executor.refuse(sub, intent, f"risk: {verdict.reason}")
        return await self._executor.execute(intent, price, sub)

    async def protect(self, now: datetime) -> list[Trade]:
        """Stop-loss, take-profit and trailing stop of the open positions no healthy market
        stream watches: beat sends this every few seconds, and while every held symbol's
        streamed price is fresh (the stream process checks those positions' exits on every
        price) it returns at once. Otherwise the unwatched symbols' positions are walked in
        batches of `protect_batch`, each batch read in a few queries and its raised peaks
        written in one transaction, at the exchange's price; an exit goes through the fenced
        executor, whose exit key makes the stream's job for the same crossing a no-op."""
        async with self._sessionmaker() as session:
            held = set(await repository.held_symbols(session))
        watched = await self._prices.fresh(held, self._settings.stream_price_max_age_s)
        unwatched = held - watched.keys()
        if not unwatched:
            return []
        prices = await self._latest_prices(unwatched)
        exits = []
        after = ""
        while True:
            async with session_scope(self._sessionmaker) as session:
                batch = await repository.open_positions(
                    session, unwatched, after, self._protect_batch
                )
                limits = await _risk_limits(session, [sub for sub, _ in batch])
                intents = [
                    (intent, prices[sub.symbol])
                    for sub, position in batch
                    if (
                        intent := await self._exit_intent(
                            session, sub, position, limits[sub.id], prices[sub.symbol]
                        )
                    )
                    is not None
                ]
            for intent, price in intents:
                exits.append(await self._executor.execute(intent, price))
            if len(batch) < self._protect_batch:
                return exits
            after = batch[-1][0].id

    async def exit(self, sub_id: str) -> Trade | None:
        """One subscription's exit check at the latest price: what the market streams send
        when a price crosses its position's level (a second send finds the exit made)."""
        async with self._sessionmaker() as session:
            active = await subscriptions.active_subscriptions(session, [sub_id])
        if not active:
            return None
        (sub,) = active
        price = (await self._latest_prices({sub.symbol}))[sub.symbol]
        async with session_scope(self._sessionmaker) as session:
            position = await subscriptions.position_of(session, sub.id)
            limits = await _risk_limits(session, [sub])
            intent = (
                await self._exit_intent(session, sub, position, limits[sub.id], price)
                if position is not None
                else None
            )
        return None if intent is None else await self._executor.execute(intent, price)

    async def _exit_intent(
        self,
        session: AsyncSession,
        sub: Subscription,
        position: Position,
        limits: RiskDefaults,
        price: Decimal,
    ) -> OrderIntent | None:
        """The position's protective exit at `price`, if one is due; its peak raised to the
        price in `session`."""
        rules = await self._clients.rules(sub.symbol)
        if rules.is_dust(position.quantity, price):
            return None
        position.peak_price = max(position.peak_price or price, price)
        exit = risk.exit_reason(limits, position.average_cost, position.peak_price, price)
        if exit is None:
            return None
        # One protective exit per entry cycle: the key changes only after a new buy fills.
        entries = await repository.filled_buys(session, sub.id)
        return OrderIntent(sub.id, Side.SELL, f"exit-{entries}", None, exit.reason, exit=exit.kind)

    async def reconcile(self, now: datetime) -> Reconciled:
        """One sweep of beat's reconciler, from database state alone: attempts whose lease ran
        out are resolved, unfinished expiries retried, and fresh decisions' orders that no
        execute job placed (lost, or held by a dead worker) are placed."""
        lease = timedelta(seconds=self._settings.order_lease_s)
        async with self._sessionmaker() as session:
            trade_ids = await repository.expired_leases(session, now, RECONCILE_BATCH)
            expiring = await subscriptions.subscription_ids_with(session, ("expiring",))
            # A decision is stale `order_freshness_cap_s` after it was made at the latest;
            # one younger than a lease may still have its execute jobs on their way.
            decisions = await repository.orderable_decisions(
                session,
                now - timedelta(seconds=self._settings.order_freshness_cap_s),
                now - lease,
            )
            orphans = [
                (decision, await repository.unexecuted_subscription_ids(session, decision))
                for decision in decisions
                if send_deadline(decision, self._settings) > now
            ]
        bound = asyncio.Semaphore(EXECUTE_CONCURRENCY)

        async def resolve(trade_id: str) -> bool:
            async with bound:
                return await self._survive(self._executor.resume(trade_id), trade_id=trade_id)

        resolved = sum(await asyncio.gather(*(resolve(t) for t in trade_ids)))
        expired = [
            sub_id for sub_id in expiring if await self._subscription_flows.finish_expiry(sub_id)
        ]
        placed = 0
        for decision, ids in orphans:
            for start in range(0, len(ids), self._chunk_size):
                chunk = ids[start : start + self._chunk_size]
                if await self._survive(self.execute(decision.id, chunk), decision_id=decision.id):
                    placed += len(chunk)
        outcome = Reconciled(resolved, len(expired), placed)
        metrics.count_sweep(resolved, len(expired), placed, len(trade_ids) - resolved)
        if outcome != Reconciled(0, 0, 0):
            log.info("reconciled", extra=vars(outcome))
        return outcome

    @staticmethod
    async def _survive(work: Awaitable[object], **ids: str) -> bool:
        """Run one item of a sweep; its failure is logged and retried by the next sweep,
        never allowed to stop the rest."""
        try:
            return await work is not None
        except Exception:
            log.warning("reconciler item failed; next sweep retries", extra=ids, exc_info=True)
            return False
