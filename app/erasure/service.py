"""Erasing a renter (GDPR): credentials, backtests and events deleted, personal fields blanked,
every subscription cancelled; the trade history stays, tied to the principal only."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository as backtests
from app.core.db import utcnow
from app.credentials import repository as credentials
from app.events import repository as events
from app.events.service import write_recorded
from app.subscriptions import repository as subscriptions
from app.users import repository as users
from app.users.renter import Renter


async def erase(session: AsyncSession, renter: Renter) -> None:
    user = await users.get(session, renter.id)
    assert user is not None, "the renter dependency made the row"
    await subscriptions.cancel_all_of_user(session, renter.id, "the renter erased their data")
    await backtests.delete_of_user(session, renter.id)
    # Events recorded earlier in this transaction are written before the DELETE, not after it.
    await write_recorded(session)
    await events.delete_of_user(session, renter.id)
    for row in await credentials.of_user(session, renter.id):
        await session.delete(row)
    user.display_name = None
    user.email = None
    user.erased_at = utcnow()
    await session.flush()
