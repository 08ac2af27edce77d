"""A stored credential's key and secret never appear in a response body or a log line."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.test_contract import listed_bot
from tests.helpers import fake_binance_key, headers, new_principal


async def test_secrets_never_leave_the_database(
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    api_key, api_secret = fake_binance_key()
    bodies: list[bytes] = []

    async def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, url, headers=renter, **kwargs)  # type: ignore[arg-type]
        bodies.append(response.content)
        return response

    creds = {"api_key": api_key, "api_secret": api_secret, "testnet": False}
    await call("PUT", "/api/v1/credentials/binance", json=creds)
    await call("PUT", "/api/v1/credentials/binance", json=creds)
    # An invalid body that still carries the secret: the 422 must not echo it back.
    await call("PUT", "/api/v1/credentials/binance", json={**creds, "testnet": "maybe"})
    await call("PUT", "/api/v1/credentials/binance", json={"api_key": api_key, "api_secret": 5})
    await call("GET", "/api/v1/credentials")
    bot = await listed_bot(client, developer_key)
    body = {
        "bot_id": bot["id"],
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "live",
        "quote_amount": "10",
    }
    sub = (await call("POST", "/api/v1/subscriptions", json=body)).json()
    await call("GET", f"/api/v1/subscriptions/{sub['id']}")
    await call("DELETE", "/api/v1/credentials/binance")

    assert any(b"api_key_last4" in b for b in bodies)
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for secret in (api_key, api_secret):
        # The last four characters are shown on purpose; nothing longer may leak.
        fragment = secret[:-4].encode()
        assert all(fragment not in b for b in bodies)
        assert secret[:-4] not in logged
