"""`DELETE /api/v1/principals/me`: a renter erases their own data."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app import audit
from app.core.errors import error_responses
from app.deps import RenterDep, RuntimeDep, SessionDep
from app.erasure import service

router = APIRouter(prefix="/api/v1/principals", tags=["principals"], responses=error_responses(403))


@router.delete(
    "/me",
    status_code=204,
    response_class=Response,
    description="GDPR erasure: deletes the renter's exchange credentials and backtests, "
    "blanks personal fields and cancels every subscription. Trade history stays, tied to the "
    "principal only.",
)
async def erase_me(
    request: Request, renter: RenterDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    await service.erase(session, renter)
    audit.record(session, request, "principal.erase", "user", renter.id)
    # The feed's bodies of the last seconds may hold the renter's events.
    runtime.feed_pages.changed(session)
    return Response(status_code=204)
