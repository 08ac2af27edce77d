"""SQL of the decision chains: the head's lock and update, the links, a page of the chain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ChainHead, ChainLink, Decision, DecisionPrompt


async def locked_head(session: AsyncSession, bot_id: str) -> ChainHead | None:
    """The bot's head, locked until this transaction ends; None before its first link."""
    return await session.scalar(
        select(ChainHead).where(ChainHead.bot_id == bot_id).with_for_update()
    )


async def head(session: AsyncSession, bot_id: str) -> ChainHead | None:
    return await session.get(ChainHead, bot_id)


async def links_page(
    session: AsyncSession, bot_id: str, after_seq: int, limit: int
) -> Sequence[tuple[ChainLink, Decision]]:
    rows = await session.execute(
        select(ChainLink, Decision)
        .join(Decision, Decision.id == ChainLink.decision_id)
        .where(ChainLink.bot_id == bot_id, ChainLink.seq > after_seq)
        .order_by(ChainLink.seq)
        .limit(limit)
    )
    return [(link, decision) for link, decision in rows.all()]


async def delete_prompts_before(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to `limit` prompts stored before `before`; returns how many went.

    Ids first, then a DELETE by id: SQLite has no DELETE ... LIMIT."""
    ids = (
        await session.scalars(
            select(DecisionPrompt.decision_id)
            .where(DecisionPrompt.created_at < before)
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.execute(delete(DecisionPrompt).where(DecisionPrompt.decision_id.in_(ids)))
    return len(ids)
