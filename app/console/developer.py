"""The developer's pages: their bots, a bot's charts, decisions, voters and versions, and
backtests started, watched and compared from the browser."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError

from app import audit
from app.backtests import service as backtests
from app.backtests.repository import Owner
from app.backtests.schemas import BacktestCreate
from app.console import charts, repository, service
from app.console.sessions import SignedIn
from app.console.web import (
    CSRF_FIELD,
    SESSION_COOKIE,
    PostedDep,
    SignedInDep,
    page,
    runtime_of,
    templates,
)
from app.core.db import session_scope, utcnow
from app.core.errors import AppError
from app.core.pagination import PageDep, next_cursor
from app.events import live
from app.events.feed import Viewer
from app.events.types import EventType
from app.models import Backtest, Bot
from app.track_records.service import decision_quality, median_equity_by_mode

router = APIRouter(prefix="/console", include_in_schema=False)
LATEST_DECISIONS = 10
BACKTEST_FIELDS = ("symbol", "timeframe", "start", "end", "quote_amount", "llm", "version")
# A fragment's root carries this while it should be asked for again.
POLL_S = 2


@router.get("/bots", response_class=HTMLResponse)
async def my_bots(request: Request, signed: SignedInDep, paging: PageDep) -> Response:
    async with runtime_of(request).read_sessionmaker() as session:
        lines = await service.bot_lines(
            session, signed.caller, paging.after_id, paging.limit + 1, utcnow()
        )
    return page(
        request,
        "bots.html",
        signed,
        title="My bots" if service.bots_owner(signed.caller) is not None else "Every bot",
        lines=lines[: paging.limit],
        next_cursor=next_cursor([line.bot for line in lines], paging.limit),
        limit=paging.limit,
    )


@router.get("/bots/{bot_id}", response_class=HTMLResponse)
async def bot_page(request: Request, bot_id: str, signed: SignedInDep) -> Response:
    async with runtime_of(request).read_sessionmaker() as session:
        bot = await service.visible_bot(session, signed.caller, bot_id)
        latest = await repository.latest_public_backtest(session, bot.id)
        decisions = await service.latest_decisions(session, bot.id, LATEST_DECISIONS)
        quality = await decision_quality(session, bot.id)
        renters = await median_equity_by_mode(session, bot.id, runtime_of(request).settings)
        versions = service.version_history(await repository.versions_of(session, bot.id))
        mine = await repository.backtests_of_key(session, bot.id, signed.caller.api_key_id, 20)
    equity, drawdown = charts.equity_and_drawdown(latest.result or {}) if latest else (None, None)
    return page(
        request,
        "bot.html",
        signed,
        title=bot.name,
        bot=bot,
        latest=latest,
        equity=equity,
        drawdown=drawdown,
        renters=[
            (mode, charts.median_equity(mode, line)) for mode, line in sorted(renters.items())
        ],
        min_renters=runtime_of(request).settings.track_record_min_renters,
        decisions=decisions,
        poll_s=POLL_S,
        voters=quality.voters,
        versions=versions,
        mine=[backtests.to_out(b) for b in mine],
    )


@router.get("/bots/{bot_id}/decisions", response_class=HTMLResponse)
async def bot_decisions(request: Request, bot_id: str, signed: SignedInDep) -> Response:
    """The decisions part of the bot's page, which the page asks for every few seconds."""
    async with runtime_of(request).read_sessionmaker() as session:
        bot = await service.visible_bot(session, signed.caller, bot_id)
        decisions = await service.latest_decisions(session, bot.id, LATEST_DECISIONS)
    return page(request, "decisions.html", signed, bot=bot, decisions=decisions, poll_s=POLL_S)


async def _streamed_bot(request: Request, bot_id: str, signed: SignedInDep) -> tuple[SignedIn, Bot]:
    """Checked before the stream begins: once it has, a refusal can no longer be answered."""
    async with runtime_of(request).read_sessionmaker() as session:
        return signed, await service.visible_bot(session, signed.caller, bot_id)


@router.get("/bots/{bot_id}/decisions/stream", response_class=EventSourceResponse)
async def bot_decisions_stream(
    request: Request, streamed: Annotated[tuple[SignedIn, Bot], Depends(_streamed_bot)]
) -> AsyncIterator[ServerSentEvent]:
    """The decisions part of the bot's page, sent again as a `decisions` event each time the
    live stream tells of a new decision of the bot. The stream is the events' own, opened for
    the session's key: it ends when the key is revoked, and here when the session ends."""
    signed, bot = streamed
    runtime = runtime_of(request)
    caller = signed.caller
    opener = live.Opener(
        Viewer(caller.scope, owner_user_id=caller.owner_user_id), caller.api_key_id
    )
    stream = live.LiveStream(runtime, opener)
    stream.want({EventType.decision_made})
    token = request.cookies.get(SESSION_COOKIE)
    async for event in live.sse_events(stream, None, runtime.settings.stream_heartbeat_s):
        if await runtime.console_sessions.resolve(token, utcnow()) is None:
            return
        if event.raw_data is None:  # a heartbeat
            yield event
            continue
        if json.loads(event.raw_data)["bot_id"] != bot.id:
            continue
        async with runtime.read_sessionmaker() as session:
            decisions = await service.latest_decisions(session, bot.id, LATEST_DECISIONS)
        fragment = templates.get_template("decisions.html").render(
            bot=bot, decisions=decisions, poll_s=POLL_S
        )
        # No id: the page asks for the fragment itself each time the stream (re)opens.
        yield ServerSentEvent(event="decisions", raw_data=fragment)


