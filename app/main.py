"""The ASGI application: `uvicorn --factory app.main:create_app`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Lifespan

from app.api_keys.router import router as api_keys_router
from app.audit import AuditRejectedWritesMiddleware
from app.backtests.router import router as backtests_router
from app.bots.router import router as bots_router
from app.console.router import install_console
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.memory import settled_garbage_collector
from app.core.middleware import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    RequestContextMiddleware,
)
from app.core.settings import Environment, Settings, get_settings
from app.credentials.router import router as credentials_router
from app.erasure.router import router as erasure_router
from app.events.router import router as events_router
from app.health import unreachable
from app.idempotency.middleware import IdempotencyMiddleware
from app.marketplaces import repository as marketplaces
from app.marketplaces.router import router as marketplaces_router
from app.openapi import install_method_not_allowed, install_openapi
from app.performance.router import router as performance_router
from app.runtime import Runtime
from app.subscriptions.router import router as subscriptions_router
from app.track_records.router import router as track_records_router
from app.verification.router import router as verification_router
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)

# Longer than the revocation listener's poll, so it stops of its own accord well within it.
SHUTDOWN_WAIT_S = 5.0

DESCRIPTION = """
Marketplace API for renting trading bots. Every `/api/v1` call needs `X-API-Key`; renter
endpoints also need `X-Principal-ID` (sent by a `marketplace` key only) and, when that key has
assertion public keys, the canister's signed `X-Principal-Assertion` and
`X-Principal-Signature` (docs/principal-assertions.md). Writes accept an
`Idempotency-Key`: identical copies get byte-identical answers, a reused key with another
body is a 409. Errors are `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    refuse_unsigned_marketplaces(settings)
    app = FastAPI(
        title="botmarket",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings),
        # Our metrics are Prometheus's (app.core.metrics) and nothing sets up OpenTelemetry;
        # left on, FastAPI asks OpenTelemetry's global providers on every request whether
        # someone has (3% of a read's CPU in bench/gateway_cpu.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        # Served by install_openapi from local assets; ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    _include_routers(app)
    install_openapi(app, swagger_ui=settings.docs_enabled)
    install_method_not_allowed(app)
    _add_health_routes(app, settings)
    if settings.console_enabled:
        install_console(app)
    _add_middleware(app, settings)
    return app


def refuse_unsigned_marketplaces(settings: Settings) -> None:
    """Production serves no marketplace whose keys take `X-Principal-ID` on trust, unless told.

    Checked where every way of serving the API begins (`botmarket serve` and uvicorn both
    call this factory), before the port opens, and refused like the settings are: one plain
    message. In a thread with a loop of its own, because uvicorn calls the factory on its
    running loop.
    """
    if settings.environment is not Environment.production or settings.allow_unsigned_principals:
        return
    try:
        with ThreadPoolExecutor(max_workers=1) as thread:
            unsigned = thread.submit(asyncio.run, _unsigned_marketplaces(settings)).result()
    except SQLAlchemyError as exc:
        raise SystemExit(
            "botmarket cannot start: ENVIRONMENT=production checks the marketplaces' "
            f"assertion modes before serving, and the database could not be read "
            f"({type(exc).__name__}): is DATABASE_URL right and migrated (`botmarket migrate`)?"
        ) from exc
    if unsigned:
        raise SystemExit(
            "botmarket cannot start: ENVIRONMENT=production refuses marketplaces whose "
            "assertion mode is off while they have a live key, since whoever holds one acts "
            f"for any of their principals: {', '.join(unsigned)}. Register the canister's "
            "assertion key and require it (`PATCH /api/v1/api-keys/{id}` with assertion_mode), "
            "revoke the keys, or set ALLOW_UNSIGNED_PRINCIPALS=true"
        )


async def _unsigned_marketplaces(settings: Settings) -> list[str]:
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with create_sessionmaker(engine)() as session:
            return [row.name for row in await marketplaces.unsigned_in_use(session)]
    finally:
        await engine.dispose()


def _lifespan(settings: Settings) -> Lifespan[FastAPI]:
    """The runtime, the metrics server and the background listeners, for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
        metrics_server = (
            start_http_server(
                settings.metrics_port, settings.metrics_bind, runtime.metrics.registry
            )[0]
            if settings.metrics_port
            else None
        )
        background = [
            asyncio.create_task(runtime.authenticator.flush_last_used_forever()),
            asyncio.create_task(runtime.authenticator.listen_for_changes()),
            asyncio.create_task(runtime.console_sessions.listen_for_changes()),
            asyncio.create_task(runtime.catalogue.listen_for_changes()),
            asyncio.create_task(runtime.feed_pages.listen_for_changes()),
            asyncio.create_task(runtime.doorbell.listen(runtime.redis)),
        ]
        hub = asyncio.create_task(runtime.hub.run())
        try:
            with settled_garbage_collector():
                yield
        finally:
            if metrics_server is not None:
                await asyncio.to_thread(metrics_server.shutdown)  # waits out its poll loop
                metrics_server.server_close()
            await _stop_hub(runtime, hub)
            await _stop_background(runtime, background)
            await runtime.close()

    return lifespan


async def _stop_background(runtime: Runtime, background: list[asyncio.Task[None]]) -> None:
    runtime.authenticator.stop()
    runtime.console_sessions.stop()
    runtime.catalogue.stop()
    runtime.feed_pages.stop()
    runtime.doorbell.stop()
    for task in background:
        task.cancel()
    # Bounded: a task that swallows its cancellation must not hold shutdown forever.
    _, stuck = await asyncio.wait(background, timeout=SHUTDOWN_WAIT_S)
    if stuck:
        log.error("background tasks did not stop within %s s: %s", SHUTDOWN_WAIT_S, stuck)


async def _stop_hub(runtime: Runtime, hub: asyncio.Task[None]) -> None:
    """Asked to stop rather than cancelled: a cancellation in the middle of its numbering of
    events could leave that transaction open (on SQLite, the write lock held)."""
    runtime.hub.stop()
    try:
        await asyncio.wait_for(hub, SHUTDOWN_WAIT_S)
    except TimeoutError:
        log.error("the live hub did not stop within %s s", SHUTDOWN_WAIT_S)


def _include_routers(app: FastAPI) -> None:
    # The busiest first: FastAPI tries a request on each included router in turn, every route
    # of a router before it (matching was a tenth of a read's CPU with subscriptions fourth,
    # and a sixth of a feed poll's with events ninth; the canister polls the feed).
    for router in (
        subscriptions_router,
        events_router,
        performance_router,
        bots_router,
        credentials_router,
        erasure_router,
        track_records_router,
        api_keys_router,
        backtests_router,
        marketplaces_router,
        webhooks_router,
        verification_router,
    ):
        app.include_router(router)


def _add_health_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready(request: Request) -> JSONResponse:
        failed = await unreachable(request.app.state.runtime, settings)
        if failed:
            return JSONResponse(
                {
                    "error": {
                        "code": "NOT_READY",
                        "message": f"unreachable: {', '.join(failed)}",
                        "details": [{"loc": name, "message": "unreachable"} for name in failed],
                    }
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok"})

    if not settings.metrics_port:
        # Development only (production refuses it): whoever reaches the API reads its metrics.
        @app.get("/metrics", tags=["health"], response_class=Response)
        async def metrics(request: Request) -> Response:
            runtime: Runtime = request.app.state.runtime
            return Response(
                generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST
            )


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first: the request id wraps everything, then the header and body limits,
    # then idempotency, so a replay is logged, counted and never sees oversized headers or
    # body, and is not audited twice.
    app.add_middleware(
        AuditRejectedWritesMiddleware, sessionmaker=lambda: app.state.runtime.sessionmaker
    )
    app.add_middleware(IdempotencyMiddleware, runtime=lambda: app.state.runtime)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        HeaderLimitMiddleware,
        max_count=settings.max_header_count,
        max_bytes=settings.max_header_bytes,
    )
    app.add_middleware(RequestContextMiddleware, metrics=lambda: app.state.runtime.metrics)
