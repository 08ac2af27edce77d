"""The SQL of backtests: the shared candle and symbol-rule store, owned runs, the fenced claim
and save of a running backtest, and the live decisions a replay reuses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.integrations.binance.filters import SymbolRules
from app.models import (
    ApiKey,
    Backtest,
    BotMarketplaceRegistration,
    BotVersion,
    Decision,
    LlmVote,
    SymbolRulesRecord,
)
from app.models import Candle as CandleRow
from app.trading.candles import Candle

ACTIVE = ("queued", "running")
BINANCE_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class Owner:
    """Who may see a backtest: the API key that started it, or the renter it was started for
    (both None: an operator's run from the command line, seen by no key)."""

    api_key_id: str | None = None
    user_id: str | None = None


async def candles_between(
    session: AsyncSession, symbol: str, timeframe: str, start: datetime, end: datetime
) -> list[Candle]:
    rows = await session.scalars(
        select(CandleRow)
        .where(
            CandleRow.symbol == symbol,
            CandleRow.timeframe == timeframe,
            CandleRow.open_time >= start,
            CandleRow.open_time < end,
        )
        .order_by(CandleRow.open_time)
    )
    return [
        Candle(
            r.open_time,
            _spelt_as_binance(r.open),
            _spelt_as_binance(r.high),
            _spelt_as_binance(r.low),
            _spelt_as_binance(r.close),
            _spelt_as_binance(r.volume),
            r.close_time,
        )
        for r in rows.all()
    ]


def _spelt_as_binance(value: Decimal) -> Decimal:
    # Binance spells prices and volumes with 8 decimals, and a prompt quotes closes as
    # spelt; the database returns its own scale (18 places on MariaDB, none on SQLite).
    return value.quantize(BINANCE_PLACES)


async def store_candles(
    session: AsyncSession, symbol: str, timeframe: str, candles: Sequence[Candle]
) -> None:
    values = [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "open_time": c.open_time,
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "close_time": c.close_time,
        }
        for c in candles
    ]
    await _insert_keeping_existing(session, CandleRow, values)


async def _insert_keeping_existing(
    session: AsyncSession, model: type[CandleRow] | type[SymbolRulesRecord], values: Any
) -> None:
    """Insert; a row whose key is already stored (by a concurrent fetch) is kept as it is."""
    statement: Any
    if session.get_bind().dialect.name == "sqlite":
        statement = sqlite.insert(model).on_conflict_do_nothing()
    else:
        statement = mysql.insert(model)
        statement = statement.on_duplicate_key_update(symbol=statement.inserted.symbol)
    await session.execute(statement, values)


async def stored_rules(session: AsyncSession, symbol: str) -> SymbolRules | None:
    row = await session.get(SymbolRulesRecord, symbol)
    return SymbolRules.from_json(row.rules) if row is not None else None


async def store_rules(session: AsyncSession, rules: SymbolRules, now: datetime) -> None:
    await _insert_keeping_existing(
        session,
        SymbolRulesRecord,
        {"symbol": rules.symbol, "rules": rules.to_json(), "fetched_at": now},
    )


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    if owner.api_key_id is not None:
        return Backtest.owner_api_key_id == owner.api_key_id
    return Backtest.owner_user_id == owner.user_id


async def get_owned(session: AsyncSession, backtest_id: str, owner: Owner) -> Backtest | None:
    # Scoped by owner in the query itself: another's backtest is simply not found.
    return await session.scalar(
        select(Backtest).where(Backtest.id == backtest_id, _owned_by(owner))
    )


async def latest_public_results(
    session: AsyncSession, bot_id: str, developer_user_id: str
) -> Sequence[Row[int, str, str, datetime, datetime, str, dict[str, Any]]]:
    """Per version of the bot, by version: the window, the LLM mode and the result's metrics
    of its latest succeeded backtest (by finish, then id) that the bot's developer, an admin
    or an operator (from the command line, no owner) started. A renter's backtest is theirs,
    not the bot's public record."""
    public = or_(
        and_(Backtest.owner_api_key_id.is_(None), Backtest.owner_user_id.is_(None)),
        ApiKey.scope == "admin",
        and_(ApiKey.scope == "developer", ApiKey.owner_user_id == developer_user_id),
    )
    ranked = (
        select(
            Backtest.id,
            func.row_number()
            .over(
                partition_by=Backtest.bot_version,
                order_by=(Backtest.finished_at.desc(), Backtest.id.desc()),
            )
            .label("recency"),
        )
        .outerjoin(ApiKey, ApiKey.id == Backtest.owner_api_key_id)
        .where(Backtest.bot_id == bot_id, Backtest.status == "succeeded", public)
        .subquery()
    )
    rows = await session.execute(
        select(
            Backtest.bot_version,
            Backtest.symbol,
            Backtest.timeframe,
            Backtest.start_at,
            Backtest.end_at,
            Backtest.llm,
            # The metrics only: the whole result carries the equity curve and every trade.
            Backtest.result["metrics"],
        )
        .join(ranked, ranked.c.id == Backtest.id)
        .where(ranked.c.recency == 1)
        .order_by(Backtest.bot_version)
    )
    return rows.all()


