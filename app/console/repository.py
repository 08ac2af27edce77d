"""The console's SQL: its sessions, and the reads its pages need that no other domain has."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    ApiKey,
    Backtest,
    Bot,
    BotVersion,
    ConsoleSession,
    Decision,
    LlmVote,
    Subscription,
)


async def session_key(session: AsyncSession, token_digest: str) -> tuple[str, datetime] | None:
    """The digest of the API key a console session belongs to, and when the session ends."""
    row = (
        await session.execute(
            select(ApiKey.key_digest, ConsoleSession.expires_at)
            .join(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
            .where(ConsoleSession.token_digest == token_digest)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def delete_session(session: AsyncSession, token_digest: str) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_digest == token_digest))


async def delete_expired_sessions(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))


async def bots_page(
    session: AsyncSession, owner_user_id: str | None, after_id: str | None, limit: int
) -> Sequence[tuple[Bot, BotVersion]]:
    """Bots by id with their current version: one developer's, or everyone's (None)."""
    query = (
        select(Bot, BotVersion)
        .join(
            BotVersion,
            (BotVersion.bot_id == Bot.id) & (BotVersion.version == Bot.current_version),
        )
        .order_by(Bot.id)
        .limit(limit)
    )
    if owner_user_id is not None:
        query = query.where(Bot.owner_user_id == owner_user_id)
    if after_id:
        query = query.where(Bot.id > after_id)
    return [(bot, version) for bot, version in (await session.execute(query)).all()]


async def renters_by_mode(
    session: AsyncSession, bot_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Per bot, its renters with an active subscription, per mode."""
    rows = await session.execute(
        select(Subscription.bot_id, Subscription.mode, func.count(distinct(Subscription.user_id)))
        .where(Subscription.bot_id.in_(bot_ids), Subscription.status == "active")
        .group_by(Subscription.bot_id, Subscription.mode)
    )
    counts: dict[str, dict[str, int]] = {}
    for bot_id, mode, renters in rows.all():
        counts.setdefault(bot_id, {})[mode] = renters
    return counts


async def decisions_since(
    session: AsyncSession, bot_ids: Sequence[str], since: datetime
) -> dict[str, int]:
    """Per bot, its decisions on candles opening at or after `since`."""
    rows = await session.execute(
        select(BotVersion.bot_id, func.count(Decision.id))
        .join(Decision, Decision.bot_version_id == BotVersion.id)
        .where(BotVersion.bot_id.in_(bot_ids), Decision.candle_open_at >= since)
        .group_by(BotVersion.bot_id)
    )
    return {bot_id: count for bot_id, count in rows.all()}


async def latest_decisions(
    session: AsyncSession, bot_id: str, limit: int
) -> Sequence[tuple[Decision, int]]:
    """The bot's latest decisions, newest candle first, with their bot version's number."""
    rows = await session.execute(
        select(Decision, BotVersion.version)
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(BotVersion.bot_id == bot_id)
        .order_by(Decision.candle_open_at.desc(), Decision.id.desc())
        .limit(limit)
    )
    return [(decision, version) for decision, version in rows.all()]


async def versions_of(session: AsyncSession, bot_id: str) -> Sequence[BotVersion]:
    return (
        await session.scalars(
            select(BotVersion).where(BotVersion.bot_id == bot_id).order_by(BotVersion.version)
        )
    ).all()


async def latest_public_backtest(session: AsyncSession, bot_id: str) -> Backtest | None:
    """The bot's latest succeeded backtest that its developer, an admin or an operator ran (a
    renter's run is the renter's own)."""
    return await session.scalar(
        select(Backtest)
        .where(
            Backtest.bot_id == bot_id,
            Backtest.status == "succeeded",
            Backtest.owner_user_id.is_(None),
        )
        .order_by(Backtest.finished_at.desc(), Backtest.id.desc())
        .limit(1)
    )


async def backtests_of_key(
    session: AsyncSession, bot_id: str, api_key_id: str, limit: int
) -> Sequence[Backtest]:
    """The backtests of the bot that a key started, newest first."""
    return (
        await session.scalars(
            select(Backtest)
            .where(Backtest.bot_id == bot_id, Backtest.owner_api_key_id == api_key_id)
            .order_by(Backtest.created_at.desc(), Backtest.id.desc())
            .limit(limit)
        )
    ).all()


async def llm_spend_by_provider(session: AsyncSession, since: datetime) -> dict[str, Decimal]:
    """What the votes of decisions made at or after `since` cost, by provider: summed by the
    database on the decisions' `created_at` index (exact on MariaDB; SQLite sums its decimal
    text as floats, far inside the cent's hundredth the page shows)."""
    rows = await session.execute(
        select(LlmVote.provider, func.sum(LlmVote.cost_usd))
        .join(Decision, Decision.id == LlmVote.decision_id)
        .where(Decision.created_at >= since)
        .group_by(LlmVote.provider)
    )
    return {provider: Decimal(str(total or 0)) for provider, total in rows.all()}


async def counts_by_status(session: AsyncSession, model: type[Any]) -> dict[str, int]:
    """How many rows of a table with a `status` column are in each status."""
    rows = await session.execute(
        select(model.status, func.count()).select_from(model).group_by(model.status)
    )
    return {status: count for status, count in rows.all()}
