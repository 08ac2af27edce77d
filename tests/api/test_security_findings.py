"""The second security round's findings on signed principal assertions, each reproduced as an
attacker with the leaked marketplace key (or a developer key) would try it."""

from __future__ import annotations

import httpx

from app.core.settings import Settings
from app.models import IdempotencyRecord
from tests.api.test_contract import assert_error, create_bot
from tests.api.test_principal_assertions import (
    OLD,
    Renter,
    count,
    marketplace_with,
    subscription_body,
)
from tests.helpers import headers

PATH = "/api/v1/subscriptions"


async def test_a_copy_without_a_principal_does_not_hold_the_idempotency_key(
    client: httpx.AsyncClient, settings: Settings, admin_key: str, developer_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    bot = await create_bot(client, developer_key)
    body = subscription_body(bot["id"])
    # The leaked key alone, no X-Principal-ID: refused, and the key stays free.
    poison = await client.post(
        PATH,
        content=body,
        headers={**headers(key["key"], None, "k1"), "Content-Type": "application/json"},
    )
    assert_error(poison, 422, "VALIDATION_ERROR")
    assert await count(settings, IdempotencyRecord) == 0
    genuine = await renter.subscribe(bot["id"], "k1")
    assert genuine.status_code == 201, genuine.text
    assert "idempotent-replayed" not in genuine.headers
