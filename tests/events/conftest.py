"""Events seeded straight through the writer, on the app's database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import create_engine, create_sessionmaker
from app.core.reads import RowReader
from app.core.settings import Settings


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool=False)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def rows(settings: Settings) -> AsyncIterator[RowReader]:
    """The feed's reads as the API makes them: each statement on its own, outside a
    transaction, through the driver."""
    engine = create_engine(settings.database_url, pool=False, autocommit=True)
    reader = RowReader(engine)
    yield reader
    await reader.close()
    await engine.dispose()
