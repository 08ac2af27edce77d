"""`/console`: sign-in and sign-out, and the mounting of the console's pages on the API."""

from __future__ import annotations

import inspect
import secrets
from datetime import timedelta

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app import audit
from app.console import admin, developer
from app.console.sessions import SignInRefused, csrf_matches, csrf_token_of
from app.console.web import (
    CSRF_FIELD,
    PACKAGE,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    AdminsOnly,
    CsrfRefused,
    PostedDep,
    SignedInDep,
    SignInRequired,
    form_fields,
    page,
    runtime_of,
    set_cookie,
)
from app.core.db import session_scope, utcnow
from app.core.errors import AppError

router = APIRouter(prefix="/console", include_in_schema=False)
_SIGN_IN_FORM_S = 3600


def install_console(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(developer.router)
    app.include_router(admin.router)
    app.mount("/console/static", StaticFiles(directory=PACKAGE / "static"), name="console-static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(AdminsOnly, _admins_only)
    api_errors = app.exception_handlers[AppError]

    async def app_error(request: Request, exc: Exception) -> Response:
        """The services' refusals (a bot not found, say) as a page on the console's paths."""
        if not request.url.path.startswith("/console") or not isinstance(exc, AppError):
            answer = api_errors(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return page(
            request, "error.html", None, exc.status_code, title="Refused", message=exc.message
        )

    app.add_exception_handler(AppError, app_error)


async def _to_sign_in(request: Request, _: Exception) -> Response:
    # A poll from a page asks for a fragment: it is told, and the page goes to the sign-in.
    if request.headers.get("X-Console-Fragment"):
        return Response(status_code=401, headers={"X-Console-Signed-Out": "1"})
    response = RedirectResponse("/console/sign-in?ended=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


async def _csrf_refused(request: Request, _: Exception) -> Response:
    return page(
        request,
        "error.html",
        None,
        status_code=403,
        title="Refused",
        message="This request did not carry the page's CSRF token. Reload the page and retry.",
    )


async def _admins_only(request: Request, _: Exception) -> Response:
    return page(
        request,
        "error.html",
        None,
        status_code=403,
        title="Admins only",
        message="This page needs an admin key's session.",
    )


@router.get("", response_class=HTMLResponse)
async def home(signed: SignedInDep) -> Response:
    return RedirectResponse("/console/bots", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, ended: int = 0) -> Response:
    return _sign_in_page(
        request, "Your session has ended: sign in again." if ended else None, status_code=200
    )


def _sign_in_page(request: Request, error: str | None, status_code: int) -> Response:
    secret = secrets.token_urlsafe(32)
    response = page(
        request,
        "sign_in.html",
        None,
        status_code=status_code,
        title="Sign in",
        error=error,
        sign_in_csrf=csrf_token_of(secret),
    )
    set_cookie(request, response, SIGN_IN_COOKIE, secret, _SIGN_IN_FORM_S)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """The key is read once, here, and exchanged for a session: the browser keeps only the
    session's token, in an HttpOnly cookie."""
    fields = await form_fields(request)
    if not csrf_matches(request.cookies.get(SIGN_IN_COOKIE), fields.get(CSRF_FIELD)):
        raise CsrfRefused
    runtime = runtime_of(request)
    lifetime = timedelta(hours=runtime.settings.console_session_hours)
    try:
        async with session_scope(runtime.sessionmaker) as session:
            token, request.state.caller = await runtime.console_sessions.sign_in(
                session, fields.get("api_key", ""), utcnow(), lifetime
            )
            audit.record(session, request, "console.sign_in", "console_session", None)
    except SignInRefused as refused:
        return _sign_in_page(request, str(refused), status_code=403)
    response = RedirectResponse("/console", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, int(lifetime.total_seconds()))
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, posted: PostedDep) -> Response:
    runtime = runtime_of(request)
    async with session_scope(runtime.sessionmaker) as session:
        await runtime.console_sessions.end(session, request.cookies[SESSION_COOKIE])
        audit.record(session, request, "console.sign_out", "console_session", None)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response
