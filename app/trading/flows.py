"""The scheduled work, as service coroutines the Celery tasks call with ids.

dispatch -> decide (once per group and candle) -> execute (per subscription, in chunks),
plus the protective exits, expiry, the hourly equity points and the reconciler. Everything
here is safe to run twice: decisions are unique per candle, orders at most once per
(subscription, intent), equity points unique per hour. Jobs are handed to `enqueue` by name;
this module knows nothing of Celery.

Nothing that moves money depends on a job being delivered: the reconciler works from the
database alone, so a job lost between a commit and the broker, or held by a dead worker
until the broker's visibility timeout, costs at most one lease and one sweep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bots.strategy import Strategy
from app.core.db import session_scope
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import TemporaryError
from app.integrations.binance.filters import SymbolRules
from app.models import BotVersion, Decision, PerformanceLog, Subscription, Trade
from app.performance.service import reference_capital
from app.subscriptions import repository as subscriptions
from app.trading import metrics, repository, risk
from app.trading.decide import DecisionMaker
from app.trading.execution import FINAL_STATUSES, Executor, OrderIntent
from app.trading.fills import Side
from app.trading.market_data import interval_ms, last_closed_open_ms

log = logging.getLogger(__name__)

Enqueue = Callable[[str, dict[str, Any]], Awaitable[None]]
EXECUTE_CONCURRENCY = 10
RECONCILE_BATCH = 200


@dataclass(frozen=True)
class Reconciled:
    attempts_resolved: int
    expiries_finished: int
    orders_recovered: int


@dataclass(frozen=True)
class Group:
    bot_version_id: str
    symbol: str
    timeframe: str


def candle_close(timeframe: str, now: datetime) -> datetime:
    """When the latest closed candle closed: decisions are made "as of" that instant."""
    closed_open = last_closed_open_ms(timeframe, now)
    return datetime.fromtimestamp((closed_open + interval_ms(timeframe)) / 1000, UTC)


def send_deadline(decision: Decision, settings: Settings) -> datetime:
    """The instant a decision's orders go stale: when the next candle closes, unless the
    timeframe has a window of its own; never later than the cap after the decided close."""
    step = timedelta(milliseconds=interval_ms(decision.timeframe))
    window = settings.order_freshness_s.get(decision.timeframe, step.total_seconds())
    window = min(window, settings.order_freshness_cap_s)
    return decision.candle_open_at + step + timedelta(seconds=window)


class TradingFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        decisions: DecisionMaker,
        executor: Executor,
        clients: BinanceClients,
        settings: Settings,
        enqueue: Enqueue,
        chunk_size: int = 100,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._decisions = decisions
        self._executor = executor
        self._clients = clients
        self._settings = settings
        self._enqueue = enqueue
        self._chunk_size = chunk_size

    async def dispatch(self, now: datetime) -> list[Group]:
        """Enqueue one decide per group whose latest closed candle has no decision yet."""
        async with self._sessionmaker() as session:
            groups = [Group(*g) for g in await repository.active_groups(session)]
            due = []
            for group in groups:
                candle = datetime.fromtimestamp(
                    last_closed_open_ms(group.timeframe, now) / 1000, UTC
                )
                decided = await repository.decision_for(
                    session, group.bot_version_id, group.symbol, group.timeframe, candle
                )
                if decided is None:
                    due.append(group)
        for group in due:
            await self._enqueue(
                "trading.decide",
                {**vars(group), "as_of": candle_close(group.timeframe, now).isoformat()},
            )
        return due

    async def decide(
        self, bot_version_id: str, symbol: str, timeframe: str, as_of: datetime
    ) -> Decision:
        decision = await self._decisions.decide(bot_version_id, symbol, timeframe, now=as_of)
        if decision.action != "HOLD":
            async with self._sessionmaker() as session:
                ids = await repository.active_subscription_ids(
                    session, bot_version_id, symbol, timeframe
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
        bound = asyncio.Semaphore(EXECUTE_CONCURRENCY)
        # One market for the whole chunk: its price and rules are read once, not per renter.
        price = await (await self._clients.public()).price(decision.symbol)
        rules = await self._clients.rules(decision.symbol)

        async def one(sub_id: str) -> Trade | None:
            async with bound:
                return await self._execute_one(decision, side, sub_id, price, rules)

        # Every subscription of the chunk gets its turn before a failure is raised (for the
        # task to retry the chunk); the ones that succeeded are no-ops on the retry.
        outcomes = await asyncio.gather(*(one(s) for s in subscription_ids), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]
        return [o for o in outcomes if not isinstance(o, BaseException)]

    async def _execute_one(
        self, decision: Decision, side: Side, sub_id: str, price: Decimal, rules: SymbolRules
    ) -> Trade | None:
        intent = OrderIntent(
            sub_id,
            side,
            decision.id,
            decision.id,
            f"decision {decision.action}",
            send_before=send_deadline(decision, self._settings),
        )
        async with self._sessionmaker() as session:
            sub = await session.get(Subscription, sub_id)
            if sub is None or sub.status != "active":
                return None
            position = await subscriptions.position_of(session, sub.id)
            if side is Side.SELL and (position is None or rules.is_dust(position.quantity, price)):
                return None  # nothing to sell: no order, nothing to record
            version = await session.get(BotVersion, sub.bot_version_id)
            assert version is not None
            limits = risk.limits_for(Strategy.model_validate(version.strategy).risk, sub.risk)
            verdict = await risk.check(
                session,
                sub,
                limits,
                side,
                price,
                reference_capital(sub, self._settings),
                datetime.now(UTC),
            )
        if not verdict.allowed:
            assert verdict.reason is not None and verdict.limit is not None
            metrics.RISK_REFUSALS.labels(verdict.limit).inc()
            if verdict.pause_subscription:
                await self._pause(sub_id, verdict.reason)
            return await self._executor.refuse(intent, f"risk: {verdict.reason}")
        return await self._executor.execute(intent, price)

    async def _pause(self, sub_id: str, reason: str) -> None:
        async with session_scope(self._sessionmaker) as session:
            sub = await session.get(Subscription, sub_id)
            if sub is not None and sub.status == "active":
                sub.status, sub.status_reason = "paused", reason

    async def protect(self, now: datetime) -> list[Trade]:
        """Stop-loss, take-profit and trailing stop against the latest price."""
        exits = []
        async with self._sessionmaker() as session:
            subs = await repository.subscriptions_with(session, ("active",))
        prices = await self._prices({sub.symbol for sub in subs})
        for sub in subs:
            trade = await self._protect_one(sub, prices[sub.symbol])
            if trade is not None:
                exits.append(trade)
        return exits

    async def _prices(self, symbols: set[str]) -> dict[str, Decimal]:
        """The latest price of each symbol, read once per run however many renters hold it."""
        client = await self._clients.public()
        return {symbol: await client.price(symbol) for symbol in sorted(symbols)}

    async def _protect_one(self, sub: Subscription, price: Decimal) -> Trade | None:
        rules = await self._clients.rules(sub.symbol)
        async with session_scope(self._sessionmaker) as session:
            position = await subscriptions.position_of(session, sub.id)
            if position is None or rules.is_dust(position.quantity, price):
                return None
            version = await session.get(BotVersion, sub.bot_version_id)
            assert version is not None
            limits = risk.limits_for(Strategy.model_validate(version.strategy).risk, sub.risk)
            position.peak_price = max(position.peak_price or price, price)
            reason = risk.exit_reason(limits, position.average_cost, position.peak_price, price)
            entries = await repository.filled_buys(session, sub.id)
        if reason is None:
            return None
        # One protective exit per entry cycle: the key changes only after a new buy fills.
        intent = OrderIntent(sub.id, Side.SELL, f"exit-{entries}", None, reason)
        return await self._executor.execute(intent, price)

    async def expire(self, now: datetime) -> list[str]:
        """Subscriptions past ends_at stop trading. Where the bot closes its position on
        expiry, the subscription stays `expiring` until that sale is resolved (the reconciler
        tries again after a failure), then becomes `expired`."""
        finished = []
        async with session_scope(self._sessionmaker) as session:
            due = await repository.due_to_expire(session, now)
            for sub in due:
                sub.status, sub.status_reason = "expiring", "ends_at passed"
        for sub in due:
            if await self._finish_expiry(sub.id):
                finished.append(sub.id)
        return finished

    async def _finish_expiry(self, sub_id: str) -> bool:
        try:
            return await self._close_on_expiry(sub_id)
        except TemporaryError as exc:
            log.warning(
                "expiry sale unresolved; the reconciler will try again",
                extra={"subscription_id": sub_id, "error": str(exc)},
            )
            return False

    async def _close_on_expiry(self, sub_id: str) -> bool:
        async with self._sessionmaker() as session:
            sub = await session.get(Subscription, sub_id)
            assert sub is not None
            version = await session.get(BotVersion, sub.bot_version_id)
            assert version is not None
            close = Strategy.model_validate(version.strategy).close_position_on_expiry
            position = await subscriptions.position_of(session, sub.id)
        if close and position is not None and position.quantity > 0:
            sale = await self._executor.execute(
                OrderIntent(sub.id, Side.SELL, "expiry", None, "subscription expired")
            )
            if sale.status not in FINAL_STATUSES:
                return False
        async with session_scope(self._sessionmaker) as session:
            row = await session.get(Subscription, sub_id)
            assert row is not None
            if row.status == "expiring":
                row.status = "expired"
        return True

    async def reconcile(self, now: datetime) -> Reconciled:
        """One sweep of beat's reconciler, from database state alone: attempts whose lease ran
        out are resolved, unfinished expiries retried, and fresh decisions' orders that no
        execute job placed (lost, or held by a dead worker) are placed."""
        lease = timedelta(seconds=self._settings.order_lease_s)
        async with self._sessionmaker() as session:
            trade_ids = await repository.expired_leases(session, now, RECONCILE_BATCH)
            expiring = await repository.subscription_ids_with(session, ("expiring",))
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
        expired = [sub_id for sub_id in expiring if await self._finish_expiry(sub_id)]
        placed = 0
        for decision, ids in orphans:
            for start in range(0, len(ids), self._chunk_size):
                chunk = ids[start : start + self._chunk_size]
                if await self._survive(self.execute(decision.id, chunk), decision_id=decision.id):
                    placed += len(chunk)
        outcome = Reconciled(resolved, len(expired), placed)
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

    async def snapshot(self, now: datetime) -> int:
        """One equity point per active subscription per hour."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        written = 0
        async with self._sessionmaker() as session:
            subs = await repository.subscriptions_with(session, ("active",))
        prices = await self._prices({sub.symbol for sub in subs})
        for sub in subs:
            price = prices[sub.symbol]
            async with self._sessionmaker() as session:
                position = await subscriptions.position_of(session, sub.id)
                held = position.quantity if position else Decimal(0)
                cost = position.average_cost if position else Decimal(0)
                realized = position.realized_pnl if position else Decimal(0)
                unrealized = held * (price - cost)
                session.add(
                    PerformanceLog(
                        subscription_id=sub.id,
                        recorded_at=hour,
                        equity=reference_capital(sub, self._settings) + realized + unrealized,
                        realized_pnl=realized,
                        unrealized_pnl=unrealized,
                    )
                )
                try:
                    await session.commit()
                    written += 1
                except IntegrityError:
                    await session.rollback()  # this hour's point exists: run twice, kept once
        return written
