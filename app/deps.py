"""Request dependencies: the session, the authenticated caller, the principal, the renter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from app.api_keys.assertions import check_principal_assertion
from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.core.db import session_scope
from app.core.errors import Forbidden, InvalidPrincipalError, Unauthenticated, Unprocessable
from app.core.principals import MAX_PRINCIPAL_TEXT, InvalidPrincipal, validate_renter_principal
from app.core.reads import RowReader
from app.runtime import Runtime
from app.users import repository as users
from app.users.renter import Renter

# Read from the raw request rather than declared as FastAPI parameters: a declared header (and
# the security dependency X-API-Key would be) costs FastAPI's dependency solving on every
# request, which showed in the profile of the read path (bench/gateway_cpu.py). app/openapi.py
# documents both on the operations that read them.
API_KEY_HEADER = "X-API-Key"
PRINCIPAL_HEADER = "X-Principal-ID"


async def get_runtime(request: Request) -> Runtime:
    # async, like every dependency here: FastAPI runs a plain `def` in its thread pool, a
    # thread hop per request for a dictionary lookup.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction, for a write (a read takes ReadSessionsDep)."""
    runtime: Runtime = request.app.state.runtime
    # The request owns the transaction; "function" scope commits before the response is sent,
    # so a stored idempotent response never describes an uncommitted change.
    async with session_scope(runtime.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

ReadSessions = async_sessionmaker[AsyncSession]


async def read_sessions(request: Request) -> ReadSessions:
    """Sessions for a read: no BEGIN, COMMIT or ROLLBACK (app/core/reads.py). The route opens
    and closes its session itself, `async with sessions() as session`, rather than taking one
    from a dependency that yields: that costs FastAPI an exit stack and a shielded exit on
    every request, which shows in the profile of the read path (bench/gateway_cpu.py)."""
    runtime: Runtime = request.app.state.runtime
    return runtime.read_sessionmaker


ReadSessionsDep = Annotated[ReadSessions, Depends(read_sessions)]


def _budget(request: HTTPConnection, runtime: Runtime, caller: Caller) -> tuple[int, str | None]:
    """The key's limit a minute, and the renter a marketplace key's request also counts for.

    The principal is the header as sent, before it is checked: a request for a principal that
    is then refused still spent a request of that renter's budget and of the key's. A header
    longer than any principal counts for the key alone, so that junk cannot make large buckets.
    """
    settings = runtime.settings
    if caller.scope is not Scope.marketplace:
        return caller.rate_limit_per_minute or settings.rate_limit_per_minute, None
    principal = request.headers.get(PRINCIPAL_HEADER)
    if principal is not None and len(principal) > MAX_PRINCIPAL_TEXT:
        principal = None
    return caller.rate_limit_per_minute or settings.marketplace_rate_limit_per_minute, principal


async def _caller(request: HTTPConnection, api_key: str | None) -> Caller:
    runtime: Runtime = request.app.state.runtime
    caller = await runtime.authenticator.authenticate(api_key)
    if caller is None:
        raise Unauthenticated("missing, unknown or revoked API key")
    await runtime.rate_limiter.hit(caller.api_key_id, *_budget(request, runtime, caller))
    request.state.caller = caller
    return caller


async def authenticate(connection: HTTPConnection) -> Caller:
    """The caller of an HTTP request or a WebSocket, by its X-API-Key."""
    return await _caller(connection, connection.headers.get(API_KEY_HEADER))


CallerDep = Annotated[Caller, Depends(authenticate)]


def require_scope(*scopes: Scope) -> Callable[[Caller], Coroutine[Any, Any, Caller]]:
    allowed = frozenset(scopes) | {Scope.admin}

    async def check(caller: CallerDep) -> Caller:
        if caller.scope not in allowed:
            raise Forbidden(f"this needs a key of scope {' or '.join(sorted(allowed))}")
        return caller

    return check


AdminDep = Annotated[Caller, Depends(require_scope(Scope.admin))]
DeveloperDep = Annotated[Caller, Depends(require_scope(Scope.developer))]


async def checked_principal(request: Request, caller: Caller, principal: str | None) -> str:
    """The principal a marketplace key acts for, once the principal and the assertion (when
    the key needs one) are checked."""
    if caller.scope is not Scope.marketplace:
        raise Forbidden("only a marketplace key may act for a principal")
    if principal is None:
        raise Unprocessable(
            "X-Principal-ID header is required",
            details=[{"loc": "header.X-Principal-ID", "message": "field required"}],
        )
    try:
        validate_renter_principal(principal)
    except InvalidPrincipal as exc:
        raise InvalidPrincipalError(
            f"X-Principal-ID is not a valid renter principal: {exc}",
            details=[{"loc": "header.X-Principal-ID", "message": str(exc)}],
        ) from exc
    request.state.principal = principal
    check_principal_assertion(request.app.state.runtime.assertion_verifier, caller, request.scope)
    return principal


def marketplace_of(caller: Caller) -> str:
    """The marketplace whose renters a marketplace key acts for."""
    assert caller.marketplace_id is not None, "every marketplace key belongs to a marketplace"
    return caller.marketplace_id


# The renter dependencies authenticate the key themselves rather than through CallerDep, and
# the read one hands over the read sessions itself: FastAPI's dependency solving costs per
# dependency on every request, and it showed in the profile of the read path. A route
# therefore takes either CallerDep or a renter dependency, never both (the key would count
# twice).


async def _renter_call(request: Request) -> tuple[Caller, str | None]:
    """The authenticated caller of a renter route, and the principal it names (if any)."""
    return await authenticate(request), request.headers.get(PRINCIPAL_HEADER)


@dataclass(frozen=True)
class RenterRead:
    """A renter's read: the marketplace and checked principal its queries are scoped by (no
    lookup of the renter's row first), and what to run them on. `rows` serves only the
    statements that app/core/reads.py lists (a renter's subscription and list of
    subscriptions, read as rows straight into the response); every other read, and any read
    that loads an entity, takes a session from `sessions`."""

    marketplace_id: str
    principal: str
    sessions: ReadSessions
    rows: RowReader


async def renter_read(request: Request) -> RenterRead:
    caller, principal = await _renter_call(request)
    checked = await checked_principal(request, caller, principal)
    runtime: Runtime = request.app.state.runtime
    return RenterRead(marketplace_of(caller), checked, runtime.read_sessionmaker, runtime.rows)


RenterReadDep = Annotated[RenterRead, Depends(renter_read)]


async def current_renter(request: Request) -> Renter:
    """The renter with its user row, made on first use: what writes and their audit need."""
    return await renter_of(request, *await _renter_call(request))


async def renter_of(request: Request, caller: Caller, principal: str | None) -> Renter:
    """The renter an authenticated marketplace caller acts for, for a route that serves other
    scopes too (it takes CallerDep, so the key is not authenticated a second time)."""
    checked = await checked_principal(request, caller, principal)
    marketplace_id = marketplace_of(caller)
    runtime: Runtime = request.app.state.runtime

    async def load() -> str:
        # Committed in a transaction of its own before the id is cached: a row made inside a
        # request that then fails would be rolled back, and the cache would keep its id.
        async with session_scope(runtime.sessionmaker) as session:
            return (await users.get_or_create_renter(session, marketplace_id, checked)).id

    renter_id = await runtime.renter_ids.get((marketplace_id, checked), load)
    return Renter(id=renter_id, marketplace_id=marketplace_id, principal=checked)


RenterDep = Annotated[Renter, Depends(current_renter)]
