"""A worker's cached exchange client (it holds the plaintext key) goes when the API deletes,
replaces or erases its credentials: the API process changes the rows, the worker prunes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.credentials import repository
from app.credentials.service import (
    DecryptedCredential,
    close_stale_clients,
    decrypt_for_execution,
)
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.governor import InProcessGovernor
from app.models import User
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer


@pytest.fixture
async def clients(sandbox: SandboxServer) -> AsyncIterator[BinanceClients]:
    cache = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    yield cache
    await cache.close()


async def put_keys(client: httpx.AsyncClient, renter: dict[str, str], keys: tuple[str, str]):
    response = await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": keys[0], "api_secret": keys[1], "testnet": True},
        headers=renter,
    )
    assert response.status_code in (200, 201), response.text


async def stored_credential(app: FastAPI, principal: str) -> DecryptedCredential:
    runtime = app.state.runtime
    async with runtime.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.principal == principal))
        assert user is not None
        (row,) = await repository.of_user(session, user.id)
        return await decrypt_for_execution(session, runtime.keyring, row.id)


async def prune(app: FastAPI, clients: BinanceClients) -> None:
    async with app.state.runtime.sessionmaker() as session:
        await close_stale_clients(session, clients)


@pytest.mark.parametrize("change", ["delete", "replace", "erase"])
async def test_the_client_of_changed_credentials_is_closed_by_the_next_prune(
    app: FastAPI,
    client: httpx.AsyncClient,
    clients: BinanceClients,
    sandbox: SandboxServer,
    marketplace_key: str,
    change: str,
) -> None:
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    await put_keys(client, renter, sandbox.new_account())
    credential = await stored_credential(app, principal)
    opened = await clients.for_credential(credential)
    await prune(app, clients)
    assert not opened._client.session.closed  # unchanged credentials keep their client

    if change == "delete":
        response = await client.delete("/api/v1/credentials/binance", headers=renter)
    elif change == "erase":
        response = await client.delete("/api/v1/principals/me", headers=renter)
    else:
        await put_keys(client, renter, sandbox.new_account())
        response = await client.get("/api/v1/credentials", headers=renter)
    assert response.is_success
    await prune(app, clients)
    assert opened._client.session.closed
    if change == "replace":
        replaced = await stored_credential(app, principal)
        assert replaced.version != credential.version
        assert await clients.for_credential(replaced) is not opened
