"""The admin's pages: system health, API keys (created with the key shown once, revoked),
marketplaces and their assertion modes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.api_keys import flows as keys
from app.api_keys import repository as api_keys
from app.api_keys.schemas import ApiKeyCreate, ApiKeyOut, Scope
from app.console import repository
from app.console.web import (
    CSRF_FIELD,
    AdminDep,
    AdminsOnly,
    Posted,
    PostedDep,
    page,
    runtime_of,
)
from app.core.db import session_scope, utcnow
from app.core.errors import AppError
from app.core.jobs import QUEUES
from app.core.pagination import PageDep, next_cursor
from app.health import unreachable
from app.integrations.binance.governor import RedisGovernor
from app.marketplaces import repository as marketplaces
from app.models import Backtest, Trade, WebhookDelivery
from app.trading import sweeps

router = APIRouter(prefix="/console/admin", include_in_schema=False)
KEY_FIELDS = ("name", "scope", "owner", "marketplace")
# How long the workers' fragment waits for their answers to its ping: all of it, every time.
PING_TIMEOUT_S = 0.5


@router.get("/health", response_class=HTMLResponse)
async def health(request: Request, signed: AdminDep) -> Response:
    """What this process reaches and the day's figures; the workers' part follows in a
    fragment of its own (`health_workers`), so the page does not wait for their ping."""
    runtime = runtime_of(request)
    settings = runtime.settings
    failed = await unreachable(runtime, settings)
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    async with runtime.read_sessionmaker() as session:
        spend = await repository.llm_spend_by_provider(session, today)
        webhooks = await repository.counts_by_status(session, WebhookDelivery)
        trades = await repository.counts_by_status(session, Trade)
        runs = await repository.counts_by_status(session, Backtest)
    governor: dict[str, Any] | None = None
    if runtime.redis is not None:
        tokens, banned_until = await RedisGovernor(
            runtime.redis, settings.binance_weight_per_minute
        ).state()
        governor = {
            "capacity": settings.binance_weight_per_minute,
            "left": tokens,
            "banned_until": datetime.fromtimestamp(banned_until, UTC) if banned_until else None,
        }
    return page(
        request,
        "health.html",
        signed,
        title="System health",
        services=[(name, name not in failed) for name in _services(runtime.redis is not None)],
        spend=sorted(spend.items()),
        webhooks=webhooks,
        trades=trades,
        runs=runs,
        governor=governor,
    )


@router.get("/health/workers", response_class=HTMLResponse)
async def health_workers(request: Request, signed: AdminDep) -> Response:
    """The health page's workers, queues and beat: the workers that answer a ping within
    PING_TIMEOUT_S, the queues' depths, the reconciler's last sweep."""
    runtime = runtime_of(request)
    settings = runtime.settings
    workers, depths = await asyncio.gather(
        runtime.jobs.workers_answering(PING_TIMEOUT_S),
        runtime.jobs.queue_depths(QUEUES),
    )
    sweep = (
        await sweeps.last(runtime.redis, settings.database_url)
        if runtime.redis is not None
        else None
    )
    return page(
        request,
        "_health_workers.html",
        signed,
        workers=workers,
        ping_timeout_s=PING_TIMEOUT_S,
        queues=QUEUES,
        depths=depths,
        with_redis=runtime.redis is not None,
        sweep=sweep,
        # Beat sends a sweep every interval: none for two of them and beat (or every worker
        # of the default queue) is down.
        beat_alive=sweep is not None
        and utcnow() - sweep.at <= timedelta(seconds=2 * settings.reconcile_interval_s),
        metrics_port=settings.metrics_port,
    )


def _services(with_redis: bool) -> list[str]:
    return ["database", "redis", "broker"] if with_redis else ["database", "broker"]


async def _keys_page(
    request: Request,
    signed: Any,
    after_id: str | None,
    limit: int,
    *,
    created: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    status_code: int = 200,
) -> Response:
    async with runtime_of(request).read_sessionmaker() as session:
        rows = await api_keys.page(session, after_id, limit + 1)
        shown = rows[:limit]
        ids = {r.marketplace_id for r in shown if r.marketplace_id is not None}
        homes = await marketplaces.by_ids(session, ids)
    return page(
        request,
        "keys.html",
        signed,
        status_code=status_code,
        title="API keys",
        keys=[ApiKeyOut.of(r, homes.get(r.marketplace_id or ""), []) for r in shown],
        next_cursor=next_cursor(rows, limit),
        limit=limit,
        created=created,
        values=values or {"scope": "developer"},
        errors=errors or {},
    )


@router.get("/keys", response_class=HTMLResponse)
async def list_keys(request: Request, signed: AdminDep, paging: PageDep) -> Response:
    return await _keys_page(request, signed, paging.after_id, paging.limit)


def _key_errors(error: ValidationError | AppError) -> dict[str, list[str]]:
    if isinstance(error, AppError):
        for detail in error.details:
            field = str(detail.get("loc", "")).removeprefix("body.")
            if field in KEY_FIELDS:
                return {field: [error.message]}
        return {"name": [error.message]}
    found: dict[str, list[str]] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "name"
        found.setdefault(field if field in KEY_FIELDS else "name", []).append(
            str(item["msg"]).removeprefix("Value error, ")
        )
    return found


@router.post("/keys", response_class=HTMLResponse)
async def create_key(request: Request, posted: PostedDep) -> Response:
    """The new key is on this page once and never again: only its digest is kept."""
    await admin_only(posted)
    values = {k: v.strip() for k, v in posted.fields.items() if k != CSRF_FIELD}
    runtime = runtime_of(request)
    try:
        body = ApiKeyCreate.model_validate(
            {k: v for k, v in values.items() if k in KEY_FIELDS and v != ""}
        )
        async with session_scope(runtime.sessionmaker) as session:
            created = await keys.create(session, request, runtime, body)
    except (ValidationError, AppError) as refused:
        return await _keys_page(
            request,
            posted.signed,
            None,
            50,
            values=values,
            errors=_key_errors(refused),
            status_code=422,
        )
    shown = {"key": created.plaintext, "name": created.row.name, "scope": created.row.scope}
    return await _keys_page(request, posted.signed, None, 50, created=shown, status_code=201)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, posted: PostedDep) -> Response:
    await admin_only(posted)
    runtime = runtime_of(request)
    async with session_scope(runtime.sessionmaker) as session:
        await keys.revoke(session, request, runtime, key_id)
    return RedirectResponse("/console/admin/keys", status_code=303)


async def admin_only(posted: Posted) -> None:
    """A write's session is checked for its CSRF token first, then for its scope."""
    if posted.signed.caller.scope is not Scope.admin:
        raise AdminsOnly


@router.get("/marketplaces", response_class=HTMLResponse)
async def list_marketplaces(request: Request, signed: AdminDep, paging: PageDep) -> Response:
    async with runtime_of(request).read_sessionmaker() as session:
        rows = await marketplaces.page(session, paging.after_id, paging.limit + 1)
        shown = rows[: paging.limit]
        assertion_keys = await marketplaces.assertion_keys(session, [m.id for m in shown])
    return page(
        request,
        "marketplaces.html",
        signed,
        title="Marketplaces",
        marketplaces=[(m, len(assertion_keys.get(m.id, []))) for m in shown],
        next_cursor=next_cursor(rows, paging.limit),
        limit=paging.limit,
    )
