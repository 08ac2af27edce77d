"""Who sees what is one rule written twice, side by side in app/events/feed.py: in SQL for the
feed's pages and a stream's replay, over one row in memory for the hub's fan-out. Both must
pick the same events for every kind of viewer."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.reads import RowReader
from app.events import feed
from app.marketplaces import repository as marketplaces
from app.marketplaces.service import DEFAULT_MARKETPLACE
from app.models import ApiKey
from tests.events.test_feed import Seeded, seeded  # noqa: F401
from tests.helpers import new_principal


async def owner_of_key(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> str | None:
    async with sessionmaker() as session:
        return await session.scalar(select(ApiKey.owner_user_id).where(ApiKey.name == name))


async def test_the_hub_and_the_feed_show_each_viewer_the_same_events(
    seeded: Seeded,  # noqa: F811
    sessionmaker: async_sessionmaker[AsyncSession],
    rows: RowReader,
) -> None:
    await feed.sequence(sessionmaker)
    developer = await owner_of_key(sessionmaker, "developer")
    other_developer = await owner_of_key(sessionmaker, "other developer")
    assert developer is not None and other_developer is not None
    async with sessionmaker() as session:
        home = await marketplaces.get_by_name(session, DEFAULT_MARKETPLACE)
    assert home is not None
    elsewhere = "0" * 32  # a marketplace the renters are not of
    viewers = [
        feed.Viewer(Scope.admin),
        feed.Viewer(Scope.marketplace, marketplace_id=home.id),
        feed.Viewer(Scope.marketplace, seeded.renter, marketplace_id=home.id),
        feed.Viewer(Scope.marketplace, seeded.other_renter, marketplace_id=home.id),
        feed.Viewer(Scope.marketplace, new_principal(), marketplace_id=home.id),
        feed.Viewer(Scope.marketplace, marketplace_id=elsewhere),
        feed.Viewer(Scope.marketplace, seeded.renter, marketplace_id=elsewhere),
        feed.Viewer(Scope.developer, owner_user_id=developer),
        feed.Viewer(Scope.developer, owner_user_id=other_developer),
        feed.Viewer(Scope.developer, owner_user_id=None),
    ]
    shares = []
    async with sessionmaker() as session:
        everything = await feed.addressed_after(session, 0, 100)
        for viewer in viewers:
            page = await feed.page(rows, sessionmaker, viewer, 0, None, 100)
            by_sql = [item.id for item in page.items]
            in_memory = [f"evt_{a.event.id}" for a in everything if feed.sees(viewer, a)]
            assert in_memory == by_sql, viewer
            shares.append(len(by_sql))
    # Each kind of viewer has a share of its own: the comparison is not of empty lists.
    assert shares == [6, 3, 2, 1, 0, 0, 0, 2, 1, 0]
