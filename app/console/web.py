"""What every console page shares: the session and CSRF dependencies, the templates, the
cookies and the headers a page is served with."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from app.api_keys.schemas import Scope
from app.console.sessions import SignedIn
from app.core.db import utcnow
from app.core.settings import Environment
from app.runtime import Runtime

PACKAGE = Path(__file__).parent
templates = Jinja2Templates(directory=PACKAGE / "templates")

SESSION_COOKIE = "botmarket_console"
# The sign-in form's own CSRF secret: there is no session to bind its token to yet.
SIGN_IN_COOKIE = "botmarket_console_sign_in"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Pages load nothing from elsewhere: no CDN, no inline script, no framing by another site.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: a page goes to the sign-in form, a fragment answers 401."""


class CsrfRefused(Exception):
    """A state-changing request without its session's CSRF token."""


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def signed_in(request: Request) -> SignedIn:
    runtime = runtime_of(request)
    signed = await runtime.console_sessions.resolve(request.cookies.get(SESSION_COOKIE), utcnow())
    if signed is None:
        raise SignInRequired
    # The audit trail names the key a console write was made with, as for an API call.
    request.state.caller = signed.caller
    return signed


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


class AdminsOnly(Exception):
    """A developer's session on an admin page."""


async def admin(signed: SignedInDep) -> SignedIn:
    if signed.caller.scope is not Scope.admin:
        raise AdminsOnly
    return signed


AdminDep = Annotated[SignedIn, Depends(admin)]


async def form_fields(request: Request) -> dict[str, str]:
    """A url-encoded form's fields (the last value of a repeated name)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


@dataclass(frozen=True)
class Posted:
    """A state-changing request of a signed-in session, its CSRF token checked."""

    signed: SignedIn
    fields: dict[str, str]


async def posted(request: Request, signed: SignedInDep) -> Posted:
    fields = await form_fields(request)
    sent = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not sent or not hmac.compare_digest(sent.encode(), signed.csrf_token.encode()):
        raise CsrfRefused
    return Posted(signed, fields)


PostedDep = Annotated[Posted, Depends(posted)]


def page(
    request: Request,
    name: str,
    signed: SignedIn | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"signed": signed, "csrf_token": signed.csrf_token if signed else None, **context},
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        # Plain http on a developer's machine; everywhere else the cookie needs TLS.
        secure=runtime_of(request).settings.environment is not Environment.development,
        samesite="strict",
    )
