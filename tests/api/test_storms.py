"""Replica storms: an ICP outcall arrives as 34 identical copies at once, here split across two
real API processes sharing MariaDB and Redis. For every write endpoint of the service: exactly
one effect in the database, the same status and byte-identical body for every copy; then the
same Idempotency-Key with another body is a 409 with no effect at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from sqlalchemy import func, select

from app.api_keys.schemas import Scope
from app.audit import WRITE_METHODS
from app.core.db import create_engine
from app.models import AuditLog, Base
from tests.api.conftest import ApiReplicas
from tests.api.test_contract import (
    assert_error,
    create_bot,
    listed_bot,
    store_credentials,
    subscribe,
)
from tests.backtests.conftest import WINDOW, start
from tests.conftest import make_key
from tests.helpers import headers, new_principal

COPIES = 34  # a large subnet's replicas


@dataclass
class Callers:
    """The keys of one storm test, and a client for each API process."""

    admin: str
    developer: str
    marketplace: str
    # A key of a second marketplace, whose renters are its own.
    other_marketplace: str
    clients: list[httpx.AsyncClient]
    principal: str = field(default_factory=new_principal)

    @property
    def first(self) -> httpx.AsyncClient:
        return self.clients[0]


@dataclass(frozen=True)
class Storm:
    method: str
    path: str
    request_headers: dict[str, str]
    body: dict
    other_body: dict
    status: int
    # Rows added (or removed) per table; "audit_logs[action]" counts the audit rows of one action.
    effect: dict[str, int]


async def create_api_key(callers: Callers) -> Storm:
    return Storm(
        "POST",
        "/api/v1/api-keys",
        headers(callers.admin),
        {"name": "replicated", "scope": "developer"},
        {"name": "replicated", "scope": "marketplace"},
        201,
        # A developer key acts as a new developer.
        {"api_keys": 1, "users": 1, "audit_logs[api_key.create]": 1},
    )


async def create_marketplace(callers: Callers) -> Storm:
    return Storm(
        "POST",
        "/api/v1/marketplaces",
        headers(callers.admin),
        {"name": "replicated"},
        {"name": "another"},
        201,
        {"marketplaces": 1, "audit_logs[marketplace.create]": 1},
    )


async def create_webhook(callers: Callers) -> Storm:
    return Storm(
        "POST",
        "/api/v1/webhooks",
        headers(callers.developer),
        {"url": "https://hooks.example/a"},
        {"url": "https://hooks.example/b"},
        201,
        # One secret, shown once: every copy is handed the same one.
        {"webhook_endpoints": 1, "audit_logs[webhook.create]": 1},
    )


async def webhook_of(callers: Callers) -> str:
    created = await callers.first.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example/stormed"},
        headers=headers(callers.developer),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def update_webhook(callers: Callers) -> Storm:
    return Storm(
        "PATCH",
        f"/api/v1/webhooks/{await webhook_of(callers)}",
        headers(callers.developer),
        {"enabled": False},
        {"enabled": True},
        200,
        {"audit_logs[webhook.update]": 1},
    )


async def delete_webhook(callers: Callers) -> Storm:
    return Storm(
        "DELETE",
        f"/api/v1/webhooks/{await webhook_of(callers)}",
        headers(callers.developer),
        {},
        {"reason": "another"},
        204,
        {"webhook_endpoints": -1, "audit_logs[webhook.delete]": 1},
    )


async def rotate_webhook_secret(callers: Callers) -> Storm:
    return Storm(
        "POST",
        f"/api/v1/webhooks/{await webhook_of(callers)}/rotate-secret",
        headers(callers.developer),
        {},
        {"reason": "another"},
        200,
        # One new secret: a second rotation would lock the receiver out of the first.
        {"audit_logs[webhook.rotate_secret]": 1},
    )


async def replay_webhook(callers: Callers) -> Storm:
    return Storm(
        "POST",
        f"/api/v1/webhooks/{await webhook_of(callers)}/replay",
        headers(callers.developer),
        {"after": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"},
        {"after": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDE"},
        202,
        {"audit_logs[webhook.replay]": 1},
    )


async def create_stream_ticket(callers: Callers) -> Storm:
    return Storm(
        "POST",
        "/api/v1/stream-tickets",
        headers(callers.marketplace, callers.principal),
        {},
        {"reason": "another"},
        201,
        # One ticket: every copy is handed the same single-use ticket.
        {"stream_tickets": 1, "audit_logs[stream_ticket.create]": 1},
    )


async def revoke_api_key(callers: Callers) -> Storm:
    created = await callers.first.post(
        "/api/v1/api-keys",
        json={"name": "doomed", "scope": "marketplace"},
        headers=headers(callers.admin),
    )
    return Storm(
        "DELETE",
        f"/api/v1/api-keys/{created.json()['id']}",
        headers(callers.admin),
        {},
        {"reason": "another"},
        204,
        {"audit_logs[api_key.revoke]": 1},
    )


async def create_bot_storm(callers: Callers) -> Storm:
    return Storm(
        "POST",
        "/api/v1/bots",
        headers(callers.developer),
        {"name": "replicated"},
        {"name": "another"},
        201,
        {"bots": 1, "bot_versions": 1, "audit_logs[bot.create]": 1},
    )


async def change_strategy(callers: Callers) -> Storm:
    bot = await create_bot(callers.first, callers.developer)
    return Storm(
        "PATCH",
        f"/api/v1/bots/{bot['id']}",
        headers(callers.developer),
        {"strategy": {"ensemble": {"threshold": "0.4"}}},
        {"strategy": {"ensemble": {"threshold": "0.5"}}},
        200,
        # One new version, not one per copy.
        {"bot_versions": 1, "audit_logs[bot.update]": 1},
    )


async def register_bot(callers: Callers) -> Storm:
    bot = await create_bot(callers.first, callers.developer)
    return Storm(
        "POST",
        f"/api/v1/bots/{bot['id']}/registrations",
        headers(callers.developer),
        {"price": "2.50"},
        {"price": "3"},
        201,
        {"bot_marketplace_registrations": 1, "audit_logs[registration.create]": 1},
    )


async def store_credentials_storm(callers: Callers) -> Storm:
    return Storm(
        "PUT",
        "/api/v1/credentials/binance",
        headers(callers.marketplace, callers.principal),
        {"api_key": "k" * 64, "api_secret": "s" * 64, "testnet": True},
        {"api_key": "k" * 64, "api_secret": "t" * 64, "testnet": True},
        201,
        # The renter's first request makes their user row.
        {"users": 1, "exchange_credentials": 1, "audit_logs[credentials.put]": 1},
    )


async def delete_credentials(callers: Callers) -> Storm:
    stored = await store_credentials(
        callers.first, callers.marketplace, callers.principal, testnet=True
    )
    assert stored.status_code == 201
    return Storm(
        "DELETE",
        "/api/v1/credentials/binance",
        headers(callers.marketplace, callers.principal),
        {},
        {"testnet": True},
        204,
        {"exchange_credentials": -1, "audit_logs[credentials.delete]": 1},
    )


async def create_subscription(callers: Callers) -> Storm:
    bot = await listed_bot(callers.first, callers.developer)
    body = {
        "bot_id": bot["id"],
        "symbol": "ETHUSDT",
        "timeframe": "5m",
        "mode": "paper",
        "quote_amount": "25",
    }
    return Storm(
        "POST",
        "/api/v1/subscriptions",
        headers(callers.marketplace, callers.principal),
        body,
        {**body, "quote_amount": "26"},
        201,
        {"users": 1, "subscriptions": 1, "events": 1, "audit_logs[subscription.create]": 1},
    )


async def update_subscription(callers: Callers) -> Storm:
    bot = await listed_bot(callers.first, callers.developer)
    created = await subscribe(callers.first, callers.marketplace, callers.principal, bot["id"])
    return Storm(
        "PATCH",
        f"/api/v1/subscriptions/{created.json()['id']}",
        headers(callers.marketplace, callers.principal),
        {"status": "paused"},
        {"status": "cancelled"},
        200,
        {"events": 1, "audit_logs[subscription.update]": 1},
    )


async def erase_principal(callers: Callers) -> Storm:
    bot = await listed_bot(callers.first, callers.developer)
    await store_credentials(callers.first, callers.marketplace, callers.principal, testnet=True)
    await subscribe(callers.first, callers.marketplace, callers.principal, bot["id"])
    return Storm(
        "DELETE",
        "/api/v1/principals/me",
        headers(callers.marketplace, callers.principal),
        {},
        {"confirm": True},
        204,
        # The renter's events go with it: here, its subscription.created.
        {"exchange_credentials": -1, "events": -1, "audit_logs[principal.erase]": 1},
    )


async def marketplace_key_id(callers: Callers) -> str:
    """A new marketplace key's id: the key whose assertion settings the storm changes."""
    created = await callers.first.post(
        "/api/v1/api-keys",
        json={"name": "signed", "scope": "marketplace"},
        headers=headers(callers.admin),
    )
    return str(created.json()["id"])


