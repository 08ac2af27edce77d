"""Two principals and every renter endpoint: nothing one does is visible to the other."""

from __future__ import annotations

import httpx

from tests.api.test_contract import assert_error, listed_bot, store_credentials, subscribe
from tests.helpers import headers, new_principal


async def test_nothing_crosses_between_principals(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    alice, bob = new_principal(), new_principal()
    as_alice, as_bob = headers(marketplace_key, alice), headers(marketplace_key, bob)
    bot = await listed_bot(client, developer_key)
    await store_credentials(client, marketplace_key, alice, testnet=True)
    sub = (await subscribe(client, marketplace_key, alice, bot["id"], mode="testnet")).json()
    url = f"/api/v1/subscriptions/{sub['id']}"

    assert (await client.get("/api/v1/credentials", headers=as_bob)).json() == []
    listed = await client.get("/api/v1/subscriptions", headers=as_bob)
    assert listed.json() == {"items": [], "next_cursor": None}
    for path in (url, f"{url}/trades", f"{url}/decisions", f"{url}/performance"):
        assert_error(await client.get(path, headers=as_bob), 404, "NOT_FOUND")
    assert_error(
        await client.patch(url, json={"status": "cancelled"}, headers=as_bob), 404, "NOT_FOUND"
    )
    # Bob has no testnet keys: he cannot borrow Alice's.
    assert_error(
        await subscribe(client, marketplace_key, bob, bot["id"], mode="testnet"),
        422,
        "CREDENTIALS_REQUIRED",
    )
    assert_error(
        await client.delete("/api/v1/credentials/binance", headers=as_bob), 404, "NOT_FOUND"
    )
    assert (await client.delete("/api/v1/principals/me", headers=as_bob)).status_code == 204

    # Alice still has everything, untouched.
    assert len((await client.get("/api/v1/credentials", headers=as_alice)).json()) == 1
    assert (await client.get(url, headers=as_alice)).json()["status"] == "active"
