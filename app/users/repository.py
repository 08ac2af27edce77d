"""The SQL of user rows: a renter's row made on first use, developers, lookups by id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User


async def get_or_create_renter(session: AsyncSession, principal: str) -> User:
    """The renter's row, created on first use; safe when two first requests race."""
    user = await session.scalar(select(User).where(User.principal == principal))
    if user is not None:
        return user
    try:
        async with session.begin_nested():
            user = User(principal=principal, kind="renter")
            session.add(user)
        return user
    except IntegrityError:
        found = await session.scalar(select(User).where(User.principal == principal))
        assert found is not None
        return found


async def create_developer(session: AsyncSession, name: str) -> User:
    user = User(kind="developer", display_name=name)
    session.add(user)
    await session.flush()
    return user


async def get(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)