def new_assertion_key() -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


async def set_assertion_mode(callers: Callers) -> Storm:
    return Storm(
        "PATCH",
        f"/api/v1/api-keys/{await marketplace_key_id(callers)}",
        headers(callers.admin),
        {"assertion_mode": "off"},
        {"assertion_mode": "optional"},
        200,
        {"audit_logs[api_key.assertion_mode]": 1},
    )


async def add_assertion_key(callers: Callers) -> Storm:
    return Storm(
        "POST",
        f"/api/v1/api-keys/{await marketplace_key_id(callers)}/assertion-keys",
        headers(callers.admin),
        {"public_key": new_assertion_key()},
        {"public_key": new_assertion_key()},
        201,
        {"marketplace_assertion_keys": 1, "audit_logs[api_key.assertion_key.add]": 1},
    )


async def remove_assertion_key(callers: Callers) -> Storm:
    key_id = await marketplace_key_id(callers)
    added = await callers.first.post(
        f"/api/v1/api-keys/{key_id}/assertion-keys",
        json={"public_key": new_assertion_key()},
        headers=headers(callers.admin),
    )
    return Storm(
        "DELETE",
        f"/api/v1/api-keys/{key_id}/assertion-keys/{added.json()['id']}",
        headers(callers.admin),
        {},
        {"reason": "another"},
        204,
        {"marketplace_assertion_keys": -1, "audit_logs[api_key.assertion_key.remove]": 1},
    )


