"""Bots and their versions: the entities a service works on, and the catalogue's page as rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.reads import RowReader, Rows
from app.models import Bot, BotMarketplaceRegistration, BotVersion, Marketplace


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


# The catalogue's columns under BotSummaryOut's names, read as rows (app/core/reads.py says
# why a page of the catalogue is read that way). Not the version's strategy, the largest
# column by far, which the catalogue does not show. Built once; ids are lower-case hex, so
# every id sorts after "", the first page's bound.
_BOTS, _VERSIONS = Bot.__table__.c, BotVersion.__table__.c
_SUMMARIES = Rows(
    select(
        _BOTS.id,
        _BOTS.owner_user_id.label("owner"),
        _BOTS.name,
        _BOTS.description,
        _BOTS.status,
        _VERSIONS.version,
        _VERSIONS.id.label("version_id"),
        _BOTS.created_at,
        _BOTS.updated_at,
    )
    .join_from(
        Bot.__table__,
        BotVersion.__table__,
        (_VERSIONS.bot_id == _BOTS.id) & (_VERSIONS.version == _BOTS.current_version),
    )
    .where(_BOTS.id > bindparam("after_id"))
    .order_by(_BOTS.id)
    .limit(bindparam("limit"))
)


async def page_of_summaries(
    reader: RowReader, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Each bot with its current version's id and number, as BotSummaryOut's fields."""
    return await _SUMMARIES.all(reader, after_id=after_id or "", limit=limit)


async def active_registrations(
    session: AsyncSession, marketplace_id: str | None, after_id: str | None, limit: int
) -> Sequence[tuple[BotMarketplaceRegistration, str]]:
    """Active listings of active bots with their marketplace's name; one marketplace's only
    when `marketplace_id` is given."""
    query = (
        select(BotMarketplaceRegistration, Marketplace.name)
        .join(Bot, Bot.id == BotMarketplaceRegistration.bot_id)
        .join(Marketplace, Marketplace.id == BotMarketplaceRegistration.marketplace_id)
        .where(BotMarketplaceRegistration.status == "active", Bot.status == "active")
        .order_by(BotMarketplaceRegistration.id)
        .limit(limit)
    )
    if marketplace_id is not None:
        query = query.where(BotMarketplaceRegistration.marketplace_id == marketplace_id)
    if after_id:
        query = query.where(BotMarketplaceRegistration.id > after_id)
    return [(row, name) for row, name in (await session.execute(query)).all()]
