"""The SQL of user rows: a renter's row (per marketplace and principal) made on first use,
developers, lookups by id."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User


def _renter(marketplace_id: str, principal: str) -> Select[User]:
    return select(User).where(User.marketplace_id == marketplace_id, User.principal == principal)


async def get_or_create_renter(session: AsyncSession, marketplace_id: str, principal: str) -> User:
    """The renter's row, created on first use; safe when two first requests race."""
    user = await session.scalar(_renter(marketplace_id, principal))
    if user is not None:
        return user
    try:
        async with session.begin_nested():
            user = User(principal=principal, marketplace_id=marketplace_id, kind="renter")
            session.add(user)
        return user
    except IntegrityError:
        found = await session.scalar(_renter(marketplace_id, principal))
        assert found is not None
        return found


async def create_developer(session: AsyncSession, name: str) -> User:
    user = User(kind="developer", display_name=name)
    session.add(user)
    await session.flush()
    return user


async def get(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)