async def start_backtest(callers: Callers) -> Storm:
    bot = await create_bot(callers.first, callers.developer)
    return Storm(
        "POST",
        f"/api/v1/bots/{bot['id']}/backtests",
        headers(callers.developer),
        WINDOW,
        {**WINDOW, "quote_amount": "2000"},
        202,
        {"backtests": 1, "audit_logs[backtest.create]": 1},
    )


async def cancel_backtest(callers: Callers) -> Storm:
    bot = await create_bot(callers.first, callers.developer)
    started = await start(callers.first, bot, headers(callers.developer))
    return Storm(
        "DELETE",
        f"/api/v1/backtests/{started.json()['id']}",
        headers(callers.developer),
        {},
        {"reason": "another"},
        204,
        {"audit_logs[backtest.cancel]": 1},
    )


# Every write endpoint of the service, each prepared on the first process before its storm.
STORMS: dict[str, Callable[[Callers], Awaitable[Storm]]] = {
    "POST /api/v1/api-keys": create_api_key,
    "DELETE /api/v1/api-keys/{key_id}": revoke_api_key,
    "POST /api/v1/marketplaces": create_marketplace,
    "POST /api/v1/webhooks": create_webhook,
    "PATCH /api/v1/webhooks/{webhook_id}": update_webhook,
    "DELETE /api/v1/webhooks/{webhook_id}": delete_webhook,
    "POST /api/v1/webhooks/{webhook_id}/rotate-secret": rotate_webhook_secret,
    "POST /api/v1/webhooks/{webhook_id}/replay": replay_webhook,
    "POST /api/v1/stream-tickets": create_stream_ticket,
    "POST /api/v1/bots": create_bot_storm,
    "PATCH /api/v1/bots/{bot_id}": change_strategy,
    "POST /api/v1/bots/{bot_id}/registrations": register_bot,
    "PUT /api/v1/credentials/binance": store_credentials_storm,
    "DELETE /api/v1/credentials/binance": delete_credentials,
    "POST /api/v1/subscriptions": create_subscription,
    "PATCH /api/v1/subscriptions/{sub_id}": update_subscription,
    "DELETE /api/v1/principals/me": erase_principal,
    "PATCH /api/v1/api-keys/{key_id}": set_assertion_mode,
    "POST /api/v1/api-keys/{key_id}/assertion-keys": add_assertion_key,
    "DELETE /api/v1/api-keys/{key_id}/assertion-keys/{assertion_id}": remove_assertion_key,
    "POST /api/v1/bots/{bot_id}/backtests": start_backtest,
    "DELETE /api/v1/backtests/{backtest_id}": cancel_backtest,
}


def test_every_write_route_has_a_storm(app: FastAPI) -> None:
    writes = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() in WRITE_METHODS
    }
    # The credentials routes are stormed on the one exchange there is.
    documented = {
        name.replace("/credentials/binance", "/credentials/{exchange}") for name in STORMS
    }
    assert writes == documented


@pytest.fixture
async def callers(api_replicas: ApiReplicas) -> AsyncIterator[Callers]:
    settings = api_replicas.settings
    keys = [await make_key(settings, scope, scope.value) for scope in Scope]
    by_scope = dict(zip(Scope, keys, strict=True))
    other = await make_key(settings, Scope.marketplace, "other", "other")
    # Idle connections are dropped well before uvicorn's 5-s keep-alive ends them: on a loaded
    # machine a storm sent after a slow setup otherwise reused a connection the server was
    # closing, and the copy failed with a read error that no replica caused.
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=60, limits=limits)
            )
            for url in api_replicas.urls
        ]
        yield Callers(
            by_scope[Scope.admin],
            by_scope[Scope.developer],
            by_scope[Scope.marketplace],
            other,
            clients,
        )


