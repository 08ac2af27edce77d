"""The admin's pages: health, keys created (shown once) and revoked, marketplaces; a
developer's session is refused every one of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.api_keys.schemas import Scope
from app.core.jobs import DECIDE_QUEUE
from app.core.settings import Settings
from app.models import ApiKey, AuditLog
from tests.api.test_contract import create_bot
from tests.conftest import make_key
from tests.console.conftest import sign_in, signed_in_csrf
from tests.console.test_developer import add_decision
from tests.fakes import RunningFakes
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.workers.test_celery_e2e import Stack, api, redis_mariadb_stack, wait_for

ADMIN_PAGES = (
    "/console/admin/health",
    "/console/admin/health/workers",
    "/console/admin/keys",
    "/console/admin/marketplaces",
)


async def test_a_developer_session_is_refused_the_admin_pages_and_writes(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    await sign_in(client, developer_key)
    for path in ADMIN_PAGES:
        refused = await client.get(path)
        assert refused.status_code == 403, path
        assert "admin" in refused.text
    token = await signed_in_csrf(client)
    created = await client.post(
        "/console/admin/keys", data={"csrf_token": token, "name": "x", "scope": "admin"}
    )
    assert created.status_code == 403


async def test_health_shows_services_and_todays_llm_spend_by_provider(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str, admin_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    await add_decision(app.state.runtime.sessionmaker, bot["version_id"], "why", cost="0.5")
    await sign_in(client, admin_key)
    page = await client.get("/console/admin/health")
    assert page.status_code == 200
    assert re.search(
        r'data-service="database"><td>database</td><td class="ok">reachable', page.text
    )
    spend = re.search(
        r'data-provider="openai"><td>openai</td><td class="num">([0-9.]+)<', page.text
    )
    assert spend is not None and Decimal(spend.group(1)) == Decimal("0.5")
    redis = app.state.runtime.redis is not None
    assert ("No ban." in page.text) is redis
    assert ("nothing shared to show here" in page.text) is not redis


def health_row(page: httpx.Response, attribute: str) -> str:
    found = re.search(
        rf'data-{attribute}"><th scope="row">[^<]+</th>\s*<td[^>]*>([^<]+)<', page.text
    )
    assert found is not None, f"no {attribute} row in {page.text}"
    return found.group(1)


async def test_health_says_unknown_for_what_an_embedded_broker_cannot_tell(
    app: FastAPI, client: httpx.AsyncClient, admin_key: str
) -> None:
    """The test app's broker is a SQLite file (kombu's SQLAlchemy transport: no broadcast);
    its Redis, where there is one, has no sweep recorded. The page asks for this part after it
    has loaded: it does not wait for the workers' ping."""
    await sign_in(client, admin_key)
    health = await client.get("/console/admin/health")
    assert 'data-poll="/console/admin/health/workers"' in health.text
    assert 'data-health="workers"' not in health.text
    page = await client.get("/console/admin/health/workers")
    assert page.status_code == 200
    assert health_row(page, 'health="workers').startswith("unknown")
    for queue in ("celery", DECIDE_QUEUE):
        assert health_row(page, f'queue="{queue}').startswith("unknown")
    if app.state.runtime.redis is None:
        assert health_row(page, 'health="reconciler').startswith("unknown")
        assert health_row(page, 'health="beat').startswith("unknown")
    else:
        assert health_row(page, 'health="reconciler') == "none recorded"
        assert health_row(page, 'health="beat').startswith("not seen")