async def is_listed(session: AsyncSession, bot_id: str, marketplace_id: str) -> bool:
    listing = await session.scalar(
        select(BotMarketplaceRegistration.id).where(
            BotMarketplaceRegistration.bot_id == bot_id,
            BotMarketplaceRegistration.marketplace_id == marketplace_id,
            BotMarketplaceRegistration.status == "active",
        )
    )
    return listing is not None


async def cancel_active(session: AsyncSession, backtest_id: str, now: datetime) -> bool:
    """Cancel the run if it has not ended: conditional, so one that finished meanwhile keeps
    its result."""
    cancelled = await session.execute(
        update(Backtest)
        .where(Backtest.id == backtest_id, Backtest.status.in_(ACTIVE))
        .values(status="cancelled", finished_at=now, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(cancelled.rowcount)  # type: ignore[attr-defined]


async def delete_of_user(session: AsyncSession, user_id: str) -> None:
    """A renter's erasure takes their backtests: a worker running one stops at its next save,
    which finds no row."""
    await session.execute(
        delete(Backtest)
        .where(Backtest.owner_user_id == user_id)
        .execution_options(synchronize_session=False)
    )


async def version_of(session: AsyncSession, bot_id: str, version: int) -> BotVersion | None:
    return await session.scalar(
        select(BotVersion).where(BotVersion.bot_id == bot_id, BotVersion.version == version)
    )


async def claim(session: AsyncSession, backtest_id: str, now: datetime, until: datetime) -> bool:
    """Take the run: queued, or running under a lease that has run out (its worker died).
    Increments the fence, so the former holder can no longer save."""
    taken = await session.execute(
        update(Backtest)
        .where(
            Backtest.id == backtest_id,
            or_(
                Backtest.status == "queued",
                and_(Backtest.status == "running", Backtest.lease_until < now),
            ),
        )
        .values(status="running", fence=Backtest.fence + 1, lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


async def save(session: AsyncSession, backtest_id: str, fence: int, **values: Any) -> bool:
    """Write the run's progress if it is still ours and running (not cancelled, not taken over)."""
    saved = await session.execute(
        update(Backtest)
        .where(Backtest.id == backtest_id, Backtest.fence == fence, Backtest.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(saved.rowcount)  # type: ignore[attr-defined]


async def due_to_resume(
    session: AsyncSession, now: datetime, queued_before: datetime, limit: int
) -> list[str]:
    """Running backtests whose worker's lease ran out, and queued ones no task has taken
    (their job was lost between the commit and the broker)."""
    ids = await session.scalars(
        select(Backtest.id)
        .where(
            or_(
                and_(Backtest.status == "running", Backtest.lease_until < now),
                and_(Backtest.status == "queued", Backtest.created_at < queued_before),
            )
        )
        .order_by(Backtest.id)
        .limit(limit)
    )
    return list(ids.all())


async def recorded_rounds(
    session: AsyncSession,
    bot_version_id: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
) -> dict[datetime, tuple[Decision, list[LlmVote]]]:
    """The live decisions of a bot version for candles opening in [start, end), each with
    its stored votes in seat order (none when the decision asked nobody)."""
    decisions = (
        await session.scalars(
            select(Decision).where(
                Decision.bot_version_id == bot_version_id,
                Decision.symbol == symbol,
                Decision.timeframe == timeframe,
                Decision.candle_open_at >= start,
                Decision.candle_open_at < end,
            )
        )
    ).all()
    rounds = {decision.id: (decision, list[LlmVote]()) for decision in decisions}
    if rounds:
        votes = await session.scalars(
            select(LlmVote)
            .join(Decision, Decision.id == LlmVote.decision_id)
            .where(
                Decision.bot_version_id == bot_version_id,
                Decision.symbol == symbol,
                Decision.timeframe == timeframe,
                Decision.candle_open_at >= start,
                Decision.candle_open_at < end,
            )
            # The order the live decision combined and chained them; votes of decisions made
            # before seats were recorded all sit at 0: provider and model.
            .order_by(LlmVote.decision_id, LlmVote.seat, LlmVote.provider, LlmVote.model)
        )
        for vote in votes.all():
            rounds[vote.decision_id][1].append(vote)
    return {decision.candle_open_at: (decision, votes) for decision, votes in rounds.values()}
