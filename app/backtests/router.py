"""Backtests: a developer of their own bots, an admin of any, a renter of a listed one.

A renter replays the recorded votes or indicators only: their `ask` would spend the bot's
daily LLM budget, which its live decisions have first claim on.

Each backtest is seen by whoever started it only: the API key of a developer or admin, the
renter (X-Principal-ID) of a marketplace key. Anyone else's is a 404, as a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from app import audit
from app.api_keys.schemas import Scope
from app.backtests import service
from app.backtests.repository import Owner
from app.backtests.schemas import BacktestCreate, BacktestOut
from app.core.db import utcnow
from app.core.errors import error_responses
from app.deps import CallerDep, ReadSessionsDep, RuntimeDep, SessionDep, renter_of

router = APIRouter(prefix="/api/v1", tags=["backtests"])


@dataclass(frozen=True)
class Starter:
    owner: Owner
    scope: Scope
    owner_user_id: str | None  # a developer's or admin's own user
    renter_marketplace_id: str | None = None  # a renter's marketplace


async def starter(
    request: Request,
    caller: CallerDep,
    principal: Annotated[
        str | None,
        Header(
            alias="X-Principal-ID",
            description="marketplace keys: the renter the backtest is for",
        ),
    ] = None,
) -> Starter:
    if caller.scope is Scope.marketplace:
        renter = await renter_of(request, caller, principal)
        return Starter(Owner(user_id=renter.id), caller.scope, None, renter.marketplace_id)
    return Starter(Owner(api_key_id=caller.api_key_id), caller.scope, caller.owner_user_id)


StarterDep = Annotated[Starter, Depends(starter)]


@router.post(
    "/bots/{bot_id}/backtests",
    status_code=202,
    response_model=BacktestOut,
    responses=error_responses(403, 404),
)
async def create_backtest(
    bot_id: str,
    body: BacktestCreate,
    request: Request,
    who: StarterDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> BacktestOut:
    """Queue a backtest of a bot version. A renter (a marketplace key with `X-Principal-ID`)
    may replay `llm: "recorded"` or `"indicators"` only: `"ask"` would spend the bot's daily
    LLM budget, which its live decisions have first claim on, so it is a 403 for a renter."""
    bot = await service.visible_bot(
        session,
        bot_id,
        admin=who.scope is Scope.admin,
        owner_user_id=who.owner_user_id,
        renter_marketplace_id=who.renter_marketplace_id,
    )
    backtest = await service.create(session, bot, who.owner, body, runtime.settings, utcnow())
    audit.record(session, request, "backtest.create", "backtest", backtest.id)
    runtime.jobs.send_after_commit(session, "backtests.run", backtest_id=backtest.id)
    return service.to_out(backtest)


@router.get("/backtests/{backtest_id}", response_model=BacktestOut, responses=error_responses(404))
async def get_backtest(backtest_id: str, who: StarterDep, sessions: ReadSessionsDep) -> BacktestOut:
    async with sessions() as session:
        backtest = await service.get_owned(session, who.owner, backtest_id)
    return service.to_out(backtest)


@router.delete(
    "/backtests/{backtest_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def cancel_backtest(
    backtest_id: str, request: Request, who: StarterDep, session: SessionDep
) -> Response:
    await service.cancel(session, who.owner, backtest_id, utcnow())
    audit.record(session, request, "backtest.cancel", "backtest", backtest_id)
    return Response(status_code=204)
