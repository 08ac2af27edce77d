"""The hot read path: one statement and no transaction per renter GET, a pooled connection the
server closed costing nothing, the renter cache across erasure, and the catalogue's slim list."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import column, func, select, table, text

from app.core.db import create_engine
from app.core.reads import RowReader, Rows
from app.core.settings import Settings
from tests.api.test_contract import assert_error, create_bot, listed_bot, subscribe
from tests.helpers import headers, new_principal

_COUNTERS = ("Com_select", "Com_commit", "Com_rollback", "Com_begin")


def _require_mariadb(settings: Settings) -> None:
    if not settings.database_url.startswith("mysql"):
        pytest.skip("the server's own statement counters and KILL are MariaDB's")


def _counter(name: str) -> object:
    return (
        select(column("VARIABLE_VALUE"))
        .select_from(table("SESSION_STATUS", schema="information_schema"))
        .where(column("VARIABLE_NAME") == name.upper())
        .scalar_subquery()
        .label(name)
    )


# Read through the GETs' own reader: sequential requests borrow its one pooled connection in turn.
_SERVER_VIEW = Rows(select(func.connection_id().label("id"), *map(_counter, _COUNTERS)))


async def _server_view(rows: RowReader) -> tuple[int, dict[str, int]]:
    """The pooled connection's id and its statement counters, as the server counts them."""
    (view,) = await _SERVER_VIEW.all(rows)
    return int(view.pop("id")), {name: int(value) for name, value in view.items()}


@pytest.mark.parametrize("route", ["renter's subscription", "catalogue page"])
async def test_a_get_is_one_statement_without_a_transaction(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
    route: str,
) -> None:
    _require_mariadb(settings)
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    sub = (await subscribe(client, marketplace_key, principal, bot["id"])).json()
    if route == "catalogue page":
        # Pages of five sizes: each misses the catalogue cache (app/bots/catalogue.py), read.
        warm_up, urls = "/api/v1/bots?limit=1", [f"/api/v1/bots?limit={n}" for n in range(46, 51)]
        sent = headers(marketplace_key)
    else:
        warm_up = f"/api/v1/subscriptions/{sub['id']}"
        urls, sent = [warm_up] * 5, headers(marketplace_key, principal)
    expected = (await client.get(warm_up, headers=sent)).json()  # also warms the key cache
    rows = app.state.runtime.rows
    first_id, before = await _server_view(rows)
    # What looking costs by itself, so that only the GETs are left in the difference.
    same_id, looked = await _server_view(rows)
    for url in urls:
        answer = await client.get(url, headers=sent)
        assert answer.status_code == 200
        if url == warm_up:
            assert answer.json() == expected
    after_id, after = await _server_view(rows)
    assert first_id == same_id == after_id, "the GETs ran on another pooled connection"
    costs = {name: after[name] - 2 * looked[name] + before[name] for name in _COUNTERS}
    assert costs == {"Com_select": 5, "Com_commit": 0, "Com_rollback": 0, "Com_begin": 0}


async def test_a_read_after_the_server_closed_its_pooled_connection_succeeds(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    """Pooled connections are not pinged before use: one the server has dropped (a restart,
    a failover, wait_timeout) is not lent again, and the reader gets its answer on a new one
    (killed under a statement, the statement runs again: tests/core/test_reads.py)."""
    _require_mariadb(settings)
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    sub = (await subscribe(client, marketplace_key, principal, bot["id"])).json()
    url = f"/api/v1/subscriptions/{sub['id']}"
    renter = headers(marketplace_key, principal)
    assert (await client.get(url, headers=renter)).status_code == 200
    pooled_id, _ = await _server_view(app.state.runtime.rows)
    killer = create_engine(settings.database_url, pool=False)
    try:
        async with killer.connect() as connection:
            await connection.execute(text(f"KILL {pooled_id}"))
    finally:
        await killer.dispose()
    retried = await client.get(url, headers=renter)
    assert retried.status_code == 200 and retried.json() == sub
    new_id, _ = await _server_view(app.state.runtime.rows)
    assert new_id != pooled_id


async def test_the_cached_renter_stays_right_across_erasure(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    """The erasure blanks the renter's row but keeps it (and its id): the cached id still
    names the renter, whose later writes and reads are their own."""
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    bot = await listed_bot(client, developer_key)
    before = (await subscribe(client, marketplace_key, principal, bot["id"])).json()
    assert (await client.delete("/api/v1/principals/me", headers=renter)).status_code == 204
    after = await subscribe(client, marketplace_key, principal, bot["id"])
    assert after.status_code == 201
    listed = (await client.get("/api/v1/subscriptions", headers=renter)).json()["items"]
    assert [(s["id"], s["status"]) for s in listed] == [
        (before["id"], "cancelled"),
        (after.json()["id"], "active"),
    ]
    stranger = headers(marketplace_key, new_principal())
    assert (await client.get("/api/v1/subscriptions", headers=stranger)).json()["items"] == []


async def test_a_renter_whose_first_request_fails_can_write_next(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    """The renter's row is made and committed before its id is cached: a first request that
    fails and rolls back must not leave a cached id without a row."""
    principal = new_principal()
    assert_error(await subscribe(client, marketplace_key, principal, "f" * 32), 404, "NOT_FOUND")
    bot = await listed_bot(client, developer_key)
    assert (await subscribe(client, marketplace_key, principal, bot["id"])).status_code == 201


async def test_the_catalogue_lists_bots_without_their_strategy(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bots = [await create_bot(client, developer_key) for _ in range(3)]
    listed = await client.get("/api/v1/bots", headers=headers(marketplace_key))
    again = await client.get("/api/v1/bots", headers=headers(marketplace_key))
    assert listed.content == again.content  # replicas must agree byte for byte
    summaries = {bot["id"]: {k: v for k, v in bot.items() if k != "strategy"} for bot in bots}
    assert listed.json()["items"] == [summaries[i] for i in sorted(summaries)]
    full = await client.get(f"/api/v1/bots/{bots[0]['id']}", headers=headers(marketplace_key))
    assert full.json() == bots[0] and full.json()["strategy"]["voters"] == []
