"""HTTP endpoints of bots and their marketplace registrations."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import audit
from app.bots import repository, service
from app.bots.schemas import (
    BotCreate,
    BotOut,
    BotSummaryOut,
    BotUpdate,
    RegistrationCreate,
    RegistrationOut,
)
from app.core.errors import error_responses
from app.core.pagination import Page, PageDep, next_cursor
from app.deps import CallerDep, DeveloperDep, ReadSessionsDep, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["bots"])


@router.post("/bots", status_code=201, response_model=BotOut, responses=error_responses(403))
async def create_bot(
    body: BotCreate,
    request: Request,
    caller: DeveloperDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> BotOut:
    bot, version = await service.create_bot(session, caller, body, runtime.settings)
    audit.record(session, request, "bot.create", "bot", bot.id)
    runtime.catalogue.changed(session)
    return service.to_out(bot, version)


@router.get("/bots", response_model=Page[BotSummaryOut])
async def list_bots(_: CallerDep, runtime: RuntimeDep, page: PageDep) -> Response:
    # Served from this process's catalogue cache (app/bots/catalogue.py).
    async def render() -> bytes:
        rows = await repository.page_of_summaries(runtime.rows, page.after_id, page.limit + 1)
        bots = [BotSummaryOut.model_validate(row) for row in rows]
        listed: Page[BotSummaryOut] = Page(
            items=bots[: page.limit], next_cursor=next_cursor(bots, page.limit)
        )
        return listed.model_dump_json(by_alias=True).encode()

    body = await runtime.catalogue.page((page.after_id or "", page.limit), render)
    return Response(body, media_type="application/json")


@router.get("/bots/{bot_id}", response_model=BotOut, responses=error_responses(404))
async def get_bot(bot_id: str, _: CallerDep, sessions: ReadSessionsDep) -> BotOut:
    async with sessions() as session:
        bot, version = await service.get_bot(session, bot_id)
    return service.to_out(bot, version)


@router.patch("/bots/{bot_id}", response_model=BotOut, responses=error_responses(403, 404))
async def update_bot(
    bot_id: str,
    body: BotUpdate,
    request: Request,
    caller: DeveloperDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> BotOut:
    bot, version = await service.update_bot(session, caller, bot_id, body, runtime.settings)
    audit.record(session, request, "bot.update", "bot", bot.id)
    runtime.catalogue.changed(session)
    return service.to_out(bot, version)


@router.post(
    "/bots/{bot_id}/registrations",
    status_code=201,
    response_model=RegistrationOut,
    responses=error_responses(403, 404),
)
async def register_bot(
    bot_id: str,
    body: RegistrationCreate,
    request: Request,
    caller: DeveloperDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> RegistrationOut:
    registration = await service.register_bot(
        session,
        caller,
        bot_id,
        body,
        create_marketplace=runtime.settings.makes_missing_marketplaces,
    )
    audit.record(session, request, "registration.create", "registration", registration.id)
    return RegistrationOut.of(registration, body.marketplace)


@router.get("/registrations", response_model=Page[RegistrationOut], tags=["registrations"])
async def list_registrations(
    caller: CallerDep, sessions: ReadSessionsDep, page: PageDep
) -> Page[RegistrationOut]:
    """Every active listing; a marketplace key's, its own marketplace's only."""
    async with sessions() as session:
        rows = await repository.active_registrations(
            session, caller.marketplace_id, page.after_id, page.limit + 1
        )
    return Page(
        items=[RegistrationOut.of(r, name) for r, name in rows[: page.limit]],
        next_cursor=next_cursor([r for r, _ in rows], page.limit),
    )