@router.get("/bots/{bot_id}/backtests/new", response_class=HTMLResponse)
async def backtest_form(request: Request, bot_id: str, signed: SignedInDep) -> Response:
    async with runtime_of(request).read_sessionmaker() as session:
        bot = await service.visible_bot(session, signed.caller, bot_id)
    return _form_page(request, signed, bot.id, bot.name, {"llm": "recorded"}, {})


def _form_page(
    request: Request,
    signed: Any,
    bot_id: str,
    bot_name: str,
    values: dict[str, str],
    errors: dict[str, list[str]],
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "backtest_form.html",
        signed,
        status_code=status_code,
        title=f"New backtest of {bot_name}",
        bot_id=bot_id,
        values=values,
        errors=errors,
    )


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NO_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def _in_utc(value: str) -> str:
    """A browser's date or datetime-local value, read as UTC, as the form's labels say."""
    if _DATE_ONLY.match(value):
        return f"{value}T00:00:00Z"
    return f"{value}Z" if _NO_ZONE.match(value) else value


def _field_errors(error: ValidationError) -> dict[str, list[str]]:
    """The schema's refusals by form field; a refusal of the whole window goes to `end`."""
    found: dict[str, list[str]] = {}
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        field = loc[0] if loc and loc[0] in BACKTEST_FIELDS else "end"
        found.setdefault(field, []).append(str(item["msg"]).removeprefix("Value error, "))
    return found


def _app_error_field(error: AppError) -> dict[str, list[str]]:
    """A service refusal, by the field its details name (`body.<field>`)."""
    for detail in error.details:
        field = str(detail.get("loc", "")).removeprefix("body.")
        if field in BACKTEST_FIELDS or field == "max_llm_cost_usd":
            return {field if field in BACKTEST_FIELDS else "llm": [error.message]}
    return {"end": [error.message]}


@router.post("/bots/{bot_id}/backtests", response_class=HTMLResponse)
async def start_backtest(request: Request, bot_id: str, posted: PostedDep) -> Response:
    """The form is checked by the API's own schema and service: the same refusals, shown
    beside the field they concern."""
    values = {k: v.strip() for k, v in posted.fields.items() if k != CSRF_FIELD}
    runtime = runtime_of(request)
    caller = posted.signed.caller
    async with session_scope(runtime.sessionmaker) as session:
        bot = await service.visible_bot(session, caller, bot_id)
        try:
            body = BacktestCreate.model_validate(
                {
                    k: _in_utc(v) if k in ("start", "end") else v
                    for k, v in values.items()
                    if k in BACKTEST_FIELDS and v != ""
                }
            )
            backtest = await backtests.create(
                session, bot, Owner(api_key_id=caller.api_key_id), body, runtime.settings, utcnow()
            )
        except ValidationError as invalid:
            errors = _field_errors(invalid)
        except AppError as refused:
            errors = _app_error_field(refused)
        else:
            audit.record(session, request, "backtest.create", "backtest", backtest.id)
            runtime.jobs.send_after_commit(session, "backtests.run", backtest_id=backtest.id)
            errors = {}
    if errors:
        return _form_page(request, posted.signed, bot.id, bot.name, values, errors, 422)
    return RedirectResponse(f"/console/backtests/{backtest.id}", status_code=303)


async def _owned(request: Request, signed: Any, backtest_id: str) -> Backtest:
    async with runtime_of(request).read_sessionmaker() as session:
        return await backtests.get_owned(
            session, Owner(api_key_id=signed.caller.api_key_id), backtest_id
        )


@router.get("/backtests/compare", response_class=HTMLResponse)
async def compare(
    request: Request,
    signed: SignedInDep,
    a: Annotated[str, Query(max_length=32)],
    b: Annotated[str, Query(max_length=32)],
) -> Response:
    runs = [await _owned(request, signed, backtest_id) for backtest_id in (a, b)]
    return page(
        request,
        "compare.html",
        signed,
        title="Two backtests side by side",
        runs=[_shown(run) for run in runs],
    )


def _shown(run: Backtest) -> dict[str, Any]:
    equity, drawdown = charts.equity_and_drawdown(run.result or {})
    return {
        "out": backtests.to_out(run),
        "metrics": (run.result or {}).get("metrics", {}),
        "trades": (run.result or {}).get("trades", []),
        "warnings": (run.result or {}).get("warnings", []),
        "equity": equity,
        "drawdown": drawdown,
    }


@router.get("/backtests/{backtest_id}", response_class=HTMLResponse)
async def backtest_page(request: Request, backtest_id: str, signed: SignedInDep) -> Response:
    run = await _owned(request, signed, backtest_id)
    return page(
        request,
        "backtest.html",
        signed,
        title=f"Backtest of {run.symbol} {run.timeframe}",
        run=_shown(run),
        poll_s=POLL_S,
    )


@router.get("/backtests/{backtest_id}/progress", response_class=HTMLResponse)
async def backtest_progress(request: Request, backtest_id: str, signed: SignedInDep) -> Response:
    """The progress part of the backtest's page, asked for every few seconds until it ends."""
    run = await _owned(request, signed, backtest_id)
    return page(request, "progress.html", signed, out=backtests.to_out(run), poll_s=POLL_S)