# Counters, not effects: the first event a database holds makes the sequencer's row, whichever
# process numbers it (the API's live hub among them).
BOOKKEEPING = frozenset({"event_sequence"})


async def rows(database_url: str) -> Counter[str]:
    """Rows per table (but the bookkeeping ones), and audit rows per action."""
    engine = create_engine(database_url, pool=False)
    counts: Counter[str] = Counter()
    try:
        async with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                if table.name in BOOKKEEPING:
                    continue
                counts[table.name] = await connection.scalar(
                    select(func.count()).select_from(table)
                )
            actions = await connection.execute(
                select(AuditLog.action, func.count()).group_by(AuditLog.action)
            )
            for action, total in actions:
                counts[f"audit_logs[{action}]"] = total
    finally:
        await engine.dispose()
    return counts


def changes(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {
        name: after[name] - before[name]
        for name in before.keys() | after.keys()
        if after[name] != before[name]
    }


async def send(
    callers: Callers, storm: Storm, body: dict, idempotency_key: str, copies: int
) -> list[httpx.Response]:
    """`copies` identical requests at once, alternating between the API processes. A copy
    whose connection fails before an answer is sent once more, as a replica retries its
    outcall: under a full suite on two cores a copy has lost its connection (a read error, no
    server error logged) while the others were answered; the retry is still one more copy of
    the same request, held to the same one effect and one answer."""
    request_headers = {**storm.request_headers, "Idempotency-Key": idempotency_key}

    async def copy(client: httpx.AsyncClient) -> httpx.Response:
        try:
            return await client.request(
                storm.method, storm.path, json=body, headers=request_headers
            )
        except httpx.TransportError:
            return await client.request(
                storm.method, storm.path, json=body, headers=request_headers
            )

    clients = itertools.islice(itertools.cycle(callers.clients), copies)
    return await asyncio.gather(*(copy(client) for client in clients))


@pytest.mark.mariadb
@pytest.mark.parametrize("endpoint", STORMS)
async def test_a_replica_storm_has_one_effect_and_one_answer(
    api_replicas: ApiReplicas, callers: Callers, endpoint: str
) -> None:
    storm = await STORMS[endpoint](callers)
    database_url = api_replicas.settings.database_url
    before = await rows(database_url)

    responses = await send(callers, storm, storm.body, "outcall-1", COPIES)

    assert [r.status_code for r in responses] == [storm.status] * COPIES, responses[0].text
    assert len({r.content for r in responses}) == 1
    # One copy ran the request; every other one, on either process, was handed its answer.
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == COPIES - 1
    after = await rows(database_url)
    expected = {"audit_logs": 1, "idempotency_records": 1, **storm.effect}
    assert changes(before, after) == expected

    reused = await send(callers, storm, storm.other_body, "outcall-1", len(callers.clients))
    for response in reused:
        assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")
    assert len({r.content for r in reused}) == 1
    assert changes(after, await rows(database_url)) == {}


@pytest.mark.mariadb
async def test_two_marketplaces_storming_for_one_principal_have_one_effect_each(
    api_replicas: ApiReplicas, callers: Callers
) -> None:
    """Both marketplaces send the same principal's subscription with the same Idempotency-Key
    at once: two renters, so two subscriptions, and each marketplace's copies share the answer
    of its own one."""
    bot = await listed_bot(callers.first, callers.developer)
    listing = await callers.first.post(
        f"/api/v1/bots/{bot['id']}/registrations",
        json={"price": "1", "marketplace": "other"},
        headers=headers(callers.developer),
    )
    assert listing.status_code == 201, listing.text
    body = {
        "bot_id": bot["id"],
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "10",
    }
    keys = itertools.islice(
        itertools.cycle([callers.marketplace, callers.other_marketplace]), 2 * COPIES
    )
    clients = itertools.cycle(callers.clients)
    before = await rows(api_replicas.settings.database_url)
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/subscriptions",
                json=body,
                headers=headers(key, callers.principal, "outcall-1"),
            )
            for key, client in zip(keys, clients)
        )
    )
    assert {r.status_code for r in responses} == {201}
    for own in (responses[0::2], responses[1::2]):
        assert len({r.content for r in own}) == 1
    assert responses[0].json()["id"] != responses[1].json()["id"]
    effect = changes(before, await rows(api_replicas.settings.database_url))
    assert effect["subscriptions"] == 2 and effect["users"] == 2
