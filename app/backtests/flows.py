"""Running a backtest: in chunks, saving its state after each, resumable by anyone.

A run is taken by one conditional UPDATE that increments the row's fence and leases it;
every save is conditional on that fence and on the row still running, so a cancelled run, or
one another worker took over after this one's lease ran out, stops at its next save. A task
works for at most `budget_s` and then hands the rest to a fresh task (Redis would redeliver a
task that outlives its visibility timeout while it still runs). Beat's sweep resends the runs
whose worker died (lease over) and the queued ones whose job was lost: the state saved after
the last chunk is where they resume, and the same chunks give the same result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.backtests import replay, repository
from app.backtests.history import History
from app.backtests.replay import IndicatorsOnly, ReplaySpec, ReplayState, VoteSource
from app.backtests.votes import ASK_WARNING, AskedVotes, RecordedVotes
from app.bots.strategy import Strategy
from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.events.service import record
from app.events.types import EventType
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import TemporaryError
from app.integrations.llm.registry import VoterPool
from app.models import Backtest, BotVersion, User
from app.trading.candles import Candle
from app.trading.decide import panel_of
from app.trading.market_data import interval_ms

log = logging.getLogger(__name__)

Enqueue = Callable[[str, dict[str, Any]], Awaitable[None]]
Progress = Callable[[int, int], None]

CHUNK = 500  # candles between two saves
ASK_CHUNK = 5  # asking LLMs takes up to LLM_TIMEOUT_S per candle
TASK_BUDGET_S = 60.0  # then a fresh task goes on, well within the task's time limits
QUEUED_GRACE_S = 120.0  # a queued run no task took by then lost its job
RESUME_BATCH = 100


@dataclass
class _Run:
    spec: ReplaySpec
    candles: list[Candle]
    state: ReplayState
    votes: VoteSource
    first: int
    end: int


class BacktestFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        voters: VoterPool,
        settings: Settings,
        enqueue: Enqueue,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clients = clients
        self._voters = voters
        self._settings = settings
        self._enqueue = enqueue
        self._clock = clock
        self._history = History(sessionmaker, clients, clock)
        # Unless set: longer than the slowest chunk, ASK_CHUNK candles of LLM rounds, plus slack.
        self.lease = timedelta(
            seconds=settings.backtest_lease_s or max(120.0, ASK_CHUNK * settings.llm_timeout_s + 60)
        )

    async def run(
        self,
        backtest_id: str,
        *,
        budget_s: float | None = TASK_BUDGET_S,
        progress: Progress | None = None,
    ) -> None:
        """Take the run and replay it from its saved state: to the end, or until `budget_s`
        has passed (None: no limit), then hand the rest to a new task."""
        now = self._clock()
        async with session_scope(self._sessionmaker) as session:
            if not await repository.claim(session, backtest_id, now, now + self.lease):
                return  # finished, cancelled, or another worker holds it
            backtest = await session.get(Backtest, backtest_id)
            assert backtest is not None
            if backtest.started_at is None:
                backtest.started_at = now
            fence = backtest.fence
        try:
            run = await self._prepare(backtest)
        except TemporaryError:
            # Let the task's retry take the run at once rather than after the lease.
            await self._save(backtest_id, fence, lease_until=self._clock())
            raise
        except (ValueError, LookupError) as exc:
            await self._finish(backtest, fence, status="failed", error=str(exc)[:500])
            return
        await self._replay(backtest, fence, run, budget_s, progress)

    async def _prepare(self, backtest: Backtest) -> _Run:
        async with self._sessionmaker() as session:
            version = await session.get(BotVersion, backtest.bot_version_id)
        assert version is not None
        strategy = Strategy.model_validate(version.strategy)
        spec = ReplaySpec(
            strategy=strategy,
            symbol=backtest.symbol,
            timeframe=backtest.timeframe,
            rules=await self._history.rules(backtest.symbol),
            quote_amount=backtest.quote_amount,
            slippage=self._settings.paper_slippage,
            start=backtest.start_at,
            end=backtest.end_at,
        )
        warmup = timedelta(
            milliseconds=interval_ms(spec.timeframe) * replay.warmup_candles(strategy)
        )
        candles = await self._history.candles(
            spec.symbol, spec.timeframe, spec.start - warmup, spec.end
        )
        first = ReplayState.initial(spec, candles)
        state = ReplayState.from_json(backtest.state) if backtest.state else first
        return _Run(
            spec,
            candles,
            state,
            await self._votes(backtest, strategy, state),
            first.next_index,
            replay.end_index(spec, candles),
        )

    async def _votes(
        self, backtest: Backtest, strategy: Strategy, state: ReplayState
    ) -> VoteSource:
        if backtest.llm == "recorded":
            async with self._sessionmaker() as session:
                return await RecordedVotes.load(
                    session,
                    backtest.bot_version_id,
                    backtest.symbol,
                    backtest.timeframe,
                    backtest.start_at,
                    backtest.end_at,
                )
        if backtest.llm == "ask":
            return AskedVotes(
                backtest.symbol,
                backtest.timeframe,
                panel_of(strategy, self._voters, self._settings.llm_prices),
                cap=backtest.llm_reserved_usd,
                spent=state.llm_cost_usd,
            )
        return IndicatorsOnly()

    async def _replay(
        self,
        backtest: Backtest,
        fence: int,
        run: _Run,
        budget_s: float | None,
        progress: Progress | None,
    ) -> None:
        chunk = ASK_CHUNK if backtest.llm == "ask" else CHUNK
        total = run.end - run.first
        started = time.monotonic()
        state = run.state
        while state.next_index < run.end:
            until = min(state.next_index + chunk, run.end)
            state = await replay.advance(run.spec, run.candles, state, run.votes, until_index=until)
            done = state.next_index - run.first
            if not await self._save(
                backtest.id,
                fence,
                state=state.to_json(),
                candles_done=done,
                candles_total=total,
                llm_cost_usd=state.llm_cost_usd,
                lease_until=self._clock() + self.lease,
            ):
                log.info("backtest cancelled or taken over", extra={"backtest_id": backtest.id})
                return
            if progress is not None:
                progress(done, total)
            if budget_s is not None and time.monotonic() - started > budget_s:
                if state.next_index < run.end:
                    await self._hand_over(backtest.id, fence)
                    return
        outcome = replay.result(run.spec, run.candles, state)
        outcome["warnings"] = _warnings(backtest.llm, outcome)
        await self._finish(
            backtest,
            fence,
            status="succeeded",
            result=outcome,
            candles_done=total,
            candles_total=total,
        )

    async def _finish(self, backtest: Backtest, fence: int, **values: Any) -> None:
        """End the run with `values` (its status, result or error), told in the same
        transaction unless the run was cancelled or taken over meanwhile."""
        async with session_scope(self._sessionmaker) as session:
            if await repository.save(
                session, backtest.id, fence, finished_at=self._clock(), lease_until=None, **values
            ):
                await backtest_finished(session, backtest, values)

    async def _hand_over(self, backtest_id: str, fence: int) -> None:
        # The lease ends now, so the next task takes the run at once.
        if await self._save(backtest_id, fence, lease_until=self._clock()):
            await self._enqueue("backtests.run", {"backtest_id": backtest_id})

    async def _save(self, backtest_id: str, fence: int, **values: Any) -> bool:
        async with session_scope(self._sessionmaker) as session:
            return await repository.save(session, backtest_id, fence, **values)

    async def resume_stalled(self, now: datetime) -> list[str]:
        """Beat's sweep: resend the runs whose worker died and the queued ones whose job was
        lost; taking a run is atomic, so one sent twice runs once."""
        async with self._sessionmaker() as session:
            due = await repository.due_to_resume(
                session, now, now - timedelta(seconds=QUEUED_GRACE_S), RESUME_BATCH
            )
        for backtest_id in due:
            await self._enqueue("backtests.run", {"backtest_id": backtest_id})
        if due:
            log.info("backtests resumed", extra={"backtests": len(due)})
        return due


async def backtest_finished(
    session: AsyncSession, backtest: Backtest, values: dict[str, Any]
) -> None:
    """For the bot's developer (bot_id), and for the renter who ran it, if one did."""
    owner = await session.get(User, backtest.owner_user_id) if backtest.owner_user_id else None
    metrics = values.get("result", {}).get("metrics", {})
    record(
        session,
        EventType.backtest_finished,
        user_id=owner.id if owner else None,
        principal=owner.principal if owner else None,
        marketplace_id=owner.marketplace_id if owner else None,
        bot_id=backtest.bot_id,
        data={
            "backtest_id": backtest.id,
            "bot_id": backtest.bot_id,
            "bot_version": backtest.bot_version,
            "symbol": backtest.symbol,
            "timeframe": backtest.timeframe,
            "start_at": backtest.start_at,
            "end_at": backtest.end_at,
            "llm": backtest.llm,
            "status": values["status"],
            "error": values.get("error"),
            "total_return": metrics.get("total_return"),
            "trades": metrics.get("trades"),
        },
    )


def _warnings(llm: str, outcome: dict[str, Any]) -> list[str]:
    if llm == "ask":
        return [ASK_WARNING]
    if llm == "recorded":
        coverage = outcome["llm"]["coverage"]
        warnings = [
            f"LLM votes were recorded for a share of {coverage} of the decisions (live "
            "decisions of this bot version); the others are indicator-only"
        ]
        if mismatches := outcome["llm"]["window_mismatches"]:
            warnings.append(
                f"{mismatches} live decision(s) saw other candles than this backtest replays "
                "(their candle digest differs): their votes were left out, those decisions "
                "are indicator-only"
            )
        return warnings
    return []
