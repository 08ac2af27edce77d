"""The queries behind a subscription's performance that its own repository does not answer."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Trade


async def realized_pnls(session: AsyncSession, sub_id: str) -> Sequence[Decimal | None]:
    """The realized PnL of every filled trade that closed some of the position (the sells)."""
    return (
        await session.scalars(
            select(Trade.realized_pnl).where(
                Trade.subscription_id == sub_id,
                Trade.status == "filled",
                Trade.realized_pnl.is_not(None),
            )
        )
    ).all()
