"""Console sessions: a developer or admin key exchanged for a server-side session, never kept
by the browser; marketplace keys refused; CSRF on every write; sign-out and revocation end it."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select

from app.console import admin, developer
from app.console import router as console
from app.core.db import create_engine, create_sessionmaker, utcnow
from app.core.settings import Environment, Settings
from app.main import create_app
from app.models import AuditLog, ConsoleSession
from tests.console.conftest import csrf_of, sign_in, signed_in_csrf
from tests.helpers import headers


async def sessions_in(settings: Settings) -> list[ConsoleSession]:
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with create_sessionmaker(engine)() as session:
            return list((await session.scalars(select(ConsoleSession))).all())
    finally:
        await engine.dispose()


def cookie_header(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


async def test_a_developer_key_becomes_a_session_the_browser_holds_only_a_token_of(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    signed = await sign_in(client, developer_key)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console"
    cookie = cookie_header(signed, "botmarket_console")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console", "max-age=43200"} <= attributes
    assert "secure" not in attributes  # plain http on a developer's machine
    token = client.cookies["botmarket_console"]
    assert developer_key not in cookie and token != developer_key
    [row] = await sessions_in(settings)
    assert row.token_digest == hashlib.sha256(token.encode()).hexdigest()
    assert row.expires_at - row.created_at <= timedelta(hours=12)
    bots = await client.get("/console/bots")
    assert bots.status_code == 200
    assert "Sign out" in bots.text and developer_key not in bots.text


async def test_an_admin_key_signs_in_too(client: httpx.AsyncClient, admin_key: str) -> None:
    assert (await sign_in(client, admin_key)).status_code == 303
    assert "API keys" in (await client.get("/console/bots")).text


async def test_a_marketplace_key_is_refused_with_the_reason(
    client: httpx.AsyncClient, settings: Settings, marketplace_key: str
) -> None:
    refused = await sign_in(client, marketplace_key)
    assert refused.status_code == 403
    assert "Marketplace keys cannot sign in to the console" in refused.text
    assert "botmarket_console" not in client.cookies
    assert await sessions_in(settings) == []


async def test_an_unknown_key_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    refused = await sign_in(client, "bmk_aaaaaaaa_" + "x" * 43)
    assert refused.status_code == 403
    assert "unknown or revoked" in refused.text
    assert await sessions_in(settings) == []


async def test_sign_in_without_its_form_token_is_refused(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    await client.get("/console/sign-in")  # the form's cookie, but not its token
    refused = await client.post(
        "/console/sign-in", data={"csrf_token": "0" * 64, "api_key": developer_key}
    )
    assert refused.status_code == 403
    assert await sessions_in(settings) == []


async def test_pages_without_a_session_go_to_the_sign_in(client: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/bots", "/console/admin/health"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/sign-in?ended=1"
    fragment = await client.get("/console/bots", headers={"X-Console-Fragment": "1"})
    assert fragment.status_code == 401


async def test_sign_out_needs_the_csrf_token_then_ends_the_server_side_session(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    await sign_in(client, developer_key)
    token = await signed_in_csrf(client)
    refused = await client.post("/console/sign-out", data={})
    assert refused.status_code == 403
    assert len(await sessions_in(settings)) == 1
    assert (await client.get("/console/bots")).status_code == 200
    cookie = client.cookies["botmarket_console"]
    out = await client.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303
    assert await sessions_in(settings) == []
    # The old cookie, kept by a copy of the browser, opens nothing any more.
    client.cookies.set("botmarket_console", cookie, path="/console")
    assert (await client.get("/console/bots")).status_code == 303


async def test_the_csrf_token_may_come_as_a_header(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    await sign_in(client, developer_key)
    token = await signed_in_csrf(client)
    out = await client.post("/console/sign-out", headers={"X-CSRF-Token": token})
    assert out.status_code == 303
    assert await sessions_in(settings) == []


async def test_revoking_the_key_ends_its_sessions(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    admin_key: str,
    developer_key: str,
) -> None:
    await sign_in(client, developer_key)
    assert (await client.get("/console/bots")).status_code == 200
    keys = (await client.get("/api/v1/api-keys", headers=headers(admin_key))).json()["items"]
    [developer] = [k for k in keys if k["scope"] == "developer"]
    revoked = await client.delete(f"/api/v1/api-keys/{developer['id']}", headers=headers(admin_key))
    assert revoked.status_code == 204
    ended = await client.get("/console/bots")
    assert ended.status_code == 303
    assert ended.headers["location"] == "/console/sign-in?ended=1"
    assert await sessions_in(settings) == []


async def test_a_session_ends_twelve_hours_after_sign_in_at_most(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    await sign_in(client, developer_key)
    token = client.cookies["botmarket_console"]
    sessions = app.state.runtime.console_sessions
    assert await sessions.resolve(token, utcnow() + timedelta(hours=11)) is not None
    assert await sessions.resolve(token, utcnow() + timedelta(hours=12, seconds=1)) is None


async def test_sign_in_and_out_are_audited(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    await sign_in(client, developer_key)
    await client.post("/console/sign-out", data={"csrf_token": await signed_in_csrf(client)})
    engine = create_engine(settings.database_url, pool=False)
    async with create_sessionmaker(engine)() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.created_at))).all()
    await engine.dispose()
    assert [r.action for r in rows] == ["console.sign_in", "console.sign_out"]
    assert rows[0].actor_api_key_id is not None
    assert rows[0].actor_api_key_id == rows[1].actor_api_key_id


async def test_the_session_cookie_is_secure_outside_development(
    settings: Settings, empty_database: None, developer_key: str
) -> None:
    production = settings.model_copy(
        update={"environment": Environment.production, "allow_unsigned_principals": True}
    )
    app = create_app(production)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
            signed = await sign_in(client, developer_key)
    assert "secure" in cookie_header(signed, "botmarket_console").lower()


async def test_the_console_is_off_with_console_enabled_false(
    settings: Settings, empty_database: None
) -> None:
    app = create_app(settings.model_copy(update={"console_enabled": False}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/console/sign-in")).status_code == 404
            assert (await client.get("/console/static/console.js")).status_code == 404


async def test_pages_forbid_framing_and_foreign_scripts(client: httpx.AsyncClient) -> None:
    form = await client.get("/console/sign-in")
    policy = form.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert csrf_of(form)
    script = await client.get("/console/static/console.js")
    assert script.status_code == 200 and "X-Console-Fragment" in script.text


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_console_routes_are_not_in_the_api_document(
    client: httpx.AsyncClient, path: str
) -> None:
    document = (await client.get(path)).json()
    assert not [p for p in document["paths"] if p.startswith("/console")]


def console_writes() -> list[str]:
    """Every state-changing console route but the sign-in (whose form has its own token),
    its path parameters filled with an id that names nothing."""
    routes = [*console.router.routes, *developer.router.routes, *admin.router.routes]
    return sorted(
        re.sub(r"{\w+}", "0" * 32, route.path)
        for route in routes
        if isinstance(route, APIRoute) and "POST" in route.methods
        if route.path != "/console/sign-in"
    )


async def test_every_console_write_refuses_a_request_without_the_csrf_token(
    client: httpx.AsyncClient, settings: Settings, admin_key: str
) -> None:
    writes = console_writes()
    assert len(writes) == 4  # sign-out, backtest, key create, key revoke
    await sign_in(client, admin_key)
    for path in writes:
        for sent in ({}, {"csrf_token": "0" * 64}):
            refused = await client.post(path, data=sent)
            assert refused.status_code == 403, (path, sent)
            assert "CSRF" in refused.text
    assert len(await sessions_in(settings)) == 1  # the sign-out did not happen either
