"""Replicated outcalls: 20 identical concurrent POSTs make one effect and identical bytes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from app.core.db import create_engine, create_sessionmaker, session_scope, utcnow
from app.core.settings import Settings
from app.idempotency import repository, service
from app.idempotency.middleware import request_fingerprint
from app.models import ApiKey, AuditLog, IdempotencyRecord, Subscription
from tests.api.test_contract import assert_error, listed_bot
from tests.helpers import headers, new_principal

COPIES = 20


async def count(settings: Settings, model: type) -> int:
    engine = create_engine(settings.database_url, pool=False)
    async with engine.connect() as connection:
        total = await connection.scalar(select(func.count()).select_from(model))
    await engine.dispose()
    return int(total or 0)


async def test_concurrent_copies_make_one_subscription_and_identical_bytes(
    client: httpx.AsyncClient, settings: Settings, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    body = {
        "bot_id": bot["id"],
        "symbol": "ETHUSDT",
        "timeframe": "5m",
        "mode": "paper",
        "quote_amount": "25",
    }
    request_headers = headers(marketplace_key, principal, idempotency_key="outcall-1")
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/subscriptions", json=body, headers=request_headers)
            for _ in range(COPIES)
        )
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == COPIES - 1
    assert len({r.headers["x-request-id"] for r in responses}) == COPIES
    assert await count(settings, Subscription) == 1
    assert await count(settings, IdempotencyRecord) == 1

    # Later copies replay the same bytes; the same key with another body changes nothing.
    replay = await client.post("/api/v1/subscriptions", json=body, headers=request_headers)
    assert replay.content == responses[0].content
    audits = await count(settings, AuditLog)
    reused = await client.post(
        "/api/v1/subscriptions", json={**body, "quote_amount": "26"}, headers=request_headers
    )
    assert_error(reused, 409, "IDEMPOTENCY_KEY_REUSED")
    other_path = await client.patch(
        f"/api/v1/subscriptions/{responses[0].json()['id']}",
        json={"status": "paused"},
        headers=request_headers,
    )
    assert_error(other_path, 409, "IDEMPOTENCY_KEY_REUSED")
    assert await count(settings, Subscription) == 1
    assert await count(settings, AuditLog) == audits


async def test_new_api_key_is_replayed_to_every_copy(
    client: httpx.AsyncClient, settings: Settings, admin_key: str
) -> None:
    request_headers = headers(admin_key, idempotency_key="make-key")
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/v1/api-keys",
                json={"name": "m", "scope": "marketplace"},
                headers=request_headers,
            )
            for _ in range(13)
        )
    )
    assert len({r.content for r in responses}) == 1 and responses[0].status_code == 201
    key = responses[0].json()["key"]
    # The stored response is encrypted: the key is not readable from the database.
    engine = create_engine(settings.database_url, pool=False)
    async with engine.connect() as connection:
        stored = await connection.scalar(select(IdempotencyRecord.response_body))
    await engine.dispose()
    assert stored is not None and key.encode() not in stored


async def test_errors_other_than_server_errors_are_replayed_too(
    client: httpx.AsyncClient, marketplace_key: str
) -> None:
    principal = new_principal()
    request_headers = headers(marketplace_key, principal, idempotency_key="bad-1")
    body = {
        "bot_id": "0" * 32,
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "1",
    }
    first = await client.post("/api/v1/subscriptions", json=body, headers=request_headers)
    second = await client.post("/api/v1/subscriptions", json=body, headers=request_headers)
    assert first.status_code == 404 and second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"


async def test_malformed_idempotency_key_is_422(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    for bad in ("", "with space", "x" * 256):
        response = await client.post(
            "/api/v1/bots",
            json={"name": "x"},
            headers={**headers(developer_key), "Idempotency-Key": bad},
        )
        assert_error(response, 422, "VALIDATION_ERROR")


async def test_every_write_leaves_one_audit_row_and_replays_none(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    engine = create_engine(settings.database_url, pool=False)

    async def outcomes() -> list[tuple[str, str]]:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(AuditLog.action, AuditLog.outcome).order_by(AuditLog.id)
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]

    try:
        created = await client.post(
            "/api/v1/bots", json={"name": "a"}, headers=headers(developer_key, idempotency_key="a1")
        )
        await client.post(
            "/api/v1/bots", json={"name": "a"}, headers=headers(developer_key, idempotency_key="a1")
        )
        await client.patch(
            f"/api/v1/bots/{created.json()['id']}",
            json={"status": "deleted"},
            headers=headers(developer_key, idempotency_key="a2"),
        )
        await client.patch(
            f"/api/v1/bots/{created.json()['id']}",
            json={"status": "deleted"},
            headers=headers(developer_key, idempotency_key="a2"),
        )
        assert await outcomes() == [
            ("bot.create", "success"),
            ("PATCH /api/v1/bots/{bot_id}", "rejected_422"),
        ]
    finally:
        await engine.dispose()


async def test_a_key_reused_for_another_principal_never_replays_their_response(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bot = await listed_bot(client, developer_key)
    body = {
        "bot_id": bot["id"],
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "5",
    }
    alice, bob = new_principal(), new_principal()
    first = await client.post(
        "/api/v1/subscriptions",
        json=body,
        headers=headers(marketplace_key, alice, idempotency_key="shared"),
    )
    assert first.status_code == 201
    other = await client.post(
        "/api/v1/subscriptions",
        json=body,
        headers=headers(marketplace_key, bob, idempotency_key="shared"),
    )
    assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")
    assert first.json()["id"] not in other.text


async def test_keys_differing_only_in_case_are_different_keys(
    client: httpx.AsyncClient, settings: Settings, developer_key: str, marketplace_key: str
) -> None:
    # MariaDB's default collation compared them equal and replayed the first response.
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    body = {
        "bot_id": bot["id"],
        "symbol": "ETHUSDT",
        "timeframe": "5m",
        "mode": "paper",
        "quote_amount": "25",
    }
    for key in ("Order-X", "order-X"):
        response = await client.post(
            "/api/v1/subscriptions",
            json=body,
            headers=headers(marketplace_key, principal, idempotency_key=key),
        )
        assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    assert await count(settings, Subscription) == 2


# Longer than the default lease, far shorter than the 24 h lifetime of a record.
CRASHED_AGO = timedelta(minutes=2)


async def crashed_first_copy(
    settings: Settings, key_name: str, idempotency_key: str, path: str, principal: str, body: bytes
) -> str:
    """What a process that died mid-request leaves: the record its middleware claimed, still
    in progress, claimed CRASHED_AGO and never completed or released."""
    scope = {
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"x-principal-id", principal.encode())],
    }
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            api_key_id = await session.scalar(select(ApiKey.id).where(ApiKey.name == key_name))
            assert api_key_id is not None
            return await service.claim(
                session,
                settings,
                api_key_id,
                idempotency_key,
                request_fingerprint(scope, body),  # type: ignore[arg-type]
                utcnow() - CRASHED_AGO,
            )
    finally:
        await engine.dispose()


async def test_copies_after_a_crashed_first_copys_lease_take_over_and_run_once(
    client: httpx.AsyncClient, settings: Settings, developer_key: str, marketplace_key: str
) -> None:
    # Before the lease, the record of a dead process answered 409 for 24 hours.
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    body = json.dumps(
        {
            "bot_id": bot["id"],
            "symbol": "ETHUSDT",
            "timeframe": "5m",
            "mode": "paper",
            "quote_amount": "25",
        }
    ).encode()
    path = "/api/v1/subscriptions"
    crashed = await crashed_first_copy(
        settings, "marketplace", "outcall-crash", path, principal, body
    )
    request_headers = {
        **headers(marketplace_key, principal, idempotency_key="outcall-crash"),
        "Content-Type": "application/json",
    }
    responses = await asyncio.gather(
        *(client.post(path, content=body, headers=request_headers) for _ in range(COPIES))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == COPIES - 1
    assert await count(settings, Subscription) == 1

    # The dead holder, should it wake up, finishes nothing: the record is no longer its own.
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            late = await repository.complete(
                session, crashed, 500, "text/plain", b"late", "k", expires_at=utcnow()
            )
            assert not late
            await repository.remove(session, crashed)
        async with engine.connect() as connection:
            record = (await connection.execute(select(IdempotencyRecord))).one()
    finally:
        await engine.dispose()
    assert record.id != crashed and record.status == "completed"
    # Completed, the record lives its full lifetime from now, not the lease.
    assert record.expires_at > utcnow() + timedelta(hours=settings.idempotency_ttl_hours - 1)
    replay = await client.post(path, content=body, headers=request_headers)
    assert replay.content == responses[0].content
