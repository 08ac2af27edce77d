"""Webhook delivery attempts are counted by result."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.events.seeding import write_renter_events
from tests.helpers import new_principal
from tests.operations.conftest import sample
from tests.webhooks.conftest import (  # noqa: F401 - fixtures
    Harness,
    Receiver,
    harness_for,
    register,
)
from tests.webhooks.conftest import (
    harness as harness,
)
from tests.webhooks.conftest import (
    other_receiver as other_receiver,
)
from tests.webhooks.conftest import (
    receiver as receiver,
)
from tests.webhooks.conftest import (
    sessionmaker as sessionmaker,
)


async def test_deliveries_are_counted_delivered_or_failed(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
    other_receiver: Receiver,
) -> None:
    await register(client, marketplace_key, receiver.url)
    await register(client, marketplace_key, other_receiver.url)
    receiver.status = 500
    delivered = sample("botmarket_webhook_deliveries_total", result="delivered")
    failed = sample("botmarket_webhook_deliveries_total", result="failed")
    await write_renter_events(sessionmaker, new_principal(), 2, numbered=True)
    assert await harness.dispatch() == 2
    assert sample("botmarket_webhook_deliveries_total", result="delivered") == delivered + 2
    assert sample("botmarket_webhook_deliveries_total", result="failed") == failed + 2
