"""HTTP endpoints of a renter's exchange credentials: put, list (masked) and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app import audit
from app.core.errors import error_responses
from app.credentials import repository, service
from app.credentials.schemas import CredentialOut, CredentialPut, Exchange
from app.deps import ReadSessionsDep, RenterDep, RuntimeDep, SessionDep

router = APIRouter(
    prefix="/api/v1/credentials", tags=["credentials"], responses=error_responses(403)
)


@router.put(
    "/{exchange}",
    response_model=CredentialOut,
    responses={201: {"model": CredentialOut, "description": "created"}},
    description="Store (200: replace) the renter's keys. The response is a masked view.",
)
async def put_credentials(
    exchange: Exchange,
    body: CredentialPut,
    request: Request,
    response: Response,
    renter: RenterDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> CredentialOut:
    api_key, api_secret = body.plain()
    row, created = await service.store(
        session, runtime.keyring, renter.id, exchange.value, api_key, api_secret, body.testnet
    )
    response.status_code = 201 if created else 200
    audit.record(session, request, "credentials.put", "credentials", row.id)
    return CredentialOut.model_validate(row)


@router.get("", response_model=list[CredentialOut])
async def list_credentials(renter: RenterDep, sessions: ReadSessionsDep) -> list[CredentialOut]:
    async with sessions() as session:
        rows = await repository.of_user(session, renter.id)
    return [CredentialOut.model_validate(r) for r in rows]


@router.delete(
    "/{exchange}", status_code=204, response_class=Response, responses=error_responses(404)
)
async def delete_credentials(
    exchange: Exchange,
    request: Request,
    renter: RenterDep,
    session: SessionDep,
    testnet: Annotated[
        bool | None, Query(description="only the testnet (true) or live (false) keys; default both")
    ] = None,
) -> Response:
    await service.delete(session, renter.id, exchange.value, testnet)
    audit.record(session, request, "credentials.delete", "credentials", None)
    return Response(status_code=204)