@pytest.fixture
def sweeping_stack(
    sandbox: SandboxServer, llm_fakes: RunningFakes, tmp_path: Path
) -> Iterator[Stack]:
    """Redis and MariaDB, the reconciler sent every second once beat runs."""
    with redis_mariadb_stack(sandbox, llm_fakes, tmp_path, RECONCILE_INTERVAL_S="1") as stack:
        yield stack


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_health_shows_the_workers_that_answer_queue_depths_and_beats_sweeps(
    sweeping_stack: Stack,
) -> None:
    """On Redis with a real worker (taking the default queue only) and beat sweeping every
    second: the worker answers the ping, the decide queue holds what was sent to it, and
    the reconciler's sweeps keep beat shown alive."""
    stack = sweeping_stack
    with stack.worker("console", queues="celery"), stack.beat():
        for _ in range(2):
            stack.send("trading.decide", queue=DECIDE_QUEUE, groups=[])
        admin = await make_key(stack.settings, Scope.admin, "admin")
        async with api(stack) as (_, client):
            await sign_in(client, admin)

            pages: list[httpx.Response] = []

            async def seen() -> bool:
                # A loaded machine's worker may miss one 0.5 s ping: the page is asked again.
                pages.append(await client.get("/console/admin/health/workers"))
                return health_row(pages[-1], 'health="beat').startswith("alive") and (
                    not health_row(pages[-1], 'health="workers').startswith("none")
                )

            await wait_for(seen)
    page = pages[-1]
    assert re.fullmatch(r"console@\S+", health_row(page, 'health="workers'))
    assert health_row(page, f'queue="{DECIDE_QUEUE}') == "2"
    # The default queue's worker takes beat's sweeps as they come: a number, maybe one waiting.
    assert health_row(page, 'queue="celery').isdigit()
    assert re.fullmatch(
        r"\S+ \S+ UTC: resolved 0 order attempts, finished 0 expiries, placed 0 lost orders",
        health_row(page, 'health="reconciler'),
    )


async def test_a_key_is_created_shown_once_and_revoked(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, admin_key: str
) -> None:
    await sign_in(client, admin_key)
    token = await signed_in_csrf(client)
    created = await client.post(
        "/console/admin/keys", data={"csrf_token": token, "name": "ci", "scope": "developer"}
    )
    assert created.status_code == 201
    [key] = re.findall(r'id="new-key">(bmk_[^<]+)<', created.text)
    assert (await client.get("/api/v1/bots", headers=headers(key))).status_code == 200
    listed = await client.get("/console/admin/keys")
    assert key not in listed.text  # shown once
    [key_id] = re.findall(r'data-key-id="(\w+)">\s*<td>ci</td>', listed.text)
    refused = await client.post(f"/console/admin/keys/{key_id}/revoke", data={})
    assert refused.status_code == 403
    revoked = await client.post(f"/console/admin/keys/{key_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert (await client.get("/api/v1/bots", headers=headers(key))).status_code == 401
    async with app.state.runtime.sessionmaker() as session:
        row = (await session.scalars(select(ApiKey).where(ApiKey.id == key_id))).one()
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert row.revoked_at is not None
    assert {"api_key.create", "api_key.revoke"} <= set(actions)


async def test_a_bad_key_form_is_answered_field_by_field(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    await sign_in(client, admin_key)
    token = await signed_in_csrf(client)
    refused = await client.post(
        "/console/admin/keys", data={"csrf_token": token, "name": "", "scope": "developer"}
    )
    assert refused.status_code == 422
    errors = dict(re.findall(r'data-field="(\w+)">([^<]*)<', refused.text))
    assert set(errors) == {"name"}


async def test_marketplaces_show_their_assertion_modes_and_keys_paginate(
    client: httpx.AsyncClient, settings: Settings, admin_key: str
) -> None:
    for name in ("north", "south"):
        await make_key(settings, Scope.marketplace, name, marketplace=name)
    await sign_in(client, admin_key)
    page = await client.get("/console/admin/marketplaces")
    assert page.status_code == 200
    modes = dict(re.findall(r'data-marketplace="(\w+)"><td>\w+</td><td[^>]*>(\w+)<', page.text))
    assert modes == {"north": "off", "south": "off"}
    first = await client.get("/console/admin/keys", params={"limit": 2})
    assert first.text.count("data-key-id=") == 2
    [next_link] = re.findall(r'href="(/console/admin/keys\?cursor=[^"]+)"', first.text)
    second = await client.get(next_link.replace("&amp;", "&"))
    assert second.text.count("data-key-id=") == 1  # admin, north, south
    first_markets = await client.get("/console/admin/marketplaces", params={"limit": 1})
    assert first_markets.text.count("data-marketplace=") == 1 and 'rel="next"' in first_markets.text
