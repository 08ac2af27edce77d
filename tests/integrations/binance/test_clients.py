"""The per-process client cache: plaintext keys live no longer than their credentials, one
slow open never holds up another, and the clock offset and symbol rules cost one request
however many clients (and, for the rules, processes) need them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping

import pytest
from redis.asyncio import Redis

from app.credentials.service import DecryptedCredential
from app.integrations.binance.client import BinanceClient
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import TemporaryError, UnknownOutcome
from app.integrations.binance.governor import InProcessGovernor
from tests.conftest import REDIS_URL, require_service
from tests.integrations.binance.clock import skew
from tests.sandbox_server import SandboxServer

LATENCY_S = 0.5


@pytest.fixture
async def clients(sandbox: SandboxServer) -> AsyncIterator[BinanceClients]:
    cache = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=0.5
    )
    yield cache
    await cache.close()


@pytest.fixture
def slow_sandbox(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    sandbox.admin("POST", "/sandbox/faults", json={"latency_ms": int(LATENCY_S * 1000)})
    try:
        yield sandbox
    finally:
        sandbox.admin("DELETE", "/sandbox/faults")


def credential(sandbox: SandboxServer, id: str, version: str = "v1") -> DecryptedCredential:
    api_key, api_secret = sandbox.new_account()
    return DecryptedCredential(
        id=id, version=version, api_key=api_key, api_secret=api_secret, testnet=False
    )


def time_requests(sandbox: SandboxServer) -> int:
    return sandbox.requests().get("GET /api/v3/time", 0)


def exchange_info_requests(sandbox: SandboxServer) -> int:
    return sandbox.requests().get("GET /api/v3/exchangeInfo", 0)


def closed(client: BinanceClient) -> bool:
    return bool(client._client.session.closed)


def versions_of(*credentials: DecryptedCredential):
    async def versions(ids: list[str]) -> Mapping[str, str]:
        return {c.id: c.version for c in credentials if c.id in ids}

    return versions


async def test_opens_of_different_keys_do_not_wait_for_each_other(
    slow_sandbox: SandboxServer, clients: BinanceClients
) -> None:
    one, two = credential(slow_sandbox, "one"), credential(slow_sandbox, "two")
    started = time.monotonic()
    await asyncio.gather(clients.for_credential(one), clients.for_credential(two))
    # Each open is one /time round trip; serialised, two of them take twice the latency.
    assert time.monotonic() - started < 1.8 * LATENCY_S


async def test_concurrent_requests_for_one_key_share_one_open(
    slow_sandbox: SandboxServer, clients: BinanceClients
) -> None:
    one = credential(slow_sandbox, "one")
    before = slow_sandbox.requests().get("GET /api/v3/time", 0)
    first, second = await asyncio.gather(clients.for_credential(one), clients.for_credential(one))
    assert first is second
    assert slow_sandbox.requests()["GET /api/v3/time"] == before + 1


async def test_a_failed_open_is_not_cached(sandbox: SandboxServer, clients: BinanceClients) -> None:
    one = credential(sandbox, "one")
    sandbox.admin("POST", "/sandbox/faults", json={"error_5xx_next": 1})
    with pytest.raises(TemporaryError) as caught:
        await clients.for_credential(one)
    assert not isinstance(caught.value, UnknownOutcome)  # /time changes nothing there
    assert not closed(await clients.for_credential(one))


async def test_a_new_version_replaces_and_closes_the_old_client_at_once(
    sandbox: SandboxServer, clients: BinanceClients
) -> None:
    old = credential(sandbox, "one", "v1")
    first = await clients.for_credential(old)
    assert await clients.for_credential(old) is first
    new = credential(sandbox, "one", "v2")
    second = await clients.for_credential(new)
    assert second is not first
    assert closed(first)
    assert await clients.for_credential(new) is second


async def test_prune_closes_clients_whose_credentials_are_gone_or_changed(
    sandbox: SandboxServer, clients: BinanceClients
) -> None:
    kept, deleted, changed = (credential(sandbox, name) for name in ("kept", "deleted", "changed"))
    opened = {c.id: await clients.for_credential(c) for c in (kept, deleted, changed)}
    await clients.prune(versions_of(kept, credential(sandbox, "changed", "v2")))
    assert closed(opened["deleted"]) and closed(opened["changed"])
    assert not closed(opened["kept"])
    assert await clients.for_credential(kept) is opened["kept"]
    assert await clients.for_credential(deleted) is not opened["deleted"]


async def test_prune_closes_idle_clients(sandbox: SandboxServer, clients: BinanceClients) -> None:
    busy, idle = credential(sandbox, "busy"), credential(sandbox, "idle")
    busy_client, idle_client = (
        await clients.for_credential(busy),
        await clients.for_credential(idle),
    )
    await asyncio.sleep(0.35)
    await clients.for_credential(busy)
    await asyncio.sleep(0.3)  # idle for 0.65 s, busy for 0.3 s; the TTL is 0.5 s
    await clients.prune(versions_of(busy, idle))
    assert closed(idle_client)
    assert not closed(busy_client)


async def test_prune_asks_nothing_while_no_credential_client_is_open(
    clients: BinanceClients,
) -> None:
    asked: list[list[str]] = []

    async def versions(ids: list[str]) -> Mapping[str, str]:
        asked.append(ids)
        return {}

    await clients.public()
    await clients.prune(versions)
    assert asked == []


async def test_an_open_whose_caller_gave_up_is_kept_for_the_next_one(
    slow_sandbox: SandboxServer, clients: BinanceClients
) -> None:
    one = credential(slow_sandbox, "one")
    caller = asyncio.create_task(clients.for_credential(one))
    await asyncio.sleep(LATENCY_S / 2)
    caller.cancel()
    await asyncio.sleep(LATENCY_S)  # the open went on without its caller
    before = slow_sandbox.requests()["GET /api/v3/time"]
    assert not closed(await clients.for_credential(one))
    assert slow_sandbox.requests()["GET /api/v3/time"] == before  # not opened twice


async def test_the_clients_of_a_process_share_one_clock_sync(
    sandbox: SandboxServer, clients: BinanceClients
) -> None:
    before = time_requests(sandbox)
    renters = [credential(sandbox, f"renter-{n}") for n in range(5)]
    opened = await asyncio.gather(*(clients.for_credential(c) for c in renters))
    opened.append(await clients.for_credential(credential(sandbox, "later")))
    await clients.public()
    for client in opened:
        await client.balances()  # signed: our timestamps are within Binance's window
    assert time_requests(sandbox) == before + 1


async def test_a_refused_timestamp_resyncs_the_clock_of_every_client_once(
    sandbox: SandboxServer, clients: BinanceClients
) -> None:
    refused = [await clients.for_credential(credential(sandbox, f"renter-{n}")) for n in range(5)]
    other = await clients.for_credential(credential(sandbox, "other"))
    skew(clients.clock, -120_000)  # as if this machine's clock stepped two minutes back
    before = time_requests(sandbox)
    # Each call is answered -1021, and retried once the clock is synced again.
    await asyncio.gather(*(client.balances() for client in refused))
    assert time_requests(sandbox) == before + 1
    await other.balances()  # signs with the offset the others' refusals corrected
    assert time_requests(sandbox) == before + 1


async def test_the_clock_is_synced_again_once_its_ttl_has_passed(sandbox: SandboxServer) -> None:
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300, clock_ttl_s=0
    )
    try:
        before = time_requests(sandbox)
        client = await clients.for_credential(credential(sandbox, "one"))
        assert time_requests(sandbox) == before + 1
        await client.balances()
        assert time_requests(sandbox) == before + 2
    finally:
        await clients.close()


async def test_concurrent_misses_of_one_process_fetch_the_rules_once(
    sandbox: SandboxServer, clients: BinanceClients
) -> None:
    before = exchange_info_requests(sandbox)
    rules = await asyncio.gather(*(clients.rules("ETHUSDT") for _ in range(5)))
    assert len(set(rules)) == 1 and rules[0].symbol == "ETHUSDT"
    assert exchange_info_requests(sandbox) == before + 1


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    require_service("Redis", "127.0.0.1", 6379)
    connection = Redis.from_url(REDIS_URL)
    yield connection
    await connection.aclose()


async def test_processes_share_the_rules_through_redis(
    sandbox: SandboxServer, redis: Redis
) -> None:
    prefix = f"test:{uuid.uuid4().hex}"  # not the deployment's keys other tests may set
    processes = [
        BinanceClients(
            InProcessGovernor(6000),
            api_url=sandbox.url,
            rules_ttl_s=300,
            idle_s=300,
            redis=redis,
            redis_prefix=prefix,
        )
        for _ in range(3)
    ]
    try:
        before = exchange_info_requests(sandbox)
        rules = await asyncio.gather(*(p.rules("BNBUSDT") for p in processes))
        assert len(set(rules)) == 1 and rules[0].symbol == "BNBUSDT"
        assert exchange_info_requests(sandbox) == before + 1
        assert 0 < await redis.pttl(f"{prefix}:rules:BNBUSDT") <= 300_000
    finally:
        await asyncio.gather(*(p.close() for p in processes))
        await redis.delete(f"{prefix}:rules:BNBUSDT")
