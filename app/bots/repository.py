from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Bot, BotMarketplaceRegistration, BotVersion


async def get(session: AsyncSession, bot_id: str) -> Bot | None:
    return await session.get(Bot, bot_id)


async def current_version(session: AsyncSession, bot: Bot) -> BotVersion:
    version = await session.scalar(
        select(BotVersion).where(
            BotVersion.bot_id == bot.id, BotVersion.version == bot.current_version
        )
    )
    assert version is not None, "every bot has its current version"
    return version


async def page_of_summaries(
    session: AsyncSession, after_id: str | None, limit: int
) -> Sequence[tuple[Bot, str, int]]:
    """Each bot with its current version's id and number; not the version's strategy, the
    largest column by far, which the catalogue does not show."""
    query = (
        select(Bot, BotVersion.id, BotVersion.version)
        .join(
            BotVersion,
            (BotVersion.bot_id == Bot.id) & (BotVersion.version == Bot.current_version),
        )
        .order_by(Bot.id)
        .limit(limit)
    )
    if after_id:
        query = query.where(Bot.id > after_id)
    return [(bot, version_id, version) for bot, version_id, version in await session.execute(query)]


async def active_registrations(
    session: AsyncSession, after_id: str | None, limit: int
) -> Sequence[BotMarketplaceRegistration]:
    query = (
        select(BotMarketplaceRegistration)
        .join(Bot, Bot.id == BotMarketplaceRegistration.bot_id)
        .where(BotMarketplaceRegistration.status == "active", Bot.status == "active")
        .order_by(BotMarketplaceRegistration.id)
        .limit(limit)
    )
    if after_id:
        query = query.where(BotMarketplaceRegistration.id > after_id)
    return (await session.scalars(query)).all()
