from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository as backtests
from app.core.db import utcnow
from app.credentials import repository as credentials
from app.models import User
from app.subscriptions import repository as subscriptions


async def erase(session: AsyncSession, renter: User) -> None:
    await subscriptions.cancel_all_of_user(session, renter.id, "the renter erased their data")
    await backtests.delete_of_user(session, renter.id)
    for row in await credentials.of_user(session, renter.id):
        await session.delete(row)
    renter.display_name = None
    renter.email = None
    renter.erased_at = utcnow()
    await session.flush()
