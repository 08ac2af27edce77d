"""Every /api/v1 path of the contract: 401 without a valid key, 403 for a scope too small."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_contract import assert_error
from tests.helpers import headers, new_principal

SOME_ID = "0" * 32
ALL_PATHS = [
    ("POST", "/api/v1/api-keys"),
    ("GET", "/api/v1/api-keys"),
    ("DELETE", f"/api/v1/api-keys/{SOME_ID}"),
    ("POST", "/api/v1/bots"),
    ("GET", "/api/v1/bots"),
    ("GET", f"/api/v1/bots/{SOME_ID}"),
    ("PATCH", f"/api/v1/bots/{SOME_ID}"),
    ("POST", f"/api/v1/bots/{SOME_ID}/registrations"),
    ("GET", "/api/v1/registrations"),
    ("PUT", "/api/v1/credentials/binance"),
    ("GET", "/api/v1/credentials"),
    ("DELETE", "/api/v1/credentials/binance"),
    ("POST", "/api/v1/subscriptions"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", f"/api/v1/subscriptions/{SOME_ID}"),
    ("PATCH", f"/api/v1/subscriptions/{SOME_ID}"),
    ("GET", f"/api/v1/subscriptions/{SOME_ID}/trades"),
    ("GET", f"/api/v1/subscriptions/{SOME_ID}/decisions"),
    ("GET", f"/api/v1/subscriptions/{SOME_ID}/performance"),
    ("DELETE", "/api/v1/principals/me"),
]
ADMIN_ONLY = {path for path in ALL_PATHS if "api-keys" in path[1]}
DEVELOPER_WRITES = {
    ("POST", "/api/v1/bots"),
    ("PATCH", f"/api/v1/bots/{SOME_ID}"),
    ("POST", f"/api/v1/bots/{SOME_ID}/registrations"),
}
RENTER = {
    path
    for path in ALL_PATHS
    if "/credentials" in path[1] or "/subscriptions" in path[1] or "/principals" in path[1]
}


@pytest.mark.parametrize(("method", "path"), ALL_PATHS)
async def test_401_without_a_valid_key(client: httpx.AsyncClient, method: str, path: str) -> None:
    for key_headers in ({}, headers("bmk_aaaaaaaa_" + "x" * 43), headers("not-a-key")):
        response = await client.request(method, path, json={}, headers=key_headers)
        assert_error(response, 401, "UNAUTHENTICATED")


async def test_403_for_scopes_that_may_not(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    forbidden = [(developer_key, p) for p in ADMIN_ONLY | RENTER] + [
        (marketplace_key, p) for p in ADMIN_ONLY | DEVELOPER_WRITES
    ]
    for key, (method, path) in forbidden:
        response = await client.request(method, path, json={}, headers=headers(key, principal))
        assert_error(response, 403, "FORBIDDEN")
